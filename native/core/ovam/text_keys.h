// The keys of a text in every cross-attention block (each block's to_k of the text's embeddings):
// what attribution scores the stored queries against. They depend on the text and the model only,
// so a pipeline keeps the recent ones: a user typing words in the studio, or a dataset attributing
// the same class names on every image, runs the text encoder and the 16 projections once per text.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "models/unet_2d_condition.h"

namespace ovam {

struct TextKeys {
  torch::Tensor embeddings;                   // [T, D] in the model's dtype
  std::map<std::string, torch::Tensor> keys;  // cross-attention block name → [heads, T, head_dim] float32
  int64_t bytes() const;
};

// Keys of `embeddings` [T, D] in every cross-attention block of `unet` (no gradient).
TextKeys text_keys(UNet2DConditionModelImpl& unet, const torch::Tensor& embeddings);

// Least-recently-used text keys, bounded by bytes; safe to share between concurrent jobs.
class TextKeyCache {
 public:
  explicit TextKeyCache(int64_t capacity_bytes = int64_t(64) << 20) : capacity_(capacity_bytes) {}
  // The keys of token ids `ids`, computed by `compute` on a miss (outside the lock: two jobs
  // asking for the same new text may both compute it; the first stored is kept).
  std::shared_ptr<const TextKeys> get(const std::vector<int64_t>& ids, const std::function<TextKeys()>& compute);
  struct Stats {
    int64_t hits = 0, misses = 0, entries = 0, bytes = 0, capacity = 0;
  };
  Stats stats() const;
  void set_capacity(int64_t bytes);  // 0 disables the cache
  void clear();

 private:
  using Entry = std::pair<std::string, std::shared_ptr<const TextKeys>>;
  void evict();  // with the lock held
  mutable std::mutex mutex_;
  std::list<Entry> order_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  int64_t capacity_, bytes_ = 0, hits_ = 0, misses_ = 0;
};

}  // namespace ovam
