// DPMSolverMultistepScheduler (diffusers 0.20.2): multistep DPM-Solver (Lu et al.) of order 1–3 in
// lambda = log(alpha / sigma); "dpmsolver++" (on the data prediction, SD's "DPM++ 2M") or
// "dpmsolver" (on the noise prediction). The SDE variants draw noise and are not implemented.
#include <cmath>
#include <limits>
#include <set>

#include "schedulers/scheduler.h"

namespace ovam::scheduling {
namespace {

// diffusers writes -inf, its default, as -Infinity, which JSON has no number for.
double read_lambda_min_clipped(const Config& config) {
  const std::string key = "lambda_min_clipped";
  const double inf = std::numeric_limits<double>::infinity();
  if (config.has(key) && config.json()[key].is_string()) {
    const auto text = config.json()[key].get<std::string>();
    if (text == "-Infinity") return -inf;
    if (text == "Infinity") return inf;
    config.reject(key, "expected a number, \"-Infinity\" or \"Infinity\"");
  }
  return config.get_double(key, -inf);
}

// exp as torch.exp computes it on diffusers' 0-dim float32 tensors (vectorised), which can differ
// from std::exp in the last bit.
float torch_exp(float x) { return torch::tensor(x).exp().item<float>(); }

class DpmSolver : public DiffusersScheduler {
 public:
  explicit DpmSolver(const Config& config)
      : DiffusersScheduler(config, "linspace", {"epsilon", "sample", "v_prediction"}),
        order_(config.get_int("solver_order", 2)),
        lower_order_final_(config.get_bool("lower_order_final", true)),
        karras_(config.get_bool("use_karras_sigmas", false)),
        lambda_min_clipped_(read_lambda_min_clipped(config)) {
    if (order_ < 1 || order_ > 3) config.reject("solver_order", "implemented: 1, 2, 3");
    // diffusers itself replaces "deis" and the UniPC solver types by these.
    const auto algorithm = config.get_string("algorithm_type", "dpmsolver++");
    config.require_one_of("algorithm_type", algorithm, {"dpmsolver++", "dpmsolver", "deis"});
    data_prediction_ = algorithm != "dpmsolver";
    const auto solver = config.get_string("solver_type", "midpoint");
    config.require_one_of("solver_type", solver, {"midpoint", "heun", "logrho", "bh1", "bh2"});
    heun_ = solver == "heun";
    if (config.get_bool("thresholding", false)) config.reject("thresholding", "dynamic thresholding is not implemented");
    if (config.has("variance_type")) config.reject("variance_type", "learned variances are not implemented; accepted: null");
    const auto alpha = alphas_cumprod_tensor_.sqrt(), sigma = (1 - alphas_cumprod_tensor_).sqrt();
    lambda_tensor_ = alpha.log() - sigma.log();
    alpha_t_ = to_floats(alpha);
    sigma_t_ = to_floats(sigma);
    lambda_t_ = to_floats(lambda_tensor_);
  }

  void set_timesteps(int64_t steps) override {
    check_steps(steps);
    // Timesteps whose lambda is below lambda_min_clipped are left out, for numerical stability.
    const int64_t clipped = torch::searchsorted(lambda_tensor_.flip(0), lambda_min_clipped_).item<int64_t>();
    const int64_t last = train_steps_ - clipped;
    const double trailing_ratio = double(train_steps_) / double(steps);
    std::vector<double> t;
    if (karras_) {
      const auto train = train_sigmas(alphas_cumprod_tensor_);
      std::vector<float> log_sigmas;
      for (float s : train) log_sigmas.push_back(std::log(s));
      // diffusers hands over the training sigmas smallest first, so these come out ascending: reversed.
      for (double s : karras_sigmas(train.front(), train.back(), steps))
        t.insert(t.begin(), std::nearbyint(sigma_to_t(s, log_sigmas)));
    } else if (spacing_ == "trailing") {
      t = spaced_timesteps(last, steps, trailing_ratio, /*round_linspace=*/true);
    } else {
      t = spaced_timesteps(last, steps + 1, trailing_ratio, /*round_linspace=*/true);
      t.pop_back();  // spread over steps + 1 points, without the last (0)
    }
    // Many steps can round to repeated timesteps: keep the first of each.
    std::set<double> seen;
    timesteps_.clear();
    for (double v : t)
      if (seen.insert(v).second) timesteps_.push_back(v);
    model_outputs_.assign(size_t(order_), torch::Tensor());
    lower_order_nums_ = 0;
    steps_done_ = first_step_ = 0;
    check_schedule(steps, size_t(steps));
  }

  double init_noise_sigma() const override { return 1.0; }
  torch::Tensor scale_model_input(const torch::Tensor& sample, size_t) override { return sample; }

