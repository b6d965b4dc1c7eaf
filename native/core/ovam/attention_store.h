// What OVAM keeps of a generation: each hooked cross-attention block's queries (to_q of the
// block's input, one CFG branch), per step, with the block's own (h, w).
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "models/attention.h"

namespace ovam {

struct CaptureOptions {
  bool enabled = true;
  bool mid_block = false;                  // OVAM leaves the mid block out by default
  std::string branch = "unconditional";   // or "conditional"
  torch::ScalarType dtype = torch::kFloat32;
  bool streaming = false;                  // sum queries over steps (exact for linear maps only)
};

struct StoredBlock {
  std::string name;  // module path, e.g. "up_blocks.1.attentions.0.transformer_blocks.0.attn2"
  int64_t heads = 0, head_dim = 0, height = 0, width = 0;
  std::vector<torch::Tensor> queries;  // per step [h·w, heads·head_dim] (streaming: one, the sum)
  int64_t steps = 0;
};

class AttentionStore : public CrossAttentionObserver {
 public:
  explicit AttentionStore(CaptureOptions options) : options_(std::move(options)) {}
  void on_cross_attention(const std::string& block, AttentionImpl& attention, const torch::Tensor& hidden_states,
                          int64_t height, int64_t width) override;

  const CaptureOptions& options() const { return options_; }
  const std::vector<StoredBlock>& blocks() const { return blocks_; }
  std::vector<StoredBlock>& blocks() { return blocks_; }
  int64_t bytes() const;

 private:
  CaptureOptions options_;
  std::vector<StoredBlock> blocks_;
  std::map<std::string, size_t> index_;
};

}  // namespace ovam
