#include "postprocess/permutohedral_lattice.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "util/errors.h"

namespace ovam {

namespace {

constexpr int64_t kGrain = 2048;  // points or vertices per parallel piece
constexpr int64_t kHashPiece = 1 << 14;        // points per piece of the lattice's construction

// Open addressing over fixed-size integer keys; entries are numbered in insertion order. Each
// slot keeps its entry's hash beside the index, so a probe rarely reads a key it does not want.
class KeyTable {
 public:
  KeyTable(int key_size, int64_t expected) : k_(key_size) {
    while (capacity_ < 2 * size_t(expected)) capacity_ *= 2;
    slots_.assign(capacity_, Slot{});
  }
  int64_t size() const { return int64_t(keys_.size()) / k_; }
  const int32_t* key(int64_t entry) const { return keys_.data() + entry * k_; }

  // The entry of `key`, and whether it was just inserted.
  std::pair<int32_t, bool> insert(const int32_t* key) {
    if (2 * size_t(size() + 1) > capacity_) grow();
    const uint32_t tag = hash(key);
    for (size_t h = tag & (capacity_ - 1);; h = (h + 1) & (capacity_ - 1)) {
      Slot& slot = slots_[h];
      if (slot.entry < 0) {
        slot = Slot{int32_t(size()), tag};
        keys_.insert(keys_.end(), key, key + k_);
        return {slot.entry, true};
      }
      if (slot.tag == tag && same(this->key(slot.entry), key)) return {slot.entry, false};
    }
  }
  // The entry of `key`, or −1 (read-only: safe from many threads).
  int32_t find(const int32_t* key) const {
    const uint32_t tag = hash(key);
    for (size_t h = tag & (capacity_ - 1);; h = (h + 1) & (capacity_ - 1)) {
      const Slot& slot = slots_[h];
      if (slot.entry < 0 || (slot.tag == tag && same(this->key(slot.entry), key))) return slot.entry;
    }
  }

