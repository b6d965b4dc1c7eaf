// Gaussian filtering in a d-dimensional feature space by the permutohedral lattice (Adams, Baek &
// Davis, Eurographics 2010): each point is splatted onto the d+1 vertices of its enclosing
// simplex, the lattice is blurred along its d+1 axes with [½ 1 ½], and the result is sliced back.
// Written here for the dense CRF (dense_crf.h) with the conventions of Krähenbühl's densecrf
// (which SimpleCRF and OVAM use): elevation scaled to the filter's expected standard deviation,
// unnormalised blur, slice scaled by 1 / (1 + 2^-d), the point itself included.
//
// Work is split into fixed pieces whose sums run in a fixed order, so results do not depend on
// the number of threads.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace ovam {

class PermutohedralLattice {
 public:
  static constexpr int kMaxDim = 8;
  // `features` [n × d] row-major: point i's coordinates, already divided by the kernel's stds.
  PermutohedralLattice(const float* features, int64_t n, int d);
  // out [n × values] = Σ_j k(f_i, f_j) · in_j for every point i (in and out may not alias).
  // Not for concurrent calls on one lattice: it reuses its lattice buffers.
  void filter(const float* in, float* out, int values);
  int64_t vertices() const { return m_; }

 private:
  int64_t n_ = 0, m_ = 0;
  int d_ = 0;
  // Arrays written whole before they are read: not zeroed first (at 512×512 they are 10 MB).
  std::unique_ptr<int32_t[]> offset_;      // [n × (d+1)] vertex of each point's simplex corner
  std::unique_ptr<float[]> barycentric_;   // [n × (d+1)] its weight
  std::unique_ptr<int32_t[]> neighbours_;  // [(d+1) × m × 2] vertex − and + along each axis, −1 where absent
  // With more than one thread, each vertex's (point, weight) entries in point order, so that the
  // splat can gather per vertex in parallel and sum in the order one thread would scatter.
  std::vector<int64_t> splat_start_;       // [m + 1]
  std::unique_ptr<int32_t[]> splat_point_;  // [n × (d+1)]
  std::unique_ptr<float[]> splat_weight_;
  std::vector<float> lattice_, blurred_;   // filter()'s values on the vertices
};

}  // namespace ovam
