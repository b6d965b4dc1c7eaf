#include "ovam/attribution.h"

#include <algorithm>
#include <functional>
#include <map>

#include "ovam/softmax_scores.h"
#include "ovam/summed_queries.h"
#include "util/errors.h"

namespace ovam {

namespace {

namespace F = torch::nn::functional;

void require(const std::string& option, const std::string& value, std::initializer_list<const char*> accepted) {
  std::string list;
  for (const char* a : accepted) {
    if (value == a) return;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  throw Error(code::kInvalidArgument, "attribute option " + option + " = \"" + value + "\"; accepted: " + list);
}

torch::Tensor activate(const torch::Tensor& x, const std::string& activation) {
  if (activation == "relu") return torch::relu(x);
  if (activation == "sigmoid") return torch::sigmoid(x);
  if (activation == "tanh") return torch::tanh(x);
  if (activation == "sigmoid+relu") return torch::relu(torch::sigmoid(x) * 2 - 1);
  if (activation == "clamp") return torch::clamp(x, 0, 1);
  return x;
}

torch::Tensor aggregate(const torch::Tensor& x, const std::string& aggregation, int64_t dim) {
  return aggregation == "mean" ? x.mean(dim) : x.sum(dim);
}

torch::Tensor resize(const torch::Tensor& maps, std::vector<int64_t> size, const std::string& mode) {
  if (maps.size(-2) == size[0] && maps.size(-1) == size[1]) return maps;
  auto options = F::InterpolateFuncOptions().size(size);
  if (mode == "nearest") options.mode(torch::kNearest);
  else if (mode == "bicubic") options.mode(torch::kBicubic).align_corners(false);
  else options.mode(torch::kBilinear).align_corners(false);
  return F::interpolate(maps.unsqueeze(0), options).squeeze(0);
}

// One block: [T, h, w]. Queries [heads, S, n, d] (S: the chosen range of steps, a view) are
// scored against keys [heads, T, d] in one pass over every step and head.
torch::Tensor block_maps(const StoredBlock& block, const torch::Tensor& keys, const AttributionOptions& options) {
  const auto queries = options.steps ? block.queries.slice(1, options.steps->first, options.steps->second) : block.queries;
  // [heads, T, n]: the fused pass's layout and the maps' order. Summing heads over the transposed
  // [heads, n, T] took 0.14 ms per 64×64 block, and libtorch's bilinear resize of a transposed
  // map 4x its time (2.5 ms at 512²).
  torch::Tensor per_head;
  if (options.mode == "linear") {
    // Linear in the queries: summing steps first is exact and reads the store once.
    // The sum accumulates in the keys' float32 without a converted copy of a half-precision store.
    per_head = torch::matmul(keys, summed_queries(queries, keys.scalar_type()).transpose(1, 2)) * block.scale;
  } else {
    per_head = summed_softmax_scores(queries, keys * block.scale).transpose(1, 2);
  }
  auto maps = aggregate(activate(per_head, options.head_activation), options.head_aggregation, 0);  // [T, n]
  return maps.contiguous().view({-1, block.height, block.width});
}

}  // namespace

void AttributionOptions::validate() const {
  require("mode", mode, {"softmax", "linear"});
  require("headActivation", head_activation, {"none", "relu", "sigmoid", "tanh", "sigmoid+relu", "clamp"});
  require("headAggregation", head_aggregation, {"sum", "mean"});
  require("blockInterpolation", block_interpolation, {"bilinear", "nearest", "bicubic"});
  require("mapAggregation", map_aggregation, {"sum", "mean"});
  require("mapActivation", map_activation, {"none", "relu", "sigmoid", "tanh", "sigmoid+relu", "clamp"});
  if (size && (size->first <= 0 || size->second <= 0))
    throw Error(code::kInvalidArgument, "attribute option size must be two positive integers");
  if (steps && (steps->first < 0 || steps->second <= steps->first))
    throw Error(code::kInvalidArgument, "attribute option steps must be a range [first, end) with 0 ≤ first < end");
}

namespace {

// The stored blocks the options select, in store order; kInvalidArgument for an unknown name or a
// step range past the store.
std::vector<const StoredBlock*> selected_blocks(const AttentionStore& store, const AttributionOptions& options) {
  std::vector<const StoredBlock*> chosen;
  for (const auto& name : options.blocks) {
    const auto& all = store.blocks();
    if (std::none_of(all.begin(), all.end(), [&](const StoredBlock& b) { return b.name == name; })) {
      std::string stored;
      for (const auto& b : all) stored += (stored.empty() ? "" : ", ") + b.name;
      throw Error(code::kInvalidArgument, "attribute option blocks: \"" + name + "\" is not a stored block; stored: " + stored);
    }
  }
  for (const auto& b : store.blocks())
    if (options.blocks.empty() || std::find(options.blocks.begin(), options.blocks.end(), b.name) != options.blocks.end())
      chosen.push_back(&b);
  if (options.steps) {
    if (store.options().streaming)
      throw Error(code::kInvalidArgument, "attribute option steps needs every step stored; this capture was streaming (one sum)");
    const int64_t stored = chosen.front()->queries.size(1);
    if (options.steps->second > stored)
      throw Error(code::kInvalidArgument, "attribute option steps [" + std::to_string(options.steps->first) + ", " +
                                              std::to_string(options.steps->second) + ") is past the " +
                                              std::to_string(stored) + " stored steps");
  }
  return chosen;
}

}  // namespace

namespace {

// The maps of the chosen blocks, with each block's keys [heads, T, d] (float32) from `keys_of`.
torch::Tensor attribute_with(const AttentionStore& store, const AttributionOptions& options,
                             const std::function<torch::Tensor(const StoredBlock&)>& keys_of) {
  options.validate();
  if (store.blocks().empty())
    throw Error(code::kInvalidArgument, "this generation holds no attention (it was made with capture disabled)");
  if (store.options().streaming && options.mode != "linear")
    throw Error(code::kInvalidArgument, "a streaming capture sums queries over steps, which is exact only for mode \"linear\"");
  // The grid is the largest stored block's whatever the selection, so maps of any selection add up.
  std::vector<int64_t> grid{0, 0};
  for (const auto& b : store.blocks()) {
    grid[0] = std::max(grid[0], b.height);
    grid[1] = std::max(grid[1], b.width);
  }
  const auto chosen = selected_blocks(store, options);
  torch::Tensor total;
  std::vector<torch::Tensor> each;
  for (const StoredBlock* stored : chosen) {
    const auto& block = *stored;
    auto maps = resize(block_maps(block, keys_of(block).to(block.queries.device()), options), grid, options.block_interpolation);
    if (options.per_block) each.push_back(maps);
    else total = total.defined() ? total + maps : maps;
  }
  // Per block, map aggregation has one map to aggregate: the activation and size apply to each.
  if (options.per_block) total = torch::stack(each);
  else if (options.map_aggregation == "mean") total = total / double(chosen.size());
  total = activate(total, options.map_activation);
  if (options.size) {
    const std::vector<int64_t> size{options.size->first, options.size->second};
    total = options.per_block ? resize(total.flatten(0, 1), size, "bilinear").reshape({total.size(0), total.size(1), size[0], size[1]})
                              : resize(total, size, "bilinear");
  }
  return total;
}

Error not_in_unet(const StoredBlock& block) {
  return Error(code::kInvalidArgument, "stored block " + block.name + " is not in this UNet");
}

}  // namespace

torch::Tensor attribute(UNet2DConditionModelImpl& unet, const AttentionStore& store, const torch::Tensor& embeddings,
                        const AttributionOptions& options) {
  std::map<std::string, Attention> attentions;
  for (auto& [name, attention] : unet.cross_attentions()) attentions.emplace(name, attention);
  const auto x = embeddings.to(unet.device(), unet.dtype());
  return attribute_with(store, options, [&](const StoredBlock& block) {
    auto it = attentions.find(block.name);
    if (it == attentions.end()) throw not_in_unet(block);
    return block_keys(*it->second, x);
  });
}

torch::Tensor block_keys(AttentionImpl& attention, const torch::Tensor& embeddings) {
  auto keys = attention.to_k->forward(embeddings).to(torch::kFloat32);
  return keys.view({-1, attention.heads, attention.head_dim}).transpose(0, 1);
}

torch::Tensor attribute(const AttentionStore& store, const TextKeys& keys, const AttributionOptions& options) {
  return attribute_with(store, options, [&](const StoredBlock& block) {
    auto it = keys.keys.find(block.name);
    if (it == keys.keys.end()) throw not_in_unet(block);
    return it->second;
  });
}

}  // namespace ovam