  torch::Tensor step(const torch::Tensor& model_output, size_t index, const torch::Tensor& sample) override {
    const size_t i = begin_step(index);
    const size_t n = timesteps_.size();
    const auto t = static_cast<int64_t>(timesteps_[i]);
    const int64_t prev = i + 1 == n ? 0 : static_cast<int64_t>(timesteps_[i + 1]);
    // Short runs end with lower orders, which are more stable there.
    const bool short_run = lower_order_final_ && n < 15;
    const bool lower_order_final = short_run && i + 1 == n;
    const bool lower_order_second = short_run && i + 2 == n;

    model_outputs_.erase(model_outputs_.begin());
    model_outputs_.push_back(convert_model_output(model_output, t, sample));

    torch::Tensor prev_sample;
    if (order_ == 1 || lower_order_nums_ < 1 || lower_order_final)
      prev_sample = first_order(t, prev, sample);
    else if (order_ == 2 || lower_order_nums_ < 2 || lower_order_second)
      prev_sample = second_order(static_cast<int64_t>(timesteps_[i - 1]), t, prev, sample);
    else
      prev_sample = third_order(static_cast<int64_t>(timesteps_[i - 2]), static_cast<int64_t>(timesteps_[i - 1]), t, prev, sample);
    if (lower_order_nums_ < order_) ++lower_order_nums_;
    ++steps_done_;
    return prev_sample;
  }

 private:
  float alpha(int64_t t) const { return alpha_t_[train_index(t)]; }
  float sigma(int64_t t) const { return sigma_t_[train_index(t)]; }
  float lambda(int64_t t) const { return lambda_t_[train_index(t)]; }

  // The model output as the quantity the solver integrates: the data prediction x0 for
  // dpmsolver++, the noise prediction for dpmsolver.
  torch::Tensor convert_model_output(const torch::Tensor& model_output, int64_t t, const torch::Tensor& sample) const {
    const float a = alpha(t), s = sigma(t);
    if (data_prediction_) {
      if (prediction_ == Prediction::kEpsilon) return (sample - model_output * s) / a;
      if (prediction_ == Prediction::kSample) return model_output;
      return sample * a - model_output * s;
    }
    if (prediction_ == Prediction::kEpsilon) return model_output;
    if (prediction_ == Prediction::kSample) return (sample - model_output * a) / s;
    return model_output * a + sample * s;
  }

  // The exact linear part and the first-order term from s0 to t: x · ratio − D0 · phi.
  struct Linear {
    float ratio, phi, h;
  };
  Linear linear(int64_t s0, int64_t t) const {
    const float h = lambda(t) - lambda(s0);
    if (data_prediction_) return {sigma(t) / sigma(s0), alpha(t) * (torch_exp(-h) - 1.f), h};
    return {alpha(t) / alpha(s0), sigma(t) * (torch_exp(h) - 1.f), h};
  }

  torch::Tensor first_order(int64_t s0, int64_t t, const torch::Tensor& sample) const {
    const auto l = linear(s0, t);
    return sample * l.ratio - model_outputs_.back() * l.phi;
  }

  torch::Tensor second_order(int64_t s1, int64_t s0, int64_t t, const torch::Tensor& sample) const {
    const auto& m0 = model_outputs_.back();
    const auto& m1 = model_outputs_[model_outputs_.size() - 2];
    const auto l = linear(s0, t);
    const float r0 = (lambda(s0) - lambda(s1)) / l.h;
    auto d1 = (m0 - m1) * (1.f / r0);
    auto x = sample * l.ratio - m0 * l.phi;
    if (!heun_) return x - d1 * (0.5f * l.phi);
    if (data_prediction_) return x + d1 * (alpha(t) * ((torch_exp(-l.h) - 1.f) / l.h + 1.f));
    return x - d1 * (sigma(t) * ((torch_exp(l.h) - 1.f) / l.h - 1.f));
  }

  torch::Tensor third_order(int64_t s2, int64_t s1, int64_t s0, int64_t t, const torch::Tensor& sample) const {
    const size_t k = model_outputs_.size();
    const auto &m0 = model_outputs_[k - 1], &m1 = model_outputs_[k - 2], &m2 = model_outputs_[k - 3];
    const auto l = linear(s0, t);
    const float h = l.h;
    const float r0 = (lambda(s0) - lambda(s1)) / h, r1 = (lambda(s1) - lambda(s2)) / h;
    auto d1_0 = (m0 - m1) * (1.f / r0), d1_1 = (m1 - m2) * (1.f / r1);
    auto d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1));
    auto d2 = (d1_0 - d1_1) * (1.f / (r0 + r1));
    auto x = sample * l.ratio - m0 * l.phi;
    if (data_prediction_) {
      const float e = torch_exp(-h) - 1.f;
      return x + d1 * (alpha(t) * (e / h + 1.f)) - d2 * (alpha(t) * ((e + h) / (h * h) - 0.5f));
    }
    const float e = torch_exp(h) - 1.f;
    return x - d1 * (sigma(t) * (e / h - 1.f)) - d2 * (sigma(t) * ((e - h) / (h * h) - 0.5f));
  }

  int64_t order_;
  bool lower_order_final_, karras_;
  double lambda_min_clipped_;
  bool data_prediction_ = true, heun_ = false;
  torch::Tensor lambda_tensor_;
  std::vector<float> alpha_t_, sigma_t_, lambda_t_;
  std::vector<torch::Tensor> model_outputs_;
  int64_t lower_order_nums_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_dpm_solver(const Config& config) { return std::make_unique<DpmSolver>(config); }

}  // namespace ovam::scheduling