 private:
  struct Slot {
    int32_t entry = -1;
    uint32_t tag = 0;
  };
  bool same(const int32_t* a, const int32_t* b) const {
    for (int i = 0; i < k_; ++i)
      if (a[i] != b[i]) return false;
    return true;
  }
  uint32_t hash(const int32_t* key) const {
    uint64_t h = 0;
    for (int i = 0; i < k_; ++i) h = (h + uint32_t(key[i])) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 32;  // the high bits are the best mixed
    h *= 0xD6E8FEB86659FD93ull;
    return uint32_t(h >> 32);
  }
  void grow() {
    capacity_ *= 2;
    std::vector<Slot> old(capacity_, Slot{});
    old.swap(slots_);
    for (const Slot& slot : old) {
      if (slot.entry < 0) continue;
      size_t h = slot.tag & (capacity_ - 1);
      while (slots_[h].entry >= 0) h = (h + 1) & (capacity_ - 1);
      slots_[h] = slot;
    }
  }
  int k_;
  size_t capacity_ = 1024;
  std::vector<Slot> slots_;
  std::vector<int32_t> keys_;
};

// The simplex enclosing one point: its remainder-0 vertex, the rank of each coordinate, and the
// barycentric weight of each corner (Adams et al. 2010, §3.1; densecrf's arithmetic, in float).
struct Simplex {
  int32_t rem0[PermutohedralLattice::kMaxDim + 1];
  int32_t rank[PermutohedralLattice::kMaxDim + 1];
  float barycentric[PermutohedralLattice::kMaxDim + 2];
};

// rint() without a library call: adding and removing 1.5·2^23 rounds to an integer (ties to even,
// the default rounding mode, as densecrf's SSE rounding) for |v| < 2^22.
inline float round_half_even(float v) {
  constexpr float kMagic = 12582912.0f;
  if (std::fabs(v) >= 4194304.0f) return std::nearbyint(v);
  volatile float shifted = v + kMagic;  // volatile: keep the two roundings apart
  return shifted - kMagic;
}

void enclosing_simplex(const float* f, int d, const float* scale, Simplex& s) {
  const int d1 = d + 1;
  float elevated[PermutohedralLattice::kMaxDim + 1];
  // Elevate onto the hyperplane Σx = 0: y = E·f (p. 5).
  float sm = 0;
  for (int j = d; j > 0; --j) {
    const float cf = f[j - 1] * scale[j - 1];
    elevated[j] = sm - float(j) * cf;
    sm += cf;
  }
  elevated[0] = sm;
  // The nearest remainder-0 point, by rounding each coordinate to a multiple of d+1.
  const float down = 1.0f / float(d1), up = float(d1);
  int sum = 0;
  for (int i = 0; i <= d; ++i) {
    const float r = round_half_even(down * elevated[i]);
    s.rem0[i] = int32_t(r * up);
    sum += int(r);
  }
  // Rank of each coordinate's remainder in decreasing order; then back onto the plane.
  for (int i = 0; i <= d; ++i) s.rank[i] = 0;
  for (int i = 0; i < d; ++i) {
    const float di = elevated[i] - float(s.rem0[i]);
    for (int j = i + 1; j <= d; ++j) {
      if (di < elevated[j] - float(s.rem0[j])) s.rank[i]++;
      else s.rank[j]++;
    }
  }
  for (int i = 0; i <= d; ++i) {
    s.rank[i] += sum;
    if (s.rank[i] < 0) {
      s.rank[i] += d1;
      s.rem0[i] += d1;
    } else if (s.rank[i] > d) {
      s.rank[i] -= d1;
      s.rem0[i] -= d1;
    }
  }
  // Barycentric coordinates (p. 10).
  for (int i = 0; i <= d + 1; ++i) s.barycentric[i] = 0;
  for (int i = 0; i <= d; ++i) {
    const float v = (elevated[i] - float(s.rem0[i])) * down;
    s.barycentric[d - s.rank[i]] += v;
    s.barycentric[d - s.rank[i] + 1] -= v;
  }
  s.barycentric[0] += 1.0f + s.barycentric[d + 1];
}

}  // namespace

PermutohedralLattice::PermutohedralLattice(const float* features, int64_t n, int d) : n_(n), d_(d) {
  if (d < 1 || d > kMaxDim) throw Error(code::kInvalidArgument, "permutohedral lattice: feature dimension " + std::to_string(d) + " outside 1.." + std::to_string(kMaxDim));
  const int d1 = d + 1;
  // The filter's expected standard deviation is 1 in feature units (p. 6).
  const float inv_std_dev = float(std::sqrt(2.0 / 3.0) * d1);
  float scale[kMaxDim];
  for (int i = 0; i < d; ++i) scale[i] = float(1.0 / std::sqrt(double((i + 2) * (i + 1))) * inv_std_dev);
  // canonical[r][k]: the remainder-r corner's offset for a coordinate of rank k.
  std::vector<int32_t> canonical(d1 * d1);
  for (int r = 0; r <= d; ++r)
    for (int k = 0; k <= d; ++k) canonical[r * d1 + k] = k <= d - r ? r : r - d1;

  offset_.reset(new int32_t[n * d1]);
  barycentric_.reset(new float[n * d1]);
  // Vertices are keyed by their first d coordinates (the last is minus their sum). Pieces of
  // points number their corners in tables of their own, in parallel; the pieces' keys are then
  // numbered on this thread in piece order and first-seen order (the order one thread walking the
  // points would give), and the points' corners renumbered.
  // (On one thread, one piece: its table is the lattice's, in the same order.)
  const int64_t pieces = at::get_num_threads() == 1 ? 1 : std::clamp<int64_t>(n / kHashPiece, 1, 256);
  std::vector<KeyTable> local;
  local.reserve(pieces);
  for (int64_t p = 0; p < pieces; ++p) local.emplace_back(d, std::min<int64_t>(n / pieces + 1, 1 << 14));
  const auto piece_begin = [&](int64_t p) { return n * p / pieces; };
  at::parallel_for(0, pieces, 1, [&](int64_t b, int64_t e) {
    Simplex s, previous;
    int32_t key[kMaxDim];
    for (int64_t p = b; p < e; ++p)
      for (int64_t i = piece_begin(p); i < piece_begin(p + 1); ++i) {
        enclosing_simplex(features + i * d, d, scale, s);
        std::copy(s.barycentric, s.barycentric + d1, barycentric_.get() + i * d1);
        // Neighbouring points often share a simplex, and then its vertices.
        if (i > piece_begin(p) && std::equal(s.rem0, s.rem0 + d, previous.rem0) && std::equal(s.rank, s.rank + d, previous.rank)) {
          std::copy_n(offset_.get() + (i - 1) * d1, d1, offset_.get() + i * d1);
          continue;
        }
        for (int r = 0; r <= d; ++r) {
          for (int k = 0; k < d; ++k) key[k] = s.rem0[k] + canonical[r * d1 + s.rank[k]];
          offset_[i * d1 + r] = local[p].insert(key).first;
        }
        previous = s;
      }
  });
  KeyTable vertices = pieces == 1 ? std::move(local[0]) : KeyTable(d, std::min<int64_t>(n, 1 << 16));
  if (pieces > 1) {
    std::vector<std::vector<int32_t>> global(pieces);
    for (int64_t p = 0; p < pieces; ++p) {
      global[p].resize(local[p].size());
      for (int64_t j = 0; j < local[p].size(); ++j) global[p][j] = vertices.insert(local[p].key(j)).first;
      local[p] = KeyTable(d, 0);  // frees its memory
    }
    at::parallel_for(0, pieces, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p)
        for (int64_t j = piece_begin(p) * d1; j < piece_begin(p + 1) * d1; ++j) offset_[j] = global[p][offset_[j]];
    });
  }
  m_ = vertices.size();
  const KeyTable& table = vertices;

  // Each vertex's two neighbours along each of the d+1 lattice axes.
  neighbours_.reset(new int32_t[size_t(d1) * m_ * 2]);
  at::parallel_for(0, m_, kGrain, [&](int64_t b, int64_t e) {
    int32_t n1[kMaxDim], n2[kMaxDim];
    for (int64_t v = b; v < e; ++v) {
      const int32_t* k = table.key(v);
      for (int j = 0; j <= d; ++j) {
        for (int i = 0; i < d; ++i) {
          n1[i] = k[i] - 1;
          n2[i] = k[i] + 1;
        }
        if (j < d) {
          n1[j] = k[j] + d;
          n2[j] = k[j] - d;
        }
        neighbours_[(j * m_ + v) * 2] = table.find(n1);
        neighbours_[(j * m_ + v) * 2 + 1] = table.find(n2);
      }
    }
  });

  // The splat's entries per vertex (counting sort by pieces: each piece counts its entries per
  // vertex, then writes them from its own offsets, so they land in point order).
  if (at::get_num_threads() == 1) return;
  std::vector<int32_t> counts(size_t(pieces) * m_, 0);
  at::parallel_for(0, pieces, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      for (int64_t j = piece_begin(p) * d1; j < piece_begin(p + 1) * d1; ++j) counts[p * m_ + offset_[j]]++;
  });
  splat_start_.assign(m_ + 1, 0);
  std::vector<int64_t> next(size_t(pieces) * m_);
  for (int64_t v = 0, at = 0; v < m_; ++v) {
    splat_start_[v] = at;
    for (int64_t p = 0; p < pieces; ++p) {
      next[p * m_ + v] = at;
      at += counts[p * m_ + v];
    }
    splat_start_[v + 1] = at;
  }
  splat_point_.reset(new int32_t[n * d1]);
  splat_weight_.reset(new float[n * d1]);
  at::parallel_for(0, pieces, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      for (int64_t i = piece_begin(p); i < piece_begin(p + 1); ++i)
        for (int r = 0; r <= d; ++r) {
          const int64_t at = next[p * m_ + offset_[i * d1 + r]]++;
          splat_point_[at] = int32_t(i);
          splat_weight_[at] = barycentric_[i * d1 + r];
        }
  });
}

