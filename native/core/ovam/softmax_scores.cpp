#include "ovam/softmax_scores.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own _mm512_undefined_ps().
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

namespace ovam {

namespace {

#define OVAM_AVX2 __attribute__((target("avx2,fma")))
// The forward pass on sixteen lanes where the CPU has AVX-512 (2.2× the eight-lane speed at 13
// tokens on this EPYC; the gradient stays on eight).
#define OVAM_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))

// e^x for x ≤ 0 (Cody-Waite reduction and a degree-6 polynomial, ~1 ulp); x is clamped at -87,
// where e^x ≈ 1.6e-38 is far below a softmax's resolution. The same steps on 8 and 16 lanes.
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kExpPoly[] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

OVAM_AVX2 inline __m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[i]));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

OVAM_AVX512 inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpPoly[i]));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
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
// An FMA waits ~4 cycles for its accumulator, so small tiles split j over two accumulator sets
// to keep enough independent chains in flight.
template <int TT>
OVAM_AVX2 void score_tile(const float* qt, const float* keys, int64_t d, float* scores) {
  constexpr int kSets = TT <= 6 ? 2 : 1;
  __m256 acc[kSets][TT];
  for (int a = 0; a < kSets; ++a)
    for (int t = 0; t < TT; ++t) acc[a][t] = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + kSets <= d; j += kSets)
    for (int a = 0; a < kSets; ++a) {
      const __m256 qj = _mm256_loadu_ps(qt + (j + a) * 8);
      for (int t = 0; t < TT; ++t) acc[a][t] = _mm256_fmadd_ps(qj, _mm256_broadcast_ss(keys + t * d + j + a), acc[a][t]);
    }
  for (; j < d; ++j) {
    const __m256 qj = _mm256_loadu_ps(qt + j * 8);
    for (int t = 0; t < TT; ++t) acc[0][t] = _mm256_fmadd_ps(qj, _mm256_broadcast_ss(keys + t * d + j), acc[0][t]);
  }
  for (int t = 0; t < TT; ++t) {
    __m256 sum = acc[0][t];
    for (int a = 1; a < kSets; ++a) sum = _mm256_add_ps(sum, acc[a][t]);
    _mm256_store_ps(scores + t * 8, sum);
  }
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
// A multiple of 16 (tasks own whole lanes of the output), and long runs of contiguous queries per
// step so that the hardware prefetcher keeps up (64-pixel runs read at a third of the speed).
constexpr int64_t kPixelsPerTask = 512;

// Scores of `lanes` pixels against every token, in tiles of near-equal size of at most `largest`
// tokens (13 tokens: 7 + 6, not 12 + 1, whose lone chain would stall); `tile[k - 1]` scores k.
void score_tiles(const TileFn* tile, int64_t largest, int64_t lanes, const float* qt, const float* keys, int64_t d,
                 int64_t tokens, float* scores) {
  const int64_t tiles = (tokens + largest - 1) / largest;
  for (int64_t i = 0, t = 0; i < tiles; ++i) {
    const int64_t size = (tokens - t) / (tiles - i) + ((tokens - t) % (tiles - i) ? 1 : 0);
    tile[size - 1](qt, keys + t * d, d, scores + t * lanes);
    t += size;
  }
}

