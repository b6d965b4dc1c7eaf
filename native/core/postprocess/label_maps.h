// Attribution maps → a semantic label map: each class's map normalised at the attention grid,
// upsampled to the image, compared with its threshold; argmax over the classes that pass, ties to
// the lower id; optional uncertain band and removal of small components. The conventions of DAAM,
// OVAM, DiffuMask and Dataset Diffusion are settings of this one function (ts/masks.ts names them).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ovam {

struct LabelMapOptions {
  int64_t height = 0, width = 0;         // the image's size
  std::string interpolation = "bilinear";  // bilinear | bicubic (bicubic overshoots: clamped to [0, 1])
  std::string normalize = "max";           // max: m / max m (OVAM) | minmax: (m − min) / (max − min) (DAAM)
  std::string compare = "gt";              // gt: score > threshold | ge: score ≥ threshold
  std::vector<double> thresholds;          // one per class
  std::vector<uint8_t> ids;                // label value of each class, in increasing order
  uint8_t background = 0;                  // pixels no class passes (0 VOC, 255 Cityscapes)
  std::optional<std::pair<double, double>> uncertain;  // max score in [lo, hi) → 255 (Dataset Diffusion)
  int64_t min_area = 0;                    // drop class components smaller than this (0: keep all)
  std::string area = "bbox";               // bbox: bounding-box area (DiffuMask) | pixels
  void validate(int64_t classes) const;    // kInvalidArgument naming the setting
};

// maps [C, h, w] (any float dtype) → scores [C, height, width] float32 in [0, 1].
torch::Tensor class_scores(const torch::Tensor& maps, const LabelMapOptions& options);

// scores [C, H, W] float32 → labels [H, W] uint8.
torch::Tensor label_scores(const torch::Tensor& scores, const LabelMapOptions& options);

// Both, then small components removed: labels [H, W] uint8.
torch::Tensor label_maps(const torch::Tensor& maps, const LabelMapOptions& options);

// Pixels per label value [256] int32.
torch::Tensor label_histogram(const torch::Tensor& labels);

}  // namespace ovam
