// EulerDiscreteScheduler (diffusers 0.20.2) with s_churn 0: one Euler step of the probability-flow ODE in sigma.
#include "schedulers/scheduler.h"

namespace ovam::scheduling {
namespace {

class Euler : public SigmaScheduler {
 public:
  explicit Euler(const Config& config) : SigmaScheduler(config, /*float32_timesteps=*/true) {
    config.require_one_of("interpolation_type", config.get_string("interpolation_type", "linear"), {"linear"});
  }

  torch::Tensor step(const torch::Tensor& model_output, size_t index, const torch::Tensor& sample) override {
    const size_t i = begin_step(index);
    const float sigma = sigmas_[i];
    auto derivative = (sample - denoised(model_output, sample, sigma)) / sigma;
    const float dt = sigmas_[i + 1] - sigma;
    ++steps_done_;
    return sample + derivative * dt;
  }
};

}  // namespace

std::unique_ptr<Scheduler> make_euler(const Config& config) { return std::make_unique<Euler>(config); }

}  // namespace ovam::scheduling