// Eight pixels (`valid` of them real) of one head and step, lanes over pixels: their queries
// transposed into qt [d, 8] and their softmax over tokens into probabilities [T, 8].
OVAM_AVX2 void softmax_eight(const float* q, int64_t valid, const float* keys, int64_t d, int64_t tokens, float* qt,
                             float* probabilities) {
  // The group after next: the hardware prefetcher alone left ~25% of the time in load stalls.
  // (A prefetch past the end of the store is harmless: it never faults.)
  for (int64_t i = 16 * d; i < 24 * d; i += 16) _mm_prefetch(reinterpret_cast<const char*>(q + i), _MM_HINT_T0);
  if (valid == 8) {
    transpose_rows(q, d, qt);
  } else {  // the last pixels: zero rows stand in for the missing ones (never written out)
    alignas(64) float padded[kMaxHeadDim * 8] = {};
    std::copy(q, q + valid * d, padded);
    transpose_rows(padded, d, qt);
  }
  float* scores = probabilities;
  score_tiles(kTiles.data(), kTile, 8, qt, keys, d, tokens, scores);
  __m256 max = _mm256_load_ps(scores);
  for (int64_t t = 1; t < tokens; ++t) max = _mm256_max_ps(max, _mm256_load_ps(scores + t * 8));
  __m256 sum = _mm256_setzero_ps();
  for (int64_t t = 0; t < tokens; ++t) {
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_load_ps(scores + t * 8), max));
    _mm256_store_ps(scores + t * 8, e);
    sum = _mm256_add_ps(sum, e);
  }
  const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), sum);
  for (int64_t t = 0; t < tokens; ++t) _mm256_store_ps(probabilities + t * 8, _mm256_mul_ps(_mm256_load_ps(scores + t * 8), inv));
}

// Lanes of row t of a [T, n] plane at pixel p: all eight, or the `valid` first and zeros.
OVAM_AVX2 inline __m256 load_lanes(const float* row, int64_t valid) {
  if (valid == 8) return _mm256_loadu_ps(row);
  alignas(32) float lane[8] = {};
  std::copy(row, row + valid, lane);
  return _mm256_load_ps(lane);
}

// Forward, eight pixels: out[t, p + i] += softmax_t.
OVAM_AVX2 void forward_eight(const float* q, int64_t valid, const float* keys, int64_t d, int64_t tokens, float* out,
                             int64_t n) {
  alignas(64) float qt[kMaxHeadDim * 8];
  alignas(64) float probabilities[kMaxTokens * 8];
  softmax_eight(q, valid, keys, d, tokens, qt, probabilities);
  for (int64_t t = 0; t < tokens; ++t) {
    const __m256 sum = _mm256_add_ps(_mm256_load_ps(probabilities + t * 8), load_lanes(out + t * n, valid));
    if (valid == 8) {
      _mm256_storeu_ps(out + t * n, sum);
    } else {
      alignas(32) float lane[8];
      _mm256_store_ps(lane, sum);
      std::copy(lane, lane + valid, out + t * n);
    }
  }
}

// Backward, eight pixels: with g = ∂L/∂out [T, n] at p, the softmax's gradient on the scores is
// P_t (g_t − Σ_u P_u g_u); the keys' gradient accumulates it times the queries, lane-wise in
// grad [T, d, 8] (the lanes are summed once per task).
OVAM_AVX2 void backward_eight(const float* q, int64_t valid, const float* keys, int64_t d, int64_t tokens,
                              const float* g, int64_t n, float* grad) {
  alignas(64) float qt[kMaxHeadDim * 8];
  alignas(64) float probabilities[kMaxTokens * 8];
  softmax_eight(q, valid, keys, d, tokens, qt, probabilities);
  __m256 dot = _mm256_setzero_ps();
  for (int64_t t = 0; t < tokens; ++t)
    dot = _mm256_fmadd_ps(_mm256_load_ps(probabilities + t * 8), load_lanes(g + t * n, valid), dot);
  for (int64_t t = 0; t < tokens; ++t) {
    // Padded lanes have zero queries, so they add nothing below.
    const __m256 ds = _mm256_mul_ps(_mm256_load_ps(probabilities + t * 8), _mm256_sub_ps(load_lanes(g + t * n, valid), dot));
    float* row = grad + t * d * 8;
    for (int64_t j = 0; j < d; ++j)
      _mm256_storeu_ps(row + j * 8, _mm256_fmadd_ps(ds, _mm256_loadu_ps(qt + j * 8), _mm256_loadu_ps(row + j * 8)));
  }
}

// Sixteen query rows [16, d] → [d, 16], as two eight-row transposes.
OVAM_AVX512 void transpose_rows_sixteen(const float* q, int64_t d, float* qt) {
  int64_t j = 0;
  for (; j + 8 <= d; j += 8) {
    __m256 low[8], high[8];
    for (int i = 0; i < 8; ++i) {
      low[i] = _mm256_loadu_ps(q + i * d + j);
      high[i] = _mm256_loadu_ps(q + (i + 8) * d + j);
    }
    transpose8(low);
    transpose8(high);
    for (int i = 0; i < 8; ++i) _mm512_storeu_ps(qt + (j + i) * 16, _mm512_insertf32x8(_mm512_castps256_ps512(low[i]), high[i], 1));
  }
  for (; j < d; ++j)
    for (int i = 0; i < 16; ++i) qt[j * 16 + i] = q[i * d + j];
}

