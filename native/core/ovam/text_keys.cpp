#include "ovam/text_keys.h"

#include "ovam/attribution.h"

namespace ovam {

int64_t TextKeys::bytes() const {
  int64_t total = embeddings.numel() * int64_t(embeddings.element_size());
  for (const auto& [name, k] : keys) total += k.numel() * int64_t(k.element_size());
  return total;
}

TextKeys text_keys(UNet2DConditionModelImpl& unet, const torch::Tensor& embeddings) {
  torch::NoGradGuard no_grad;
  TextKeys out;
  out.embeddings = embeddings;
  const auto x = embeddings.to(unet.device(), unet.dtype());
  for (auto& [name, attention] : unet.cross_attentions()) out.keys.emplace(name, block_keys(*attention, x).contiguous());
  return out;
}

namespace {
std::string key_of(const std::vector<int64_t>& ids) {
  return std::string(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int64_t));
}
}  // namespace

std::shared_ptr<const TextKeys> TextKeyCache::get(const std::vector<int64_t>& ids, const std::function<TextKeys()>& compute) {
  const std::string key = key_of(ids);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = index_.find(key);
    if (it != index_.end()) {
      ++hits_;
      order_.splice(order_.begin(), order_, it->second);
      return it->second->second;
    }
    ++misses_;
  }
  auto computed = std::make_shared<const TextKeys>(compute());
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = index_.find(key);
  if (it != index_.end()) return it->second->second;
  const int64_t size = computed->bytes();
  if (size > capacity_) return computed;  // larger than the whole cache: used once, not kept
  order_.emplace_front(key, computed);
  index_[key] = order_.begin();
  bytes_ += size;
  evict();
  return computed;
}

void TextKeyCache::evict() {
  while (bytes_ > capacity_ && !order_.empty()) {
    bytes_ -= order_.back().second->bytes();
    index_.erase(order_.back().first);
    order_.pop_back();
  }
}

TextKeyCache::Stats TextKeyCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {hits_, misses_, int64_t(order_.size()), bytes_, capacity_};
}

void TextKeyCache::set_capacity(int64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  capacity_ = std::max<int64_t>(0, bytes);
  evict();
}

void TextKeyCache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  order_.clear();
  index_.clear();
  bytes_ = 0;
}

}  // namespace ovam
