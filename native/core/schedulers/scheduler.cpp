// What all schedulers share: the train-time beta schedule, timestep spacing, the sigma
// parameterisation of Euler/LMS, Karras sigmas, and the class-name factory.
#include "schedulers/scheduler.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace ovam {
namespace scheduling {
namespace {

// np.linspace: i · step + start, the last point exactly stop.
std::vector<double> np_linspace(double start, double stop, int64_t num) {
  std::vector<double> y(static_cast<size_t>(num));
  const double step = num > 1 ? (stop - start) / double(num - 1) : 0.0;
  for (int64_t i = 0; i < num; ++i) y[size_t(i)] = double(i) * step + start;
  if (num > 1) y.back() = stop;
  return y;
}

// np.arange(start, stop, step) for floats: ceil((stop − start) / step) points start + i · delta, where
// numpy's fill takes delta = (start + step) − start.
std::vector<double> np_arange(double start, double stop, double step) {
  const auto length = static_cast<int64_t>(std::ceil((stop - start) / step));
  const double delta = (start + step) - start;
  std::vector<double> y;
  for (int64_t i = 0; i < length; ++i) y.push_back(i == 0 ? start : start + double(i) * delta);
  return y;
}

// np.round: halves to even (the default rounding mode).
double np_round(double x) { return std::nearbyint(x); }

// np.interp(x, arange(len(fp)), fp) in float64.
double np_interp(double x, const std::vector<float>& fp) {
  const double last = double(fp.size() - 1);
  if (x >= last) return fp.back();
  if (x <= 0) return fp.front();
  const auto j = static_cast<size_t>(std::floor(x));
  if (double(j) == x) return fp[j];
  const double slope = double(fp[j + 1]) - double(fp[j]);
  return slope * (x - double(j)) + double(fp[j]);
}

// betas_for_alpha_bar with the cosine ("squaredcos_cap_v2") alpha_bar, max_beta 0.999.
torch::Tensor cosine_betas(int64_t n) {
  auto alpha_bar = [](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * M_PI / 2), 2); };
  std::vector<double> betas;
  for (int64_t i = 0; i < n; ++i) {
    const double t1 = double(i) / double(n), t2 = double(i + 1) / double(n);
    betas.push_back(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999));
  }
  return torch::tensor(betas, torch::kFloat64).to(torch::kFloat32);
}

torch::Tensor read_betas(const Config& config, int64_t train_steps) {
  if (config.has("trained_betas")) {
    const Json& list = config.json()["trained_betas"];
    if (!list.is_array() || int64_t(list.size()) != train_steps)
      config.reject("trained_betas", "expected a list of num_train_timesteps (" + std::to_string(train_steps) + ") numbers");
    std::vector<double> betas;
    for (const auto& b : list) {
      if (!b.is_number()) config.reject("trained_betas", "expected a list of numbers");
      betas.push_back(b.get<double>());
    }
    return torch::tensor(betas, torch::kFloat64).to(torch::kFloat32);
  }
  const auto schedule = config.get_string("beta_schedule", "linear");
  config.require_one_of("beta_schedule", schedule, {"linear", "scaled_linear", "squaredcos_cap_v2"});
  const double start = config.get_double("beta_start", 0.0001), end = config.get_double("beta_end", 0.02);
  if (schedule == "linear") return torch::linspace(start, end, train_steps, torch::kFloat32);
  if (schedule == "scaled_linear")
    return torch::linspace(std::pow(start, 0.5), std::pow(end, 0.5), train_steps, torch::kFloat32).pow(2);
  return cosine_betas(train_steps);
}

// diffusers' rescale_zero_terminal_snr (Lin et al. 2023): shift and scale sqrt(ᾱ) so the last is 0.
torch::Tensor rescale_zero_terminal_snr(const torch::Tensor& betas) {
  auto sqrt_bar = torch::cumprod(1.0 - betas, 0).sqrt();
  auto first = sqrt_bar[0].clone(), last = sqrt_bar[-1].clone();
  sqrt_bar = (sqrt_bar - last) * (first / (first - last));
  auto bar = sqrt_bar.pow(2);
  auto alphas = torch::cat({bar.slice(0, 0, 1), bar.slice(0, 1) / bar.slice(0, 0, -1)});
  return 1 - alphas;
}

}  // namespace

std::vector<float> to_floats(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kFloat32).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

