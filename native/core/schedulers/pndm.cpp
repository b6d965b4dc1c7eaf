// PNDMScheduler (diffusers 0.20.2): pseudo Runge–Kutta warm-up then linear multistep (PLMS); with
// skip_prk_steps (Stable Diffusion's setting) the warm-up is one extra model call instead.
#include <cmath>

#include "schedulers/scheduler.h"

namespace ovam::scheduling {
namespace {

constexpr int64_t kPndmOrder = 4;

class Pndm : public DiffusersScheduler {
 public:
  explicit Pndm(const Config& config)
      : DiffusersScheduler(config, "leading", {"epsilon", "v_prediction"}),
        skip_prk_steps_(config.get_bool("skip_prk_steps", false)),
        final_alpha_cumprod_(config.get_bool("set_alpha_to_one", false) ? 1.f : alphas_cumprod_.front()) {}

  void set_timesteps(int64_t steps) override {
    check_steps(steps);
    if (!skip_prk_steps_ && steps < kPndmOrder)
      throw Error(code::kInvalidArgument, "PNDM without skip_prk_steps needs at least " + std::to_string(kPndmOrder) +
                                              " steps, got " + std::to_string(steps));
    step_ratio_ = train_steps_ / steps;
    const auto descending =
        spaced_timesteps(train_steps_, steps, double(train_steps_) / double(steps), /*round_linspace=*/true);
    if (skip_prk_steps_) {
      // PLMS needs two model outputs before its first multistep: the first step is redone with the
      // mean of the outputs at both of its ends, so the second timestep appears twice.
      timesteps_ = descending;
      if (steps > 1) timesteps_.insert(timesteps_.begin() + 1, descending[1]);
    } else {
      // Runge–Kutta over the 4 largest timesteps, each step evaluated at t, t − ratio/2 (twice) and
      // t − ratio; then PLMS from the 4th largest on.
      const int64_t half = step_ratio_ / 2;
      std::vector<double> points;  // ascending
      for (int64_t k = kPndmOrder - 1; k >= 0; --k) points.insert(points.end(), {descending[k], descending[k] + half});
      points.pop_back();
      std::vector<double> repeated;
      for (double p : points) repeated.insert(repeated.end(), {p, p});
      timesteps_.assign(repeated.rbegin() + 1, repeated.rend() - 1);
      prk_steps_ = timesteps_.size();
      timesteps_.insert(timesteps_.end(), descending.begin() + (kPndmOrder - 1), descending.end());
    }
    ets_.clear();
    cur_model_output_ = torch::Tensor();
    cur_sample_ = torch::Tensor();
    steps_done_ = first_step_ = 0;
    check_schedule(steps);
  }

  double init_noise_sigma() const override { return 1.0; }
  torch::Tensor scale_model_input(const torch::Tensor& sample, size_t) override { return sample; }

  torch::Tensor step(const torch::Tensor& model_output, size_t index, const torch::Tensor& sample) override {
    const size_t i = begin_step(index);
    // diffusers' counter: steps since this run began, which is not the index when img2img starts
    // mid-schedule; the branches below go by it, the timestep by the index.
    const size_t counter = i - first_step_;
    auto prev_sample = !skip_prk_steps_ && counter < prk_steps_ ? step_prk(model_output, i, counter, sample)
                                                                 : step_plms(model_output, i, counter, sample);
    ++steps_done_;
    return prev_sample;
  }

 private:
  torch::Tensor step_prk(const torch::Tensor& model_output, size_t i, size_t counter, const torch::Tensor& sample) {
    const int64_t prev = static_cast<int64_t>(timesteps_[i]) - (counter % 2 ? 0 : step_ratio_ / 2);
    const auto t = static_cast<int64_t>(timesteps_[counter / 4 * 4]);
    torch::Tensor eps = model_output;
    switch (counter % 4) {
      case 0:
        cur_model_output_ = model_output * (1.0 / 6);
        ets_.push_back(model_output);
        cur_sample_ = sample;
        break;
      case 1:
      case 2:
        cur_model_output_ = cur_model_output_ + model_output * (1.0 / 3);
        break;
      default:
        eps = cur_model_output_ + model_output * (1.0 / 6);
        cur_model_output_ = torch::Tensor();
    }
    return prev_sample(cur_sample_.defined() ? cur_sample_ : sample, t, prev, eps);
  }

  torch::Tensor step_plms(const torch::Tensor& model_output, size_t i, size_t counter, const torch::Tensor& sample) {
    auto t = static_cast<int64_t>(timesteps_[i]);
    int64_t prev = t - step_ratio_;
    if (counter != 1) {
      if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
      ets_.push_back(model_output);
    } else {
      // The repeated first timestep: average both outputs and redo the first step from its start.
      prev = t;
      t = t + step_ratio_;
    }
    const size_t n = ets_.size();
    auto e = [&](size_t back) { return ets_[n - back]; };
    torch::Tensor eps, x = sample;
    if (n == 1 && counter == 0) {
      eps = model_output;
      cur_sample_ = sample;
    } else if (n == 1 && counter == 1) {
      eps = (model_output + e(1)) / 2;
      x = cur_sample_;
      cur_sample_ = torch::Tensor();
    } else if (n == 2) {
      eps = (e(1) * 3 - e(2)) / 2;
    } else if (n == 3) {
      eps = (e(1) * 23 - e(2) * 16 + e(3) * 5) / 12;
    } else {
      eps = (e(1) * 55 - e(2) * 59 + e(3) * 37 - e(4) * 9) * (1.0 / 24);
    }
    return prev_sample(x, t, prev, eps);
  }

  // Formula (9) of the PNDM paper: x_{t−δ} from x_t and the noise estimate.
  torch::Tensor prev_sample(const torch::Tensor& sample, int64_t t, int64_t prev, torch::Tensor eps) const {
    const float alpha = alpha_cumprod(t);
    const float alpha_prev = prev >= 0 ? alpha_cumprod(prev) : final_alpha_cumprod_;
    const float beta = 1.f - alpha, beta_prev = 1.f - alpha_prev;
    if (prediction_ == Prediction::kVPrediction) eps = eps * std::sqrt(alpha) + sample * std::sqrt(beta);
    const float sample_coeff = std::sqrt(alpha_prev / alpha);
    const float denom = alpha * std::sqrt(beta_prev) + std::sqrt(alpha * beta * alpha_prev);
    return sample * sample_coeff - eps * (alpha_prev - alpha) / denom;
  }

  bool skip_prk_steps_;
  float final_alpha_cumprod_;
  int64_t step_ratio_ = 0;
  size_t prk_steps_ = 0;
  std::vector<torch::Tensor> ets_;
  torch::Tensor cur_model_output_, cur_sample_;
};

}  // namespace

std::unique_ptr<Scheduler> make_pndm(const Config& config) { return std::make_unique<Pndm>(config); }

}  // namespace ovam::scheduling
