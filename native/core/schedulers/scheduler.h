// Diffusion schedulers (diffusers semantics, one file each): PNDM (PLMS, skip_prk_steps), DDIM,
// Euler, DPM-Solver++ (2M), LMS; epsilon and v-prediction; leading / linspace / trailing spacing.
// A scheduler is stateful for one sampling run: make a fresh one per generation.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "util/json.h"

namespace ovam {

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual void set_timesteps(int64_t steps) = 0;
  // The timesteps the model is evaluated at, in order (PNDM repeats its first one).
  virtual const std::vector<double>& timesteps() const = 0;
  virtual double init_noise_sigma() const = 0;
  // Both take the index into timesteps(), called in order 0, 1, 2, …
  virtual torch::Tensor scale_model_input(const torch::Tensor& sample, size_t index) = 0;
  virtual torch::Tensor step(const torch::Tensor& model_output, size_t index, const torch::Tensor& sample) = 0;
};

// class_name as in scheduler_config.json's "_class_name" (or the names PNDM, DDIM, Euler, DPMSolver, LMS);
// the config supplies the rest, with diffusers' defaults. Unknown classes or values: kConfig.
std::unique_ptr<Scheduler> make_scheduler(const std::string& class_name, const Config& config);
std::vector<std::string> scheduler_names();

}  // namespace ovam