DiffusersScheduler::DiffusersScheduler(const Config& config, const std::string& default_spacing,
                                       const std::vector<std::string>& predictions, bool rescale_zero_snr)
    : train_steps_(config.get_int("num_train_timesteps", 1000)),
      spacing_(config.get_string("timestep_spacing", default_spacing)),
      steps_offset_(config.get_int("steps_offset", 0, 0)) {
  if (train_steps_ < 1) config.reject("num_train_timesteps", "expected a positive number");
  auto betas = read_betas(config, train_steps_);
  if (rescale_zero_snr) betas = rescale_zero_terminal_snr(betas);
  alphas_cumprod_tensor_ = torch::cumprod(1.0 - betas, 0);
  alphas_cumprod_ = to_floats(alphas_cumprod_tensor_);
  config.require_one_of("timestep_spacing", spacing_, {"leading", "linspace", "trailing"});
  const auto prediction = config.get_string("prediction_type", "epsilon");
  config.require_one_of("prediction_type", prediction, predictions);
  prediction_ = prediction == "epsilon" ? Prediction::kEpsilon
                : prediction == "sample" ? Prediction::kSample
                                         : Prediction::kVPrediction;
}

void DiffusersScheduler::check_steps(int64_t steps) const {
  if (steps < 1 || steps > train_steps_)
    throw Error(code::kInvalidArgument, "steps must be between 1 and num_train_timesteps (" +
                                            std::to_string(train_steps_) + "), got " + std::to_string(steps));
}

void DiffusersScheduler::check_schedule(int64_t steps, size_t distinct) const {
  const std::string config = "with timestep_spacing \"" + spacing_ + "\", steps_offset " + std::to_string(steps_offset_) +
                             " and num_train_timesteps " + std::to_string(train_steps_);
  for (double t : timesteps_)
    if (!(t >= 0 && t <= double(train_steps_ - 1)))
      throw Error(code::kInvalidArgument, std::to_string(steps) + " steps " + config + " reach timestep " + std::to_string(t) +
                                              ", outside 0.." + std::to_string(train_steps_ - 1) + "; accepted: fewer steps");
  if (timesteps_.size() < distinct)
    throw Error(code::kInvalidArgument, std::to_string(steps) + " steps " + config + " round to only " +
                                            std::to_string(timesteps_.size()) + " distinct timesteps; accepted: fewer steps");
}

void DiffusersScheduler::check_index(size_t index) const {
  if (index >= timesteps_.size())
    throw Error(code::kInvalidArgument, "scheduler step " + std::to_string(index) + " is past the last of " +
                                            std::to_string(timesteps_.size()) + " timesteps (set_timesteps first)");
}

size_t DiffusersScheduler::begin_step(size_t index) const {
  check_index(index);
  if (index != steps_done_)
    throw Error(code::kInvalidArgument, "scheduler steps must come in order: expected step " +
                                            std::to_string(steps_done_) + ", got " + std::to_string(index));
  return index;
}

torch::Tensor DiffusersScheduler::add_noise(const torch::Tensor& original, const torch::Tensor& noise, size_t index) const {
  check_index(index);
  // float32 scalars, as diffusers indexes its float32 alphas_cumprod tensor.
  const float alpha = alpha_cumprod(static_cast<int64_t>(timesteps_[index]));
  return original * std::sqrt(alpha) + noise * std::sqrt(1.f - alpha);
}

void DiffusersScheduler::begin_at(size_t index) {
  check_index(index);
  if (steps_done_ != first_step_)
    throw Error(code::kInvalidArgument, "a scheduler run can only be moved before its first step");
  steps_done_ = first_step_ = index;
}

size_t DiffusersScheduler::train_index(int64_t t) const {
  if (t < 0 || t >= train_steps_)
    throw Error(code::kInvalidArgument, "timestep " + std::to_string(t) + " is outside the " +
                                            std::to_string(train_steps_) + " training timesteps");
  return size_t(t);
}

std::vector<double> DiffusersScheduler::spaced_timesteps(int64_t span, int64_t count, double trailing_ratio,
                                                         bool round_linspace) const {
  std::vector<double> t;
  if (spacing_ == "linspace") {
    t = np_linspace(0, double(span - 1), count);
    if (round_linspace) std::transform(t.begin(), t.end(), t.begin(), np_round);
    std::reverse(t.begin(), t.end());
  } else if (spacing_ == "leading") {
    const int64_t ratio = span / count;
    for (int64_t i = count - 1; i >= 0; --i) t.push_back(double(i * ratio + steps_offset_));
  } else {
    for (double v : np_arange(double(span), 0, -trailing_ratio)) t.push_back(np_round(v) - 1);
  }
  return t;
}

std::vector<float> train_sigmas(const torch::Tensor& alphas_cumprod) {
  return to_floats(((1 - alphas_cumprod) / alphas_cumprod).pow(0.5));
}

std::vector<double> karras_sigmas(double first, double last, int64_t steps) {
  const double rho = 7.0;
  const double min_inv_rho = std::pow(last, 1 / rho), max_inv_rho = std::pow(first, 1 / rho);
  std::vector<double> sigmas;
  for (double r : np_linspace(0, 1, steps)) sigmas.push_back(std::pow(max_inv_rho + r * (min_inv_rho - max_inv_rho), rho));
  return sigmas;
}

