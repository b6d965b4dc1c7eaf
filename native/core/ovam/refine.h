// Self-attention refinement of attribution maps, Dataset Diffusion's A^τ · c (Nguyen et al.,
// NeurIPS 2023): each map c, on the grid of a captured self-attention mean A, is propagated τ
// times along A, then min-max normalised and resized.
#pragma once
#include <torch/torch.h>

#include <optional>
#include <utility>

#include "ovam/self_attention_store.h"

namespace ovam {

struct RefineOptions {
  int64_t power = 4;                                // τ
  std::optional<int64_t> side;                      // grid by its longer side; none = the largest kept
  std::optional<std::pair<int64_t, int64_t>> size;  // output (height, width); none = the maps' own
};

// maps [T, H, W] → [T, h', w']: per map, min-max(A^power · vec(c)), where c is the map resized
// (bilinear, align_corners false) to the grid when it is not already there, and the result is
// resized to `size`. A^power is never formed: power products of A with the [h·w, T] map columns.
torch::Tensor refine_sa_power(const SelfAttentionStore& store, const torch::Tensor& maps, const RefineOptions& options);

}  // namespace ovam