// score_tile on sixteen lanes; AVX-512's 32 registers take tiles of 24 tokens.
template <int TT>
OVAM_AVX512 void score_tile_sixteen(const float* qt, const float* keys, int64_t d, float* scores) {
  constexpr int kSets = TT <= 2 ? 4 : TT <= 6 ? 2 : 1;
  __m512 acc[kSets][TT];
  for (int a = 0; a < kSets; ++a)
    for (int t = 0; t < TT; ++t) acc[a][t] = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + kSets <= d; j += kSets)
    for (int a = 0; a < kSets; ++a) {
      const __m512 qj = _mm512_loadu_ps(qt + (j + a) * 16);
      for (int t = 0; t < TT; ++t) acc[a][t] = _mm512_fmadd_ps(qj, _mm512_set1_ps(keys[t * d + j + a]), acc[a][t]);
    }
  for (; j < d; ++j) {
    const __m512 qj = _mm512_loadu_ps(qt + j * 16);
    for (int t = 0; t < TT; ++t) acc[0][t] = _mm512_fmadd_ps(qj, _mm512_set1_ps(keys[t * d + j]), acc[0][t]);
  }
  for (int t = 0; t < TT; ++t) {
    __m512 sum = acc[0][t];
    for (int a = 1; a < kSets; ++a) sum = _mm512_add_ps(sum, acc[a][t]);
    _mm512_store_ps(scores + t * 16, sum);
  }
}
constexpr int kWideTile = 24;
template <size_t... I>
constexpr std::array<TileFn, sizeof...(I)> wide_tile_table(std::index_sequence<I...>) {
  return {&score_tile_sixteen<int(I) + 1>...};
}
constexpr auto kWideTiles = wide_tile_table(std::make_index_sequence<kWideTile>{});

// Sixteen horizontal sums: lane i of the result is the sum of acc[i]'s lanes (a tree of 15
// unpack or shuffle pairs and adds, lanes in order).
OVAM_AVX512 inline __m512 sum_lanes_sixteen(const __m512 acc[16]) {
  __m512 x[8], y[4], z[2];
  for (int i = 0; i < 8; ++i) x[i] = _mm512_add_ps(_mm512_unpacklo_ps(acc[2 * i], acc[2 * i + 1]), _mm512_unpackhi_ps(acc[2 * i], acc[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(x[2 * i]), b = _mm512_castps_pd(x[2 * i + 1]);
    y[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  for (int i = 0; i < 2; ++i)
    z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0x88), _mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x88), _mm512_shuffle_f32x4(z[0], z[1], 0xDD));
}

// Few tokens (a word: start, word, end) score sixteen query rows without the transpose, whose
// cost few tokens do not repay: one FMA chain per row and token, sixteen chains summed across
// lanes at once. On this EPYC, over a 30-step 512² store: 1.2-1.6x a plain read of the store
// where the transposed pass took 1.6-2.4x at 3 tokens, still ahead at 6, behind at 8 (head size 40).
constexpr int64_t kRowTokens = 6;

// Rows of d ≤ 16·C floats against keys padded with zeros to C vectors.
template <int C>
OVAM_AVX512 void row_scores(const float* q, const float* keys, int64_t d, int64_t tokens, float* scores) {
  const __mmask16 tail = __mmask16(d % 16 ? (1u << (d % 16)) - 1 : 0xFFFF);
  for (int64_t t = 0; t < tokens; ++t) {
    __m512 k[C], acc[16];
    for (int c = 0; c < C; ++c) k[c] = _mm512_load_ps(keys + (t * C + c) * 16);
    // Chunk by chunk across the rows: sixteen independent FMA chains in flight.
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, q + i * d + (C - 1) * 16), k[C - 1]);
    for (int c = 0; c < C - 1; ++c)
      for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(q + i * d + c * 16), k[c], acc[i]);
    _mm512_store_ps(scores + t * 16, sum_lanes_sixteen(acc));
  }
}