void PermutohedralLattice::filter(const float* in, float* out, int values) {
  const int d1 = d_ + 1;
  const int64_t V = values;
  lattice_.resize(m_ * V);
  blurred_.resize(m_ * V);
  auto& lattice = lattice_;
  auto& blurred = blurred_;
  // Splat each point's values onto its corners, weighted by its barycentric coordinates.
  if (splat_start_.empty()) {
    std::fill(lattice.begin(), lattice.end(), 0.0f);
    for (int64_t i = 0; i < n_; ++i)
      for (int r = 0; r <= d_; ++r) {
        const float w = barycentric_[i * d1 + r];
        float* acc = lattice.data() + int64_t(offset_[i * d1 + r]) * V;
        for (int64_t k = 0; k < V; ++k) acc[k] += w * in[i * V + k];
      }
  } else {
    at::parallel_for(0, m_, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t v = b; v < e; ++v) {
        float* acc = lattice.data() + v * V;
        std::fill(acc, acc + V, 0.0f);
        for (int64_t s = splat_start_[v]; s < splat_start_[v + 1]; ++s) {
          const float w = splat_weight_[s];
          const float* x = in + int64_t(splat_point_[s]) * V;
          for (int64_t k = 0; k < V; ++k) acc[k] += w * x[k];
        }
      }
    });
  }
  // Blur along each axis with [½ 1 ½]; absent neighbours count as zero.
  for (int j = 0; j <= d_; ++j) {
    at::parallel_for(0, m_, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t v = b; v < e; ++v) {
        const int32_t n1 = neighbours_[(j * m_ + v) * 2], n2 = neighbours_[(j * m_ + v) * 2 + 1];
        const float* old = lattice.data() + v * V;
        float* now = blurred.data() + v * V;
        for (int64_t k = 0; k < V; ++k) {
          const float a = n1 >= 0 ? lattice[n1 * V + k] : 0.0f, c = n2 >= 0 ? lattice[n2 * V + k] : 0.0f;
          now[k] = old[k] + 0.5f * (a + c);
        }
      }
    });
    lattice.swap(blurred);
  }
  // Slice: each point reads its corners back; 1 / (1 + 2^-d) is densecrf's normalising constant.
  const float alpha = 1.0f / (1.0f + std::pow(2.0f, -float(d_)));
  at::parallel_for(0, n_, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float* y = out + i * V;
      std::fill(y, y + V, 0.0f);
      for (int r = 0; r <= d_; ++r) {
        const float w = barycentric_[i * d1 + r];
        const float* x = lattice.data() + int64_t(offset_[i * d1 + r]) * V;
        for (int64_t k = 0; k < V; ++k) y[k] += w * x[k] * alpha;
      }
    }
  });
}

}  // namespace ovam
