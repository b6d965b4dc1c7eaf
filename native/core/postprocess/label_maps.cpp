#include "postprocess/label_maps.h"

#include <ATen/Parallel.h>

#include "util/errors.h"

namespace ovam {

namespace {

namespace F = torch::nn::functional;

[[noreturn]] void invalid(const std::string& message) { throw Error(code::kInvalidArgument, "label maps: " + message); }

// Components of one class label (8-connected, as OpenCV's defaults) whose size is under
// min_area become background.
void drop_small_components(uint8_t* labels, int64_t height, int64_t width, const LabelMapOptions& o) {
  std::vector<uint8_t> seen(size_t(height * width), 0);
  std::vector<int64_t> stack, component;
  for (int64_t start = 0; start < height * width; ++start) {
    const uint8_t label = labels[start];
    if (seen[start] || label == o.background || label == 255) continue;
    int64_t top = height, bottom = -1, left = width, right = -1;
    component.clear();
    stack.assign(1, start);
    seen[start] = 1;
    while (!stack.empty()) {
      const int64_t at = stack.back();
      stack.pop_back();
      component.push_back(at);
      const int64_t y = at / width, x = at % width;
      top = std::min(top, y), bottom = std::max(bottom, y), left = std::min(left, x), right = std::max(right, x);
      for (int64_t dy = -1; dy <= 1; ++dy)
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t ny = y + dy, nx = x + dx;
          if (ny < 0 || ny >= height || nx < 0 || nx >= width) continue;
          const int64_t next = ny * width + nx;
          if (!seen[next] && labels[next] == label) {
            seen[next] = 1;
            stack.push_back(next);
          }
        }
    }
    const int64_t size = o.area == "pixels" ? int64_t(component.size()) : (bottom - top + 1) * (right - left + 1);
    if (size < o.min_area)
      for (int64_t at : component) labels[at] = o.background;
  }
}

}  // namespace

void LabelMapOptions::validate(int64_t classes) const {
  if (height <= 0 || width <= 0) invalid("the image size must be positive");
  if (interpolation != "bilinear" && interpolation != "bicubic") invalid("interpolation \"" + interpolation + "\"; accepted: bilinear, bicubic");
  if (normalize != "max" && normalize != "minmax") invalid("normalize \"" + normalize + "\"; accepted: max, minmax");
  if (compare != "gt" && compare != "ge") invalid("compare \"" + compare + "\"; accepted: gt, ge");
  if (area != "bbox" && area != "pixels") invalid("area \"" + area + "\"; accepted: bbox, pixels");
  if (int64_t(thresholds.size()) != classes || int64_t(ids.size()) != classes)
    invalid("one threshold and one id per class (" + std::to_string(classes) + ")");
  for (size_t c = 0; c < ids.size(); ++c) {
    if (c > 0 && ids[c] <= ids[c - 1]) invalid("class ids must be increasing");
    if (ids[c] == background || ids[c] == 255) invalid("a class id cannot be the background value or 255 (uncertain)");
  }
  if (min_area < 0) invalid("min area must be ≥ 0");
}

torch::Tensor class_scores(const torch::Tensor& maps, const LabelMapOptions& o) {
  if (maps.dim() != 3) invalid("maps must be [classes, h, w]");
  o.validate(maps.size(0));
  torch::NoGradGuard no_grad;
  auto m = maps.to(torch::kCPU, torch::kFloat32);
  // Normalised at the attention grid, before upsampling, as OVAM's dataset script does.
  auto flat = m.flatten(1);
  auto high = std::get<0>(flat.max(1)).view({-1, 1, 1});
  if (o.normalize == "minmax") {
    auto low = std::get<0>(flat.min(1)).view({-1, 1, 1});
    auto range = high - low;
    m = torch::where(range > 0, (m - low) / range.clamp_min(1e-30), torch::zeros_like(m));
  } else {
    m = torch::where(high > 0, m / high.clamp_min(1e-30), torch::zeros_like(m));
  }
  auto options = F::InterpolateFuncOptions().size(std::vector<int64_t>{o.height, o.width}).align_corners(false);
  if (o.interpolation == "bicubic") options.mode(torch::kBicubic);
  else options.mode(torch::kBilinear);
  auto up = (m.size(1) == o.height && m.size(2) == o.width) ? m : F::interpolate(m.unsqueeze(0), options).squeeze(0);
  return up.clamp(0, 1).contiguous();
}

torch::Tensor label_scores(const torch::Tensor& scores, const LabelMapOptions& o) {
  const int64_t classes = scores.size(0), pixels = o.height * o.width;
  if (scores.dim() != 3 || scores.size(1) != o.height || scores.size(2) != o.width || scores.scalar_type() != torch::kFloat32)
    invalid("scores must be float32 [classes, height, width]");
  o.validate(classes);
  auto s = scores.contiguous();
  auto labels = torch::empty({o.height, o.width}, torch::kUInt8);
  const float* in = s.data_ptr<float>();
  uint8_t* out = labels.data_ptr<uint8_t>();
  const bool ge = o.compare == "ge";
  at::parallel_for(0, pixels, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      int64_t best = -1;
      float best_score = 0, top = 0;
      for (int64_t c = 0; c < classes; ++c) {
        const float v = in[c * pixels + p];
        top = std::max(top, v);
        const bool passes = ge ? v >= o.thresholds[c] : v > o.thresholds[c];
        // Strictly greater: on a tie the earlier class, which has the lower id, keeps the pixel.
        if (passes && (best < 0 || v > best_score)) best = c, best_score = v;
      }
      uint8_t label = best < 0 ? o.background : o.ids[best];
      if (o.uncertain && top >= o.uncertain->first && top < o.uncertain->second) label = 255;
      out[p] = label;
    }
  });
  return labels;
}

torch::Tensor label_maps(const torch::Tensor& maps, const LabelMapOptions& options) {
  auto labels = label_scores(class_scores(maps, options), options);
  if (options.min_area > 0) drop_small_components(labels.data_ptr<uint8_t>(), options.height, options.width, options);
  return labels;
}

torch::Tensor label_histogram(const torch::Tensor& labels) {
  auto counts = torch::zeros({256}, torch::kInt32);
  auto l = labels.contiguous();
  const uint8_t* in = l.data_ptr<uint8_t>();
  int32_t* out = counts.data_ptr<int32_t>();
  for (int64_t i = 0, n = l.numel(); i < n; ++i) ++out[in[i]];
  return counts;
}

}  // namespace ovam
