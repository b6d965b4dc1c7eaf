// The fully connected CRF of Krähenbühl & Koltun (NeurIPS 2011) with Gaussian pairwise kernels
// and Potts compatibility, by mean-field inference with permutohedral-lattice filtering, as OVAM
// post-processes its masks (through SimpleCRF, which wraps Krähenbühl's densecrf): unary
// −log(clip(p, 0.01, 0.99)); a bilateral kernel on (x/α, y/α, r/β, g/β, b/β) of weight w1 and a
// Gaussian kernel on (x/γ, y/γ) of weight w2, both with symmetric normalisation
// (D^-½ K D^-½, D = K·1; Krähenbühl & Koltun, ICML 2013) and the point itself included.
//
// Written here: Debian has no C++ dense-CRF library (pydensecrf and SimpleCRF are Python wheels
// around densecrf's sources), and this one runs its filtering on all cores with at::parallel_for.
#pragma once
#include <cstdint>
#include <vector>

namespace ovam {

struct DenseCrfParams {
  double w1 = 10, alpha = 80, beta = 13;  // bilateral (appearance) kernel: weight, spatial std, colour std
  double w2 = 3, gamma = 3;               // Gaussian (smoothness) kernel: weight, spatial std
  int iterations = 5;                     // mean-field steps
};

// `image` [height × width × 3] RGB; `probabilities` [labels × height × width] (one plane per label,
// finite; clipped to [0.01, 0.99] for the unary); 2 ≤ labels ≤ 255. Returns the MAP label of each
// pixel [height × width] (ties go to the lower label). Throws Error(kInvalidArgument) on bad input.
std::vector<uint8_t> dense_crf(const uint8_t* image, const float* probabilities, int64_t height, int64_t width, int labels,
                               const DenseCrfParams& params);

}  // namespace ovam
