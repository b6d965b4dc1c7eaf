// The linear half of OVAM's read of the store, for one block: its queries summed over steps, which
// (the scores being linear in the queries) is exact before scoring and reads the store once.
#pragma once
#include <torch/torch.h>

namespace ovam {

// queries [heads, S, n, d] (any layout, any floating dtype) → [heads, n, d] in `dtype`: Σ_steps.
// A float32 CPU store whose steps are dense takes one pass, each run of a head's pixels summed in
// cache over every step; libtorch's sum over the middle dimension read the store at a quarter of
// the speed (4 GB/s against 16 GB/s, one thread). Elsewhere, libtorch's sum.
torch::Tensor summed_queries(const torch::Tensor& queries, torch::ScalarType dtype);

}  // namespace ovam
