// What OVAM keeps of a generation: each hooked cross-attention block's queries (to_q of the
// block's input, one CFG branch), per step, with the block's own (h, w); and, when asked, the
// self-attention means (ovam/self_attention_store.h).
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "models/attention.h"
#include "ovam/self_attention_store.h"

namespace ovam {

struct CaptureOptions {
  bool enabled = true;
  bool mid_block = false;                  // OVAM leaves the mid block out by default
  std::string branch = "unconditional";   // or "conditional"
  torch::ScalarType dtype = torch::kFloat32;
  bool streaming = false;                  // sum queries over steps (exact for linear maps only)
  SelfAttentionOptions self_attention;     // off by default
};

// Queries laid out for attribution's read: [heads, steps, h·w, head_dim], so one batched matmul per
// block covers every step and head. A streaming store keeps steps = 1, the running sum.
struct StoredBlock {
  std::string name;  // module path, e.g. "up_blocks.1.attentions.0.transformer_blocks.0.attn2"
  int64_t heads = 0, head_dim = 0, height = 0, width = 0;
  double scale = 0;      // the attention's softmax scale, head_dim^-0.5
  torch::Tensor queries;  // [heads, steps, h·w, head_dim] in the capture dtype, on the compute device
  int64_t steps = 0;      // evaluations recorded (streaming: summed into one slot)
};

class AttentionStore : public CrossAttentionObserver {
 public:
  // `steps`: the number of UNet evaluations of the run (slots to allocate per block).
  AttentionStore(CaptureOptions options, int64_t steps);
  // The pipeline says which evaluation the next forward is; `batch_rows` tells where the chosen
  // CFG branch lies (row 0 unconditional, row 1 conditional; a batch of 1 has no CFG).
  void begin_step(int64_t step, int64_t batch_rows) {
    step_ = step;
    batch_rows_ = batch_rows;
  }
  void on_cross_attention(const std::string& block, const AttentionImpl& attention, const torch::Tensor& queries,
                          int64_t height, int64_t width) override;
  void on_self_attention(const torch::Tensor& probs, int64_t first_query, int64_t height, int64_t width) override;

  // After the last step: rounds streaming sums to the storage dtype, turns self-attention sums into means.
  void finish();

  const CaptureOptions& options() const { return options_; }
  const std::vector<StoredBlock>& blocks() const { return blocks_; }
  std::vector<StoredBlock>& blocks() { return blocks_; }
  // Null unless capture.self_attention was enabled.
  const std::shared_ptr<SelfAttentionStore>& self_attention() const { return self_attention_; }
  int64_t bytes() const;
  int64_t total_steps() const { return total_steps_; }
  // Rebuilds a store from saved blocks (generation files).
  static std::shared_ptr<AttentionStore> from_blocks(CaptureOptions options, int64_t steps, std::vector<StoredBlock> blocks,
                                                     std::shared_ptr<SelfAttentionStore> self_attention = nullptr);

 private:
  CaptureOptions options_;
  int64_t total_steps_ = 0, step_ = 0, batch_rows_ = 2;
  std::vector<StoredBlock> blocks_;
  std::map<std::string, size_t> index_;
  std::shared_ptr<SelfAttentionStore> self_attention_;
};

}  // namespace ovam
