#include "ovam/optimize.h"

#include <cmath>

#include "util/errors.h"

namespace ovam {

OptimizeResult optimize_token(UNet2DConditionModelImpl& unet, const std::vector<const AttentionStore*>& stores,
                              const std::vector<torch::Tensor>& targets, const torch::Tensor& initial,
                              const OptimizeOptions& options, const OptimizeProgress& progress) {
  if (stores.empty() || stores.size() != targets.size())
    throw Error(code::kInvalidArgument, "optimize: one target per generation is needed");
  if (options.epochs < 1) throw Error(code::kInvalidArgument, "optimize: epochs must be at least 1");
  if (options.step_size < 1) throw Error(code::kInvalidArgument, "optimize: stepSize must be at least 1");
  if (initial.dim() != 2 || initial.size(0) != 2)
    throw Error(code::kInvalidArgument, "optimize: the initial embedding must be [2, D] (<|startoftext|>, token)");
  for (size_t i = 0; i < targets.size(); ++i)
    if (targets[i].dim() != 3 || targets[i].size(0) != 2)
      throw Error(code::kInvalidArgument, "optimize: target " + std::to_string(i) + " must be [2, H, W] (background, object)");

  // Model parameters never require grad (util/nn.h): only the embedding gets gradients.
  torch::AutoGradMode grad_on(true);
  auto x = initial.detach().to(torch::kFloat32).clone().set_requires_grad(true);
  torch::optim::SGD sgd({x}, torch::optim::SGDOptions(options.lr));
  auto& sgd_options = static_cast<torch::optim::SGDOptions&>(sgd.param_groups()[0].options());

  OptimizeResult result;
  double best = std::numeric_limits<double>::infinity();
  for (int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    if (progress.cancel && progress.cancel->load()) throw Error(code::kAborted, "token optimisation aborted");
    // Python's StepLR: lr · gamma^(epoch // step_size). libtorch 1.13's StepLR decays one step
    // late (it tests the count before incrementing it), so the rate is set here directly.
    sgd_options.lr(options.lr * std::pow(options.gamma, double(epoch / options.step_size)));
    sgd.zero_grad();
    torch::Tensor loss;
    for (size_t i = 0; i < stores.size(); ++i) {
      AttributionOptions attribution = options.attribution;
      attribution.size = std::make_pair(targets[i].size(1), targets[i].size(2));
      auto maps = attribute(unet, *stores[i], x, attribution);  // [2, H, W]
      maps = (maps - maps.min()) / (maps.max() - maps.min());
      auto target = targets[i].to(maps.device(), torch::kFloat32);
      // Cross-entropy over the token dimension with probability targets (torch CrossEntropyLoss).
      auto l = -(target * torch::log_softmax(maps, 0)).sum(0).mean();
      loss = loss.defined() ? loss + l : l;
    }
    const double value = loss.item<double>();
    result.losses.push_back(value);
    if (value < best) {
      best = value;
      result.embedding = x.detach().clone();
    }
    loss.backward();
    sgd.step();
    if (progress.on_epoch) progress.on_epoch(epoch, value);
  }
  // NaN compares false, so a run whose every loss was NaN never set the best embedding.
  if (!result.embedding.defined())
    throw Error(code::kInvalidArgument,
                "optimize: the loss was NaN in every epoch: the maps are constant (saturated by the activation, e.g. "
                "mapActivation \"clamp\", \"sigmoid\" or \"tanh\" on summed maps), so their min-max normalisation divides 0 by 0; "
                "use activations that keep the maps varying (the default \"none\")");
  result.final = x.detach().clone();
  return result;
}

}  // namespace ovam
