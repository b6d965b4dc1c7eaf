#include "ovam/summed_queries.h"

#include <ATen/Parallel.h>

#include <algorithm>

namespace ovam {

namespace {
// 128 KB of sums per task: long contiguous runs per step for the prefetcher, and the sums stay in
// L2 across the steps (8K-float runs read at half the speed).
constexpr int64_t kRun = 32768;
}  // namespace

torch::Tensor summed_queries(const torch::Tensor& queries, torch::ScalarType dtype) {
  const int64_t heads = queries.size(0), steps = queries.size(1), n = queries.size(2), d = queries.size(3);
  const bool dense_steps = queries.stride(3) == 1 && queries.stride(2) == d && queries.stride(1) == n * d;
  if (!queries.device().is_cpu() || queries.scalar_type() != torch::kFloat32 || dtype != torch::kFloat32 || !dense_steps || steps == 0)
    return queries.sum(1, false, dtype);
  const int64_t row = n * d, runs = (row + kRun - 1) / kRun, head_stride = queries.stride(0);
  auto out = torch::empty({heads, n, d}, queries.options());
  const float* q = queries.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, heads * runs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task / runs, first = (task % runs) * kRun, length = std::min(kRun, row - first);
      const float* src = q + h * head_stride + first;
      float* __restrict sum = o + h * row + first;
      std::copy(src, src + length, sum);
      for (int64_t s = 1; s < steps; ++s) {
        const float* __restrict step = src + s * row;
        for (int64_t i = 0; i < length; ++i) sum[i] += step[i];
      }
    }
  });
  return out;
}

}  // namespace ovam
