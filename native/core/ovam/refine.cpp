#include "ovam/refine.h"

#include "util/errors.h"

namespace ovam {

namespace {
torch::Tensor resize(const torch::Tensor& maps, int64_t height, int64_t width) {
  if (maps.size(1) == height && maps.size(2) == width) return maps;
  namespace F = torch::nn::functional;
  return F::interpolate(maps.unsqueeze(0),
                        F::InterpolateFuncOptions().size(std::vector<int64_t>{height, width}).mode(torch::kBilinear).align_corners(false))[0];
}
}  // namespace

torch::Tensor refine_sa_power(const SelfAttentionStore& store, const torch::Tensor& maps, const RefineOptions& options) {
  if (maps.dim() != 3 || maps.size(0) < 1 || maps.size(1) < 1 || maps.size(2) < 1)
    throw Error(code::kInvalidArgument, "refine: maps must be [tokens, height, width]");
  if (options.power < 0) throw Error(code::kInvalidArgument, "refine: power must be a non-negative integer");
  if (store.grids().empty()) throw Error(code::kInvalidArgument, "refine: the image holds no self-attention (generate with capture.selfAttention)");
  int64_t side = 0;
  for (const auto& g : store.grids()) side = std::max(side, g.side());
  const SelfAttentionGrid& grid = store.grid(options.side.value_or(side));
  torch::NoGradGuard no_grad;
  // In float64: A is close to averaging, so A^τ·c is nearly constant and min-max magnifies its
  // small spread; float32 products lose it entirely at τ = 4 on the fixtures.
  const auto a = grid.matrix.to(torch::kFloat64);
  const int64_t tokens = maps.size(0), n = grid.height * grid.width;
  // Columns c_t = vec(map_t) on the grid, row-major like A's pixels.
  auto x = resize(maps.to(a.device(), torch::kFloat32), grid.height, grid.width).reshape({tokens, n}).t().to(torch::kFloat64);
  for (int64_t i = 0; i < options.power; ++i) x = torch::mm(a, x);
  auto min = std::get<0>(x.min(0, true)), max = std::get<0>(x.max(0, true));
  auto range = max - min;
  // (x − min) / (max − min) per token; a constant column normalises to zeros.
  x = torch::where(range > 0, (x - min) / range, torch::zeros_like(x));
  auto refined = x.t().reshape({tokens, grid.height, grid.width}).to(torch::kFloat32);
  const auto [height, width] = options.size.value_or(std::make_pair(maps.size(1), maps.size(2)));
  return resize(refined, height, width).contiguous().to(torch::kCPU);
}

}  // namespace ovam
