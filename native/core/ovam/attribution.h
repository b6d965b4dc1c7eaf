// OVAM attribution: for any text embedding, each stored block's queries are scored against the
// text's keys (the block's to_k), activated and aggregated over steps, heads and blocks into one
// map per token (vpulab/ovam's get_ovam_callable, with each block's own (h, w): no square-only
// reshape).
#pragma once
#include <torch/torch.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/unet_2d_condition.h"
#include "ovam/attention_store.h"
#include "ovam/text_keys.h"

namespace ovam {

struct AttributionOptions {
  std::string mode = "softmax";               // per step and head: softmax over tokens, or "linear"
  std::string head_activation = "none";       // relu | sigmoid | tanh | sigmoid+relu | clamp | none
  std::string head_aggregation = "sum";       // sum | mean
  std::string block_interpolation = "bilinear";  // bilinear | nearest | bicubic
  std::string map_aggregation = "sum";        // over blocks: sum | mean
  std::string map_activation = "none";        // as head_activation
  std::optional<std::pair<int64_t, int64_t>> size;  // output (h, w); none = the largest block's
  // Finer maps (OVAM's per-block ablation, DAAM's per-step maps): only these stored blocks (empty:
  // all), only the stored evaluations [first, end) of each, and one map per block instead of the sum.
  std::vector<std::string> blocks;
  std::optional<std::pair<int64_t, int64_t>> steps;
  bool per_block = false;
  void validate() const;  // kInvalidArgument naming the option and the accepted values
};

// embeddings [T, D] → maps [T, H, W] float32 ([blocks, T, H, W] with per_block). Differentiable in
// `embeddings`.
torch::Tensor attribute(UNet2DConditionModelImpl& unet, const AttentionStore& store, const torch::Tensor& embeddings,
                        const AttributionOptions& options);
// One block's keys of `embeddings` [T, D] (on the UNet's device, in its dtype()): [heads, T, head_dim] float32 (so maps accumulate in
// float32 whatever the compute dtype); differentiable in `embeddings`.
torch::Tensor block_keys(AttentionImpl& attention, const torch::Tensor& embeddings);
// The same from a text's precomputed keys (text_keys(), a pipeline's TextKeyCache); no gradient.
torch::Tensor attribute(const AttentionStore& store, const TextKeys& keys, const AttributionOptions& options);

}  // namespace ovam