double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(sigma);
  // argmax of the running count of log_sigmas ≤ log_sigma: the last such index (0 if none).
  size_t low = 0;
  int64_t count = 0, best = 0;
  for (size_t i = 0; i < log_sigmas.size(); ++i) {
    count += log_sigma - double(log_sigmas[i]) >= 0;
    if (count > best) best = count, low = i;
  }
  low = std::min(low, log_sigmas.size() - 2);
  const float lo = log_sigmas[low], hi = log_sigmas[low + 1];
  const double w = std::clamp((double(lo) - log_sigma) / double(lo - hi), 0.0, 1.0);
  return (1 - w) * double(low) + w * double(low + 1);
}

SigmaScheduler::SigmaScheduler(const Config& config, bool float32_timesteps)
    : DiffusersScheduler(config, "linspace", {"epsilon", "v_prediction", "sample"}),
      float32_timesteps_(float32_timesteps),
      karras_(config.get_bool("use_karras_sigmas", false)) {
  // Until set_timesteps, diffusers' sigmas are the training ones, largest first (init_noise_sigma reads them).
  const auto train = train_sigmas(alphas_cumprod_tensor_);
  sigmas_.assign(train.rbegin(), train.rend());
  sigmas_.push_back(0.f);
}

void SigmaScheduler::set_timesteps(int64_t steps) {
  check_steps(steps);
  auto t = spaced_timesteps(train_steps_, steps, double(train_steps_) / double(steps), /*round_linspace=*/false);
  if (float32_timesteps_)
    for (auto& v : t) v = float(v);
  const auto train = train_sigmas(alphas_cumprod_tensor_);
  std::vector<double> sigmas;
  for (double v : t) sigmas.push_back(np_interp(v, train));
  if (karras_) {
    std::vector<float> log_sigmas;
    for (float s : train) log_sigmas.push_back(std::log(s));
    sigmas = karras_sigmas(sigmas.front(), sigmas.back(), steps);
    for (size_t i = 0; i < t.size(); ++i) t[i] = sigma_to_t(sigmas[i], log_sigmas);
  }
  sigmas_.assign(sigmas.begin(), sigmas.end());
  sigmas_.push_back(0.f);
  timesteps_ = std::move(t);
  steps_done_ = first_step_ = 0;
  check_schedule(steps);
}

double SigmaScheduler::init_noise_sigma() const {
  const float max = *std::max_element(sigmas_.begin(), sigmas_.end());
  if (spacing_ == "leading") return std::sqrt(max * max + 1.f);
  return max;
}

torch::Tensor SigmaScheduler::scale_model_input(const torch::Tensor& sample, size_t index) {
  check_index(index);
  const float sigma = sigmas_[index];
  return sample / std::sqrt(sigma * sigma + 1.f);
}

torch::Tensor SigmaScheduler::add_noise(const torch::Tensor& original, const torch::Tensor& noise, size_t index) const {
  check_index(index);
  return original + noise * sigmas_[index];
}

torch::Tensor SigmaScheduler::denoised(const torch::Tensor& model_output, const torch::Tensor& sample, float sigma) const {
  switch (prediction_) {
    case Prediction::kEpsilon:
      return sample - model_output * sigma;
    case Prediction::kVPrediction: {
      const float s2 = sigma * sigma + 1.f;
      return model_output * (-sigma / std::sqrt(s2)) + sample / s2;
    }
    case Prediction::kSample:
      break;
  }
  return model_output;
}

}  // namespace scheduling

namespace {

struct Entry {
  std::vector<std::string> names;  // diffusers' class name first
  std::unique_ptr<Scheduler> (*make)(const Config&);
};

const std::vector<Entry>& registry() {
  static const std::vector<Entry> entries{
      {{"PNDMScheduler", "PNDM"}, scheduling::make_pndm},
      {{"DDIMScheduler", "DDIM"}, scheduling::make_ddim},
      {{"EulerDiscreteScheduler", "Euler"}, scheduling::make_euler},
      {{"DPMSolverMultistepScheduler", "DPMSolver", "DPMSolverMultistep"}, scheduling::make_dpm_solver},
      {{"LMSDiscreteScheduler", "LMS"}, scheduling::make_lms},
  };
  return entries;
}

}  // namespace

std::unique_ptr<Scheduler> make_scheduler(const std::string& class_name, const Config& config) {
  std::string accepted;
  for (const auto& e : registry()) {
    for (const auto& name : e.names) {
      if (name == class_name) return e.make(config);
      accepted += (accepted.empty() ? "" : ", ") + name;
    }
  }
  throw Error(code::kConfig, config.file() + ": scheduler class \"" + class_name + "\" is not implemented; accepted: " + accepted);
}

std::vector<std::string> scheduler_names() {
  std::vector<std::string> names;
  for (const auto& e : registry()) names.push_back(e.names.front());
  return names;
}

}  // namespace ovam
