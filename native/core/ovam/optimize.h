// OVAM token optimisation (vpulab/ovam optimize_embedding): SGD with step decay on a token
// embedding [2, D] = [<|startoftext|>, token] so that its softmax map, min-max normalised, matches
// a [background, object] target under cross-entropy over the token dimension. Over several
// generations the losses are summed.
#pragma once
#include <torch/torch.h>

#include <atomic>
#include <functional>
#include <vector>

#include "ovam/attribution.h"

namespace ovam {

struct OptimizeOptions {
  int64_t epochs = 30;
  double lr = 100, gamma = 0.7;
  int64_t step_size = 10;
  AttributionOptions attribution;  // size is set to each target's (H, W)
};

struct OptimizeResult {
  torch::Tensor embedding;  // the epoch with the lowest loss
  torch::Tensor final;      // after the last step (what OVAM returns)
  std::vector<double> losses;  // per epoch, before its step
};

struct OptimizeProgress {
  std::function<void(int64_t epoch, double loss)> on_epoch;
  const std::atomic<bool>* cancel = nullptr;
};

// stores[i] pairs with targets[i] ([2, H, W] float: background, object).
OptimizeResult optimize_token(UNet2DConditionModelImpl& unet, const std::vector<const AttentionStore*>& stores,
                              const std::vector<torch::Tensor>& targets, const torch::Tensor& initial,
                              const OptimizeOptions& options, const OptimizeProgress& progress = {});

}  // namespace ovam
