// The softmax half of OVAM's read of the store, for one block: every stored query scored against
// the text's keys, softmax over the text's tokens, summed over steps. It is the hot path of
// attribution and of token optimisation: on a CPU with AVX2 and FMA it is one fused pass over the
// store (each query read once, eight pixels per vector, sixteen with AVX-512, where a text of a few
// tokens scores rows without transposing them), and its gradient
// a second one; elsewhere (CUDA, half-precision stores, other CPUs) it is libtorch tensor operations.
#pragma once
#include <torch/torch.h>

namespace ovam {

// queries [heads, steps, n, d], keys [heads, T, d] (already multiplied by the softmax scale)
// → [heads, n, T] float32: Σ_steps softmax_T(queries · keysᵀ). Differentiable in `keys` (the
// fused pass has its own backward pass over the store). `allow_fused` false forces the tensor
// operations (the tests compare the two).
torch::Tensor summed_softmax_scores(const torch::Tensor& queries, const torch::Tensor& keys, bool allow_fused = true);
// Whether this CPU runs the fused pass (AVX2 and FMA).
bool fused_softmax_available();

}  // namespace ovam
