// DDIMScheduler (diffusers 0.20.2) with eta 0, the deterministic sampler pipelines use by default.
#include <cmath>

#include "schedulers/scheduler.h"

namespace ovam::scheduling {
namespace {

class Ddim : public DiffusersScheduler {
 public:
  explicit Ddim(const Config& config)
      : DiffusersScheduler(config, "leading", {"epsilon", "sample", "v_prediction"},
                           config.get_bool("rescale_betas_zero_snr", false)),
        clip_sample_(config.get_bool("clip_sample", true)),
        clip_range_(config.get_double("clip_sample_range", 1.0)),
        final_alpha_cumprod_(config.get_bool("set_alpha_to_one", true) ? 1.f : alphas_cumprod_.front()) {
    if (config.get_bool("thresholding", false)) config.reject("thresholding", "dynamic thresholding is not implemented");
  }

  void set_timesteps(int64_t steps) override {
    check_steps(steps);
    timesteps_ = spaced_timesteps(train_steps_, steps, double(train_steps_) / double(steps), /*round_linspace=*/true);
    step_ratio_ = train_steps_ / steps;
    steps_done_ = first_step_ = 0;
    check_schedule(steps);
  }

  double init_noise_sigma() const override { return 1.0; }
  torch::Tensor scale_model_input(const torch::Tensor& sample, size_t) override { return sample; }

  torch::Tensor step(const torch::Tensor& model_output, size_t index, const torch::Tensor& sample) override {
    const auto t = static_cast<int64_t>(timesteps_[begin_step(index)]);
    const int64_t prev = t - step_ratio_;
    const float alpha = alpha_cumprod(t);
    const float alpha_prev = prev >= 0 ? alpha_cumprod(prev) : final_alpha_cumprod_;
    const float beta = 1.f - alpha;
    torch::Tensor x0, eps;
    switch (prediction_) {
      case Prediction::kEpsilon:
        x0 = (sample - model_output * std::sqrt(beta)) / std::sqrt(alpha);
        eps = model_output;
        break;
      case Prediction::kSample:
        x0 = model_output;
        eps = (sample - x0 * std::sqrt(alpha)) / std::sqrt(beta);
        break;
      case Prediction::kVPrediction:
        x0 = sample * std::sqrt(alpha) - model_output * std::sqrt(beta);
        eps = model_output * std::sqrt(alpha) + sample * std::sqrt(beta);
        break;
    }
    if (clip_sample_) x0 = x0.clamp(-clip_range_, clip_range_);
    // With eta 0 the noise term and its variance vanish.
    auto direction = eps * std::sqrt(1.f - alpha_prev);
    ++steps_done_;
    return x0 * std::sqrt(alpha_prev) + direction;
  }

 private:
  bool clip_sample_;
  double clip_range_;
  float final_alpha_cumprod_;
  int64_t step_ratio_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_ddim(const Config& config) { return std::make_unique<Ddim>(config); }

}  // namespace ovam::scheduling
