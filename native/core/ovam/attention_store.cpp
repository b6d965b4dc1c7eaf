#include "ovam/attention_store.h"

#include "util/errors.h"

namespace ovam {

AttentionStore::AttentionStore(CaptureOptions options, int64_t steps) : options_(std::move(options)), total_steps_(steps) {
  if (options_.self_attention.enabled) self_attention_ = std::make_shared<SelfAttentionStore>(options_.self_attention);
}

// The CFG row of `branch`: without CFG (batch of one) there is only the conditional row.
static int64_t branch_row(const std::string& branch, int64_t batch_rows) {
  return (batch_rows > 1 && branch == "conditional") ? 1 : 0;
}

void AttentionStore::on_cross_attention(const std::string& block, const AttentionImpl& attention,
                                        const torch::Tensor& queries, int64_t height, int64_t width) {
  if (!options_.enabled) return;
  const bool mid = block.rfind("mid_block", 0) == 0;
  if (mid && !options_.mid_block) return;
  const int64_t row = branch_row(options_.branch, batch_rows_);
  torch::NoGradGuard no_grad;
  const int64_t heads = attention.heads, head_dim = attention.head_dim, n = height * width;
  // [h·w, heads·d] → [heads, h·w, d]: the layout attribution reads.
  // copy_ and add_ below convert to the storage dtype as they write: no converted temporary.
  auto q = queries[row].view({n, heads, head_dim}).transpose(0, 1);

  auto it = index_.find(block);
  if (it == index_.end()) {
    StoredBlock b;
    b.name = block;
    b.heads = heads;
    b.head_dim = head_dim;
    b.height = height;
    b.width = width;
    b.scale = attention.scale;
    const int64_t slots = options_.streaming ? 1 : total_steps_;
    // A streaming sum stays float32 until finish(): a half-precision running sum would round once per step.
    const auto dtype = options_.streaming ? torch::kFloat32 : options_.dtype;
    b.queries = torch::zeros({heads, slots, n, head_dim}, q.options().dtype(dtype));
    it = index_.emplace(block, blocks_.size()).first;
    blocks_.push_back(std::move(b));
  }
  StoredBlock& b = blocks_[it->second];
  if (options_.streaming) {
    b.queries.select(1, 0).add_(q);
  } else {
    if (step_ >= total_steps_) throw Error(code::kInternal, "attention store: step " + std::to_string(step_) + " past its " + std::to_string(total_steps_) + " slots");
    b.queries.select(1, step_).copy_(q);
  }
  b.steps += 1;
}

void AttentionStore::on_self_attention(const torch::Tensor& probs, int64_t first_query, int64_t height, int64_t width) {
  if (self_attention_) self_attention_->add(probs, branch_row(options_.self_attention.branch, batch_rows_), first_query, height, width);
}

void AttentionStore::finish() {
  if (self_attention_) self_attention_->finish();
  if (!options_.streaming) return;
  for (auto& b : blocks_) b.queries = b.queries.to(options_.dtype);
}

int64_t AttentionStore::bytes() const {
  int64_t total = 0;
  for (const auto& b : blocks_) total += b.queries.numel() * b.queries.element_size();
  return total + (self_attention_ ? self_attention_->bytes() : 0);
}

std::shared_ptr<AttentionStore> AttentionStore::from_blocks(CaptureOptions options, int64_t steps,
                                                            std::vector<StoredBlock> blocks,
                                                            std::shared_ptr<SelfAttentionStore> self_attention) {
  auto store = std::make_shared<AttentionStore>(std::move(options), steps);
  store->self_attention_ = std::move(self_attention);
  for (auto& b : blocks) {
    store->index_[b.name] = store->blocks_.size();
    store->blocks_.push_back(std::move(b));
  }
  return store;
}

}  // namespace ovam
