#include "ovam/self_attention_store.h"

#include <algorithm>

#include "util/errors.h"

namespace ovam {

void SelfAttentionStore::add(const torch::Tensor& probs, int64_t row, int64_t first_query, int64_t height, int64_t width) {
  const int64_t side = std::max(height, width);
  const auto& sides = options_.sides;
  if (!sides.empty() && std::find(sides.begin(), sides.end(), side) == sides.end()) return;
  torch::NoGradGuard no_grad;
  auto it = std::find_if(grids_.begin(), grids_.end(), [&](const SelfAttentionGrid& g) { return g.height == height && g.width == width; });
  if (it == grids_.end()) {
    SelfAttentionGrid g;
    g.height = height;
    g.width = width;
    g.matrix = torch::zeros({height * width, height * width}, probs.options().dtype(torch::kFloat32));
    grids_.push_back(std::move(g));
    it = grids_.end() - 1;
  }
  // The mean over heads of this call, summed over calls; divided once in finish(). A call arrives
  // in blocks of queries, counted once, at its first.
  const auto heads = probs.size(1);
  it->matrix.slice(0, first_query, first_query + probs.size(2)).add_(probs[row].sum(0), 1.0 / double(heads));
  if (first_query == 0) it->calls += 1;
}

void SelfAttentionStore::finish() {
  if (finished_) return;
  for (auto& g : grids_) g.matrix.div_(double(std::max<int64_t>(g.calls, 1)));
  finished_ = true;
}

const SelfAttentionGrid& SelfAttentionStore::grid(int64_t side) const {
  std::string kept;
  for (const auto& g : grids_) {
    if (g.side() == side) return g;
    kept += (kept.empty() ? "" : ", ") + std::to_string(g.side());
  }
  throw Error(code::kInvalidArgument, "no self-attention of side " + std::to_string(side) + " was captured (kept sides: " +
                                          (kept.empty() ? "none; generate with capture.selfAttention" : kept) + ")");
}

int64_t SelfAttentionStore::bytes() const {
  int64_t total = 0;
  for (const auto& g : grids_) total += g.matrix.numel() * g.matrix.element_size();
  return total;
}

std::shared_ptr<SelfAttentionStore> SelfAttentionStore::from_grids(SelfAttentionOptions options, std::vector<SelfAttentionGrid> grids) {
  auto store = std::make_shared<SelfAttentionStore>(std::move(options));
  store->grids_ = std::move(grids);
  store->finished_ = true;
  return store;
}

}  // namespace ovam