// Rows of d = 8·V floats, V odd (SD 1.x's 40): a row alone straddles cache lines every other
// time, two rows are V whole vectors. Keys laid twice end to end; the middle vector of a pair
// holds the end of one row and the start of the next.
template <int V>
OVAM_AVX512 void pair_scores(const float* q, const float* keys, int64_t d, int64_t tokens, float* scores) {
  constexpr int m = V / 2;
  for (int64_t t = 0; t < tokens; ++t) {
    __m512 k[V], acc[16];
    for (int c = 0; c < V; ++c) k[c] = _mm512_load_ps(keys + (t * V + c) * 16);
    for (int i = 0; i < 16; i += 2) {
      const __m512 middle = _mm512_loadu_ps(q + i * d + m * 16);
      acc[i] = _mm512_maskz_mul_ps(0x00FF, middle, k[m]);
      acc[i + 1] = _mm512_maskz_mul_ps(0xFF00, middle, k[m]);
    }
    for (int c = 0; c < m; ++c)
      for (int i = 0; i < 16; i += 2) {
        acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(q + i * d + c * 16), k[c], acc[i]);
        acc[i + 1] = _mm512_fmadd_ps(_mm512_loadu_ps(q + i * d + (m + 1 + c) * 16), k[m + 1 + c], acc[i + 1]);
      }
    _mm512_store_ps(scores + t * 16, sum_lanes_sixteen(acc));
  }
}
using RowScoresFn = void (*)(const float*, const float*, int64_t, int64_t, float*);
constexpr int kRowChunks = 12;  // d ≤ 192: SD's 64, 80 and 160
template <size_t... I>
constexpr std::array<RowScoresFn, sizeof...(I)> row_table(std::index_sequence<I...>) {
  return {&row_scores<int(I) + 1>...};
}
constexpr auto kRowScores = row_table(std::make_index_sequence<kRowChunks>{});
// Pairs of rows of 24, 40 and 56 floats (V = 3, 5, 7 vectors).
constexpr std::array<RowScoresFn, 3> kPairScores = {&pair_scores<3>, &pair_scores<5>, &pair_scores<7>};

// How a head size's keys are laid out for the row scoring, and which function reads them; none
// (null) where the transposed pass serves.
struct RowScoring {
  RowScoresFn score = nullptr;
  bool pairs = false;  // keys twice end to end, else padded with zeros to whole vectors
  int64_t key_stride = 0;  // floats per token in the laid-out keys
};
RowScoring row_scoring(int64_t d) {
  const int64_t pair = d / 16 - 1;  // d = 16·(pair + 1) + 8
  if (d % 16 == 8 && pair >= 0 && pair < int64_t(kPairScores.size())) return {kPairScores[pair], true, 2 * d};
  const int64_t chunks = (d + 15) / 16;
  if (chunks > kRowChunks) return {};
  return {kRowScores[chunks - 1], false, chunks * 16};
}

// keys [heads, T, d] → [heads, T, key_stride] as `scoring` reads them.
torch::Tensor row_keys(const torch::Tensor& keys, const RowScoring& scoring) {
  if (scoring.pairs) return torch::cat({keys, keys}, 2).contiguous();
  return torch::constant_pad_nd(keys, {0, scoring.key_stride - keys.size(2)}).contiguous();
}

// The softmax over tokens of sixteen pixels' scores [T, 16], added to out[t, p + i] in the
// `valid` real lanes.
OVAM_AVX512 void accumulate_softmax_sixteen(float* scores, int64_t tokens, int64_t valid, float* out, int64_t n) {
  __m512 max = _mm512_load_ps(scores);
  for (int64_t t = 1; t < tokens; ++t) max = _mm512_max_ps(max, _mm512_load_ps(scores + t * 16));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t t = 0; t < tokens; ++t) {
    const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_load_ps(scores + t * 16), max));
    _mm512_store_ps(scores + t * 16, e);
    sum = _mm512_add_ps(sum, e);
  }
  const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
  const __mmask16 lanes = __mmask16((1u << valid) - 1);
  for (int64_t t = 0; t < tokens; ++t) {
    float* row = out + t * n;
    _mm512_mask_storeu_ps(row, lanes, _mm512_fmadd_ps(_mm512_load_ps(scores + t * 16), inv, _mm512_maskz_loadu_ps(lanes, row)));
  }
}

