// Diffusion schedulers (diffusers 0.20.2 semantics, one file each): PNDM (PRK + PLMS, or PLMS alone
// with skip_prk_steps), DDIM (eta 0), Euler, DPM-Solver / DPM-Solver++ multistep (orders 1–3; SD's
// "2M" by default), LMS; epsilon, v_prediction and sample predictions (PNDM: the first two);
// leading / linspace / trailing spacing; Karras sigmas for Euler, LMS and DPM-Solver.
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

  // img2img (diffusers' StableDiffusionImg2ImgPipeline): `original` noised to the level of
  // timesteps()[index], as each scheduler's add_noise does.
  virtual torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise, size_t index) const = 0;
  // Runs this schedule from timesteps()[index] on (after set_timesteps, before the first step).
  // diffusers slices the timesteps and keeps each scheduler's own state rules: the state is a fresh
  // one's (PNDM's counter starts at 0, LMS's and DPM-Solver's histories are empty).
  virtual void begin_at(size_t index) = 0;
};

// class_name as in scheduler_config.json's "_class_name" (or the names PNDM, DDIM, Euler, DPMSolver, LMS);
// the config supplies the rest, with diffusers' defaults. Unknown classes or values: kConfig.
std::unique_ptr<Scheduler> make_scheduler(const std::string& class_name, const Config& config);
std::vector<std::string> scheduler_names();

// What the scheduler files share. diffusers keeps betas, alphas_cumprod and sigmas as float32 torch
// tensors (scalar arithmetic on them is float32 too) but spacing, interpolation and Karras sigmas in
// numpy float64; the code below keeps each in the same precision so results agree to rounding.
namespace scheduling {

enum class Prediction { kEpsilon, kSample, kVPrediction };

// The config keys and train-time schedule every diffusers scheduler reads in __init__.
class DiffusersScheduler : public Scheduler {
 public:
  const std::vector<double>& timesteps() const override { return timesteps_; }
  // DDPM's forward process sqrt(ᾱ_t)·x + sqrt(1 − ᾱ_t)·noise (PNDM, DDIM, DPM-Solver in 0.20.2).
  torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise, size_t index) const override;
  void begin_at(size_t index) override;

 protected:
  // `predictions` are the prediction_type values this scheduler implements.
  DiffusersScheduler(const Config& config, const std::string& default_spacing,
                     const std::vector<std::string>& predictions, bool rescale_zero_terminal_snr = false);

  // Throws kInvalidArgument unless 1 ≤ steps ≤ num_train_timesteps (diffusers' limit).
  void check_steps(int64_t steps) const;
  // Throws kInvalidArgument when set_timesteps(steps) made a timestep outside the training range
  // (e.g. 1000 steps with "leading" spacing and steps_offset 1 reach 1000), or fewer distinct
  // timesteps than `distinct` (rounding merged steps): the run would fail or go wrong later.
  void check_schedule(int64_t steps, size_t distinct = 0) const;
  // Throws kInvalidArgument unless `index` is one of timesteps().
  void check_index(size_t index) const;
  // Also throws unless `index` is the next step of this run; returns it. step() calls it, then advances.
  size_t begin_step(size_t index) const;
  // diffusers' timestep_spacing, in descending order: "linspace" spreads `count` over [0, span − 1]
  // (rounded when `round_linspace`), "leading" takes multiples of span // count plus steps_offset,
  // "trailing" counts down from span by `trailing_ratio`, minus 1.
  std::vector<double> spaced_timesteps(int64_t span, int64_t count, double trailing_ratio, bool round_linspace) const;
  // A training timestep as an index; kInvalidArgument outside [0, num_train_timesteps).
  size_t train_index(int64_t t) const;
  float alpha_cumprod(int64_t t) const { return alphas_cumprod_[train_index(t)]; }

  int64_t train_steps_;
  std::vector<float> alphas_cumprod_;  // float32, as torch.cumprod leaves it
  torch::Tensor alphas_cumprod_tensor_;
  std::string spacing_;
  int64_t steps_offset_;
  Prediction prediction_;
  std::vector<double> timesteps_;
  size_t steps_done_ = 0;
  size_t first_step_ = 0;  // where this run began (begin_at); set_timesteps resets it to 0
};

// Euler and LMS: the k-diffusion parameterisation, sigma = sqrt((1 − ᾱ) / ᾱ) interpolated at the
// timesteps (or Karras sigmas), scaled input x / sqrt(σ² + 1).
class SigmaScheduler : public DiffusersScheduler {
 public:
  void set_timesteps(int64_t steps) override;
  double init_noise_sigma() const override;
  torch::Tensor scale_model_input(const torch::Tensor& sample, size_t index) override;
  // original + noise · sigma at the index (Euler, LMS).
  torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise, size_t index) const override;

 protected:
  // Euler keeps its timesteps in float32, LMS in float64.
  SigmaScheduler(const Config& config, bool float32_timesteps);
  // The model's estimate of the clean sample at noise level sigma.
  torch::Tensor denoised(const torch::Tensor& model_output, const torch::Tensor& sample, float sigma) const;

  std::vector<float> sigmas_;  // one per timestep, then 0
  bool float32_timesteps_;
  bool karras_;
};

// A float32 tensor's values (diffusers' 0-dim float32 tensors become floats).
std::vector<float> to_floats(const torch::Tensor& t);
// The training sigmas sqrt((1 − ᾱ) / ᾱ), float32 as torch computes them.
std::vector<float> train_sigmas(const torch::Tensor& alphas_cumprod);
// diffusers' _convert_to_karras: `steps` sigmas from in_sigmas[0] to in_sigmas[-1] (rho 7).
std::vector<double> karras_sigmas(double first, double last, int64_t steps);
// diffusers' _sigma_to_t: the fractional timestep of `sigma` on the log of the training sigmas.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);

std::unique_ptr<Scheduler> make_pndm(const Config& config);
std::unique_ptr<Scheduler> make_ddim(const Config& config);
std::unique_ptr<Scheduler> make_euler(const Config& config);
std::unique_ptr<Scheduler> make_dpm_solver(const Config& config);
std::unique_ptr<Scheduler> make_lms(const Config& config);

}  // namespace scheduling
}  // namespace ovam
