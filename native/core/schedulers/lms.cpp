// LMSDiscreteScheduler (diffusers 0.20.2): linear multistep of order 4 on the sigma ODE.
#include <algorithm>
#include <cmath>
#include <deque>

#include "schedulers/scheduler.h"

namespace ovam::scheduling {
namespace {

constexpr size_t kOrder = 4;  // diffusers' step(order=4) default, which pipelines keep

class Lms : public SigmaScheduler {
 public:
  explicit Lms(const Config& config) : SigmaScheduler(config, /*float32_timesteps=*/false) {}

  void set_timesteps(int64_t steps) override {
    SigmaScheduler::set_timesteps(steps);
    derivatives_.clear();
  }

  torch::Tensor step(const torch::Tensor& model_output, size_t index, const torch::Tensor& sample) override {
    const size_t i = begin_step(index);
    const float sigma = sigmas_[i];
    derivatives_.push_back((sample - denoised(model_output, sample, sigma)) / sigma);
    if (derivatives_.size() > kOrder) derivatives_.pop_front();
    // The order goes by the index, the sum by the history: a run begun mid-schedule (img2img)
    // uses the first coefficients of the full order until it has that many derivatives, as
    // diffusers' zip of coefficients and derivatives does.
    const size_t order = std::min(i + 1, kOrder);
    torch::Tensor update;
    for (size_t k = 0; k < std::min(order, derivatives_.size()); ++k) {
      auto term = derivatives_[derivatives_.size() - 1 - k] * coefficient(order, i, k);
      update = k == 0 ? term : update + term;
    }
    ++steps_done_;
    return sample + update;
  }

 private:
  // ∫ from sigma_t to sigma_{t+1} of the Lagrange basis polynomial of node t − current over the
  // nodes t, t − 1, …, t − order + 1. diffusers integrates it with scipy.integrate.quad; the
  // polynomial has degree ≤ 3, so two Gauss–Legendre points give it exactly.
  double coefficient(size_t order, size_t t, size_t current) const {
    auto basis = [&](double tau) {
      double prod = 1.0;
      for (size_t k = 0; k < order; ++k) {
        if (k == current) continue;
        prod *= (tau - sigmas_[t - k]) / (double(sigmas_[t - current]) - sigmas_[t - k]);
      }
      return prod;
    };
    const double a = sigmas_[t], b = sigmas_[t + 1];
    const double mid = (a + b) / 2, half = (b - a) / 2, node = half / std::sqrt(3.0);
    return half * (basis(mid - node) + basis(mid + node));
  }

  std::deque<torch::Tensor> derivatives_;
};

}  // namespace

std::unique_ptr<Scheduler> make_lms(const Config& config) { return std::make_unique<Lms>(config); }

}  // namespace ovam::scheduling