// The group after next of sixteen query rows (the hardware prefetcher alone leaves load stalls).
inline void prefetch_sixteen(const float* q, int64_t d) {
  for (int64_t i = 32 * d; i < 48 * d; i += 16) _mm_prefetch(reinterpret_cast<const char*>(q + i), _MM_HINT_T0);
}

// `read` of sixteen query rows at q, of which `valid` are real: the last group of a run is copied
// after zero rows stand in for the missing ones (never written out).
template <typename Read>
void read_sixteen_rows(const float* q, int64_t valid, int64_t d, const Read& read) {
  if (valid == 16) return read(q);
  alignas(64) float padded[kMaxHeadDim * 16] = {};
  std::copy(q, q + valid * d, padded);
  read(padded);
}

// Forward, sixteen pixels (`valid` of them real): out[t, p + i] += softmax_t, masked to the real
// lanes. Transposed: the queries turned [d, 16] once, every token one FMA per value.
OVAM_AVX512 void forward_sixteen(const float* q, int64_t valid, const float* keys, int64_t d, int64_t tokens, float* out,
                                 int64_t n) {
  alignas(64) float qt[kMaxHeadDim * 16];
  alignas(64) float scores[kMaxTokens * 16];
  prefetch_sixteen(q, d);
  read_sixteen_rows(q, valid, d, [&](const float* rows) { transpose_rows_sixteen(rows, d, qt); });
  score_tiles(kWideTiles.data(), kWideTile, 16, qt, keys, d, tokens, scores);
  accumulate_softmax_sixteen(scores, tokens, valid, out, n);
}

// The same by rows (`keys` laid out by row_keys).
OVAM_AVX512 void forward_sixteen_rows(RowScoresFn score, const float* q, int64_t valid, const float* keys, int64_t d,
                                      int64_t tokens, float* out, int64_t n) {
  alignas(64) float scores[kRowTokens * 16];
  prefetch_sixteen(q, d);
  read_sixteen_rows(q, valid, d, [&](const float* rows) { score(rows, keys, d, tokens, scores); });
  accumulate_softmax_sixteen(scores, tokens, valid, out, n);
}

bool wide_lanes_available() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return has;
}

int64_t pixel_chunks(int64_t n) { return (n + kPixelsPerTask - 1) / kPixelsPerTask; }

// Tasks (head × pixel chunk, numbered h · chunks + chunk): a head's run of pixels over every
// step, so no two tasks write one output lane.
template <typename Body>
void for_each_task(int64_t heads, int64_t n, const Body& body) {
  const int64_t chunks = pixel_chunks(n);
  at::parallel_for(0, heads * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task / chunks, p0 = (task % chunks) * kPixelsPerTask;
      body(task, h, p0, std::min(n, p0 + kPixelsPerTask));
    }
  });
}

// `head_stride`: queries' stride between heads, which exceeds steps·n·d when the queries are a
// range of the stored steps (per-step maps read it in place, without a copy).
struct Shape {
  int64_t heads, steps, n, d, tokens, head_stride;
  Shape(const torch::Tensor& queries, const torch::Tensor& keys)
      : heads(queries.size(0)), steps(queries.size(1)), n(queries.size(2)), d(queries.size(3)), tokens(keys.size(1)),
        head_stride(queries.stride(0)) {}
};

