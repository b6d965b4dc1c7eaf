// What a generation keeps of its self-attention (every attn1): per latent grid size, the mean over
// heads, layers and UNet evaluations of softmax(q·kᵀ·scale), one CFG branch. Memory is one
// [h·w, h·w] float32 matrix per size whatever the step count (64 MB at 64×64). Dataset Diffusion
// (Nguyen et al., NeurIPS 2023) propagates cross-attention maps with it (ovam/refine.h).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace ovam {

struct SelfAttentionOptions {
  bool enabled = false;
  std::vector<int64_t> sides;            // grids kept, by their longer side; empty = every grid
  std::string branch = "conditional";   // or "unconditional"
};

struct SelfAttentionGrid {
  int64_t height = 0, width = 0;
  int64_t calls = 0;     // attn1 calls averaged (layers × evaluations)
  torch::Tensor matrix;  // [h·w, h·w] float32: rows query pixels, columns key pixels (row-major y·w + x)
  int64_t side() const { return std::max(height, width); }
};

class SelfAttentionStore {
 public:
  explicit SelfAttentionStore(SelfAttentionOptions options) : options_(std::move(options)) {}
  // `probs` [B, heads, rows, h·w] as attn1 computed them for the queries from `first_query`;
  // `row` is the batch row of the kept branch.
  void add(const torch::Tensor& probs, int64_t row, int64_t first_query, int64_t height, int64_t width);
  // After the last step: sums become means.
  void finish();

  const SelfAttentionOptions& options() const { return options_; }
  const std::vector<SelfAttentionGrid>& grids() const { return grids_; }
  // The grid whose longer side is `side`; kInvalidArgument naming the kept sides otherwise.
  const SelfAttentionGrid& grid(int64_t side) const;
  int64_t bytes() const;
  static std::shared_ptr<SelfAttentionStore> from_grids(SelfAttentionOptions options, std::vector<SelfAttentionGrid> grids);

 private:
  SelfAttentionOptions options_;
  std::vector<SelfAttentionGrid> grids_;
  bool finished_ = false;
};

}  // namespace ovam
