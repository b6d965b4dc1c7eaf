#include "postprocess/dense_crf.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "postprocess/permutohedral_lattice.h"
#include "util/errors.h"

namespace ovam {

namespace {

constexpr int64_t kGrain = 4096;

void check(const DenseCrfParams& p, int64_t height, int64_t width, int labels) {
  auto fail = [](const std::string& why) { throw Error(code::kInvalidArgument, "denseCRF: " + why); };
  if (height < 1 || width < 1) fail("the image must have at least one pixel");
  if (labels < 2 || labels > 255) fail(std::to_string(labels) + " labels; accepted: 2 to 255");
  auto positive = [&](double v, const char* name) {
    if (!std::isfinite(v) || v <= 0) fail(std::string(name) + " must be a finite number > 0");
  };
  auto weight = [&](double v, const char* name) {
    if (!std::isfinite(v) || v < 0) fail(std::string(name) + " must be a finite number ≥ 0");
  };
  weight(p.w1, "w1");
  positive(p.alpha, "alpha");
  positive(p.beta, "beta");
  weight(p.w2, "w2");
  positive(p.gamma, "gamma");
  if (p.iterations < 0 || p.iterations > 1000) fail("iterations must be an integer from 0 to 1000");
}

// One pairwise term: its lattice, weight and normalisation D^-½ (D = K·1).
struct Kernel {
  Kernel(const std::vector<float>& features, int64_t n, int d, float weight) : lattice(features.data(), n, d), weight(weight) {
    std::vector<float> ones(n, 1.0f);
    norm.resize(n);
    lattice.filter(ones.data(), norm.data(), 1);
    for (auto& v : norm) v = float(1.0 / std::sqrt(double(v) + 1e-20));
  }
  PermutohedralLattice lattice;
  float weight;
  std::vector<float> norm;
};

// Per pixel: out = softmax(in) over the labels (max subtracted first).
void softmax_rows(const float* in, float* out, int64_t n, int labels) {
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float* x = in + i * labels;
      float* y = out + i * labels;
      const float top = *std::max_element(x, x + labels);
      float sum = 0;
      for (int l = 0; l < labels; ++l) sum += (y[l] = std::exp(x[l] - top));
      for (int l = 0; l < labels; ++l) y[l] = y[l] / sum;
    }
  });
}

}  // namespace

std::vector<uint8_t> dense_crf(const uint8_t* image, const float* probabilities, int64_t height, int64_t width, int labels,
                               const DenseCrfParams& params) {
  check(params, height, width, labels);
  const int64_t n = height * width, L = labels;
  // Pixel-major [n × L] throughout: the lattice filters each pixel's label vector at once.
  std::vector<float> unary(n * L);
  bool finite = true;
  for (int64_t l = 0; l < L; ++l)
    for (int64_t i = 0; i < n; ++i) {
      const float p = probabilities[l * n + i];
      finite = finite && std::isfinite(p);
      unary[i * L + l] = -std::log(std::min(std::max(p, 0.01f), 0.99f));
    }
  if (!finite) throw Error(code::kInvalidArgument, "denseCRF: probabilities must be finite (found NaN or ±Infinity)");

  std::vector<Kernel> kernels;
  kernels.reserve(2);
  if (params.w1 > 0) {
    const float alpha = float(params.alpha), beta = float(params.beta);
    std::vector<float> f(n * 5);
    at::parallel_for(0, height, 1, [&](int64_t b, int64_t e) {
      for (int64_t y = b; y < e; ++y)
        for (int64_t x = 0; x < width; ++x) {
          const int64_t i = y * width + x;
          f[i * 5 + 0] = float(x) / alpha;
          f[i * 5 + 1] = float(y) / alpha;
          for (int c = 0; c < 3; ++c) f[i * 5 + 2 + c] = float(image[i * 3 + c]) / beta;
        }
    });
    kernels.emplace_back(f, n, 5, float(params.w1));
  }
  if (params.w2 > 0) {
    const float gamma = float(params.gamma);
    std::vector<float> f(n * 2);
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x) {
        f[(y * width + x) * 2] = float(x) / gamma;
        f[(y * width + x) * 2 + 1] = float(y) / gamma;
      }
    kernels.emplace_back(f, n, 2, float(params.w2));
  }

  // Mean field: Q ∝ exp(−unary + Σ_k w_k · D_k^-½ K_k D_k^-½ Q) (Potts: each label attracts itself).
  std::vector<float> q(n * L), energy(n * L), scaled(n * L), filtered(n * L);
  for (int64_t i = 0; i < n * L; ++i) energy[i] = -unary[i];
  softmax_rows(energy.data(), q.data(), n, labels);
  for (int it = 0; it < params.iterations; ++it) {
    for (int64_t i = 0; i < n * L; ++i) energy[i] = -unary[i];
    for (auto& k : kernels) {
      at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          for (int64_t l = 0; l < L; ++l) scaled[i * L + l] = q[i * L + l] * k.norm[i];
      });
      k.lattice.filter(scaled.data(), filtered.data(), labels);
      at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          for (int64_t l = 0; l < L; ++l) energy[i * L + l] -= -k.weight * (filtered[i * L + l] * k.norm[i]);
      });
    }
    softmax_rows(energy.data(), q.data(), n, labels);
  }

  std::vector<uint8_t> out(n);
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float* x = q.data() + i * L;
      out[i] = uint8_t(std::max_element(x, x + L) - x);
    }
  });
  return out;
}

}  // namespace ovam