// queries [heads, steps, n, d] (steps, pixels and channels dense), keys [heads, T, d] contiguous → [heads, T, n].
torch::Tensor fused_forward(const torch::Tensor& queries, const torch::Tensor& keys) {
  const Shape x(queries, keys);
  auto out = torch::zeros({x.heads, x.tokens, x.n}, keys.options());
  const bool wide = wide_lanes_available();
  const RowScoring rows = wide && x.tokens <= kRowTokens ? row_scoring(x.d) : RowScoring{};
  const torch::Tensor laid = rows.score ? row_keys(keys, rows) : keys;
  const int64_t lanes = wide ? 16 : 8, key_stride = rows.score ? rows.key_stride : x.d;
  const float *q = queries.data_ptr<float>(), *k = laid.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for_each_task(x.heads, x.n, [&](int64_t, int64_t h, int64_t p0, int64_t p1) {
    for (int64_t s = 0; s < x.steps; ++s)
      for (int64_t p = p0; p < p1; p += lanes) {
        const float* group = q + h * x.head_stride + (s * x.n + p) * x.d;
        const float* head_keys = k + h * x.tokens * key_stride;
        const int64_t valid = std::min<int64_t>(lanes, p1 - p);
        float* sums = o + h * x.tokens * x.n + p;
        if (rows.score) forward_sixteen_rows(rows.score, group, valid, head_keys, x.d, x.tokens, sums, x.n);
        else if (wide) forward_sixteen(group, valid, head_keys, x.d, x.tokens, sums, x.n);
        else forward_eight(group, valid, head_keys, x.d, x.tokens, sums, x.n);
      }
  });
  return out;
}

// ∂L/∂keys [heads, T, d] from ∂L/∂out [heads, T, n] (contiguous).
torch::Tensor fused_backward(const torch::Tensor& queries, const torch::Tensor& keys, const torch::Tensor& grad_out) {
  const Shape x(queries, keys);
  // One lane-wise partial sum per task; summed over lanes and tasks at the end.
  auto partial = torch::zeros({x.heads, pixel_chunks(x.n), x.tokens, x.d, 8}, keys.options());
  const float *q = queries.data_ptr<float>(), *k = keys.data_ptr<float>(), *g = grad_out.data_ptr<float>();
  float* acc = partial.data_ptr<float>();
  for_each_task(x.heads, x.n, [&](int64_t task, int64_t h, int64_t p0, int64_t p1) {
    for (int64_t s = 0; s < x.steps; ++s)
      for (int64_t p = p0; p < p1; p += 8)
        backward_eight(q + h * x.head_stride + (s * x.n + p) * x.d, std::min<int64_t>(8, p1 - p), k + h * x.tokens * x.d,
                       x.d, x.tokens, g + h * x.tokens * x.n + p, x.n, acc + task * x.tokens * x.d * 8);
  });
  return partial.sum({1, 4});
}

// The fused pass with its own gradient in the keys (queries are data, not parameters).
class FusedSoftmaxScores : public torch::autograd::Function<FusedSoftmaxScores> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& queries,
                               const torch::Tensor& keys) {
    ctx->save_for_backward({queries, keys});
    return fused_forward(queries, keys);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {torch::Tensor(), fused_backward(saved[0], saved[1], grads[0].contiguous())};
  }
};

}  // namespace

bool fused_softmax_available() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

torch::Tensor summed_softmax_scores(const torch::Tensor& queries, const torch::Tensor& keys, bool allow_fused) {
  const int64_t heads = queries.size(0), steps = queries.size(1), n = queries.size(2), d = queries.size(3);
  const int64_t tokens = keys.size(1);
  const bool fusable = allow_fused && queries.device().is_cpu() && queries.scalar_type() == torch::kFloat32 &&
                       keys.scalar_type() == torch::kFloat32 && tokens >= 1 && tokens <= kMaxTokens &&
                       d <= kMaxHeadDim && fused_softmax_available();
  if (!fusable) {
    auto scores = torch::matmul(queries.reshape({heads, -1, d}).to(keys.scalar_type()), keys.transpose(1, 2));
    return torch::softmax(scores, -1).view({heads, steps, n, tokens}).sum(1);
  }
  const bool dense_steps = queries.stride(3) == 1 && queries.stride(2) == d && queries.stride(1) == n * d;
  return FusedSoftmaxScores::apply(dense_steps ? queries : queries.contiguous(), keys.contiguous()).transpose(1, 2);
}

}  // namespace ovam
