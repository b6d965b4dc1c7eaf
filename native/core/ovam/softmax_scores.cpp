#include "ovam/softmax_scores.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

namespace ovam {

namespace {

#define OVAM_AVX2 __attribute__((target("avx2,fma")))

// e^x for x ≤ 0 (Cody-Waite reduction and a degree-6 polynomial, ~1 ulp); x is clamped at -87,
// where e^x ≈ 1.6e-38 is far below a softmax's resolution.
OVAM_AVX2 inline __m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// In-register transpose of eight rows of eight floats.
OVAM_AVX2 inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// Eight query rows [8, d] → [d, 8]: lane i of row j is query i's j-th value, so one FMA scores
// eight pixels against one token.
OVAM_AVX2 void transpose_rows(const float* q, int64_t d, float* qt) {
  int64_t j = 0;
  for (; j + 8 <= d; j += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(q + i * d + j);
    transpose8(r);
    for (int i = 0; i < 8; ++i) _mm256_storeu_ps(qt + (j + i) * 8, r[i]);
  }
  for (; j < d; ++j)
    for (int i = 0; i < 8; ++i) qt[j * 8 + i] = q[i * d + j];
}

// Scores of eight pixels against TT tokens (rows of `keys`, stride d): scores[t] = qtᵀ · keys[t].
template <int TT>
OVAM_AVX2 void score_tile(const float* qt, const float* keys, int64_t d, float* scores) {
  __m256 acc[TT];
  for (int t = 0; t < TT; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t j = 0; j < d; ++j) {
    const __m256 qj = _mm256_loadu_ps(qt + j * 8);
    for (int t = 0; t < TT; ++t) acc[t] = _mm256_fmadd_ps(qj, _mm256_broadcast_ss(keys + t * d + j), acc[t]);
  }
  for (int t = 0; t < TT; ++t) _mm256_store_ps(scores + t * 8, acc[t]);
}

// Twelve accumulators, the query row and a broadcast fit AVX2's sixteen registers.
constexpr int kTile = 12;
using TileFn = void (*)(const float*, const float*, int64_t, float*);
template <size_t... I>
constexpr std::array<TileFn, sizeof...(I)> tile_table(std::index_sequence<I...>) {
  return {&score_tile<int(I) + 1>...};
}
constexpr auto kTiles = tile_table(std::make_index_sequence<kTile>{});

constexpr int64_t kMaxTokens = 1024, kMaxHeadDim = 512;
// A multiple of 8 (tasks own whole lanes of the output), and long runs of contiguous queries per
// step so that the hardware prefetcher keeps up (64-pixel runs read at a third of the speed).
constexpr int64_t kPixelsPerTask = 512;

// Eight pixels (from p, `valid` of them real) of one head and step: out[t, p + i] += softmax over
// tokens of the pixel's scores. Lanes over pixels make scores, softmax and the sum lane-wise.
OVAM_AVX2 void add_eight_pixels(const float* q, int64_t valid, const float* keys, int64_t d, int64_t tokens,
                                float* out, int64_t n) {
  alignas(64) float qt[kMaxHeadDim * 8];
  alignas(64) float scores[kMaxTokens * 8];
  if (valid == 8) {
    transpose_rows(q, d, qt);
  } else {  // the last pixels: zero rows stand in for the missing ones (never written out)
    alignas(64) float padded[kMaxHeadDim * 8] = {};
    std::copy(q, q + valid * d, padded);
    transpose_rows(padded, d, qt);
  }
  for (int64_t t = 0; t < tokens; t += kTile)
    kTiles[std::min<int64_t>(kTile, tokens - t) - 1](qt, keys + t * d, d, scores + t * 8);
  __m256 max = _mm256_load_ps(scores);
  for (int64_t t = 1; t < tokens; ++t) max = _mm256_max_ps(max, _mm256_load_ps(scores + t * 8));
  __m256 sum = _mm256_setzero_ps();
  for (int64_t t = 0; t < tokens; ++t) {
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_load_ps(scores + t * 8), max));
    _mm256_store_ps(scores + t * 8, e);
    sum = _mm256_add_ps(sum, e);
  }
  const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), sum);
  for (int64_t t = 0; t < tokens; ++t) {
    const __m256 probabilities = _mm256_mul_ps(_mm256_load_ps(scores + t * 8), inv);
    if (valid == 8) {
      _mm256_storeu_ps(out + t * n, _mm256_add_ps(probabilities, _mm256_loadu_ps(out + t * n)));
    } else {
      alignas(32) float lane[8];
      _mm256_store_ps(lane, probabilities);
      for (int64_t i = 0; i < valid; ++i) out[t * n + i] += lane[i];
    }
  }
}

// queries [heads, steps, n, d], keys [heads, T, d] → out [heads, T, n] (+=).
void fused(const float* queries, const float* keys, float* out, int64_t heads, int64_t steps, int64_t n, int64_t d,
           int64_t tokens) {
  const int64_t chunks = (n + kPixelsPerTask - 1) / kPixelsPerTask;
  // Each task owns a head's run of pixels over every step, so no two tasks write one output lane.
  at::parallel_for(0, heads * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task / chunks, p0 = (task % chunks) * kPixelsPerTask, p1 = std::min(n, p0 + kPixelsPerTask);
      for (int64_t s = 0; s < steps; ++s) {
        const float* q = queries + ((h * steps + s) * n) * d;
        for (int64_t p = p0; p < p1; p += 8)
          add_eight_pixels(q + p * d, std::min<int64_t>(8, p1 - p), keys + h * tokens * d, d, tokens,
                           out + h * tokens * n + p, n);
      }
    }
  });
}

}  // namespace

bool fused_softmax_available() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

torch::Tensor summed_softmax_scores(const torch::Tensor& queries, const torch::Tensor& keys, bool allow_fused) {
  const int64_t heads = queries.size(0), steps = queries.size(1), n = queries.size(2), d = queries.size(3);
  const int64_t tokens = keys.size(1);
  const bool fusable = allow_fused && queries.device().is_cpu() && queries.scalar_type() == torch::kFloat32 &&
                       keys.scalar_type() == torch::kFloat32 && !(torch::GradMode::is_enabled() && keys.requires_grad()) &&
                       tokens >= 1 && tokens <= kMaxTokens && d <= kMaxHeadDim && fused_softmax_available();
  if (!fusable) {
    auto scores = torch::matmul(queries.view({heads, -1, d}).to(keys.scalar_type()), keys.transpose(1, 2));
    return torch::softmax(scores, -1).view({heads, steps, n, tokens}).sum(1);
  }
  auto q = queries.contiguous();
  auto k = keys.contiguous();
  auto out = torch::zeros({heads, tokens, n}, keys.options());
  fused(q.data_ptr<float>(), k.data_ptr<float>(), out.data_ptr<float>(), heads, steps, n, d, tokens);
  return out.transpose(1, 2);
}

}  // namespace ovam
