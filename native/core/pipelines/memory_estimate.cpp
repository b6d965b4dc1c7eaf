#include "pipelines/memory_estimate.h"

#include <algorithm>
#include <limits>
#include <set>

#include "schedulers/scheduler.h"

namespace ovam {

namespace {

// The level (0 = full latent resolution) of a UNet block from its module path.
int64_t level_of(const std::string& path, int64_t levels) {
  if (path.rfind("mid_block.", 0) == 0) return levels - 1;
  const bool up = path.rfind("up_blocks.", 0) == 0;
  const size_t start = path.find('.') + 1;
  const int64_t index = std::stoll(path.substr(start, path.find('.', start) - start));
  return up ? levels - 1 - index : index;
}

// Side of the latent grid at `level`: each downsampling halves it, rounding up (stride 2, padding 1).
int64_t side_at(int64_t side, int64_t level) {
  for (int64_t i = 0; i < level; ++i) side = (side + 1) / 2;
  return side;
}

}  // namespace

MemoryEstimate estimate_generation(StableDiffusion& sd, const GenerateOptions& options) {
  MemoryEstimate e;
  auto scheduler = make_scheduler(options.scheduler.empty() ? sd.scheduler_class : options.scheduler, *sd.scheduler_config);
  scheduler->set_timesteps(options.steps);
  e.evaluations = int64_t(scheduler->timesteps().size());

  const int64_t factor = sd.vae_scale_factor();
  const int64_t sample = sd.unet->config().sample_size * factor;
  const int64_t height = (options.height > 0 ? options.height : sample) / factor;
  const int64_t width = (options.width > 0 ? options.width : sample) / factor;
  const int64_t levels = int64_t(sd.unet->config().block_out_channels.size());
  const double batch = options.guidance_scale > 1.0 ? 2 : 1;
  // Scores and their softmax, counted at 4 bytes (attention may upcast to float32); attention
  // forms at most the pipeline's attention_block_bytes of scores at once.
  const double block = sd.attention_block_bytes > 0 ? double(sd.attention_block_bytes) : std::numeric_limits<double>::infinity();
  auto attention_bytes = [block](double rows, double heads, double cells) {
    return 2 * std::min(rows * heads * cells * cells * 4, block);
  };
  const double latent_cells = double(height) * double(width);
  e.attention = attention_bytes(1, 1, latent_cells);  // the VAE's mid-block attention, one head
  const auto& capture = options.capture;
  const double slots = capture.streaming ? 1 : double(e.evaluations);
  const double element = capture.streaming ? 4 : double(torch::elementSize(capture.dtype));
  std::set<std::pair<int64_t, int64_t>> grid_sides;  // the latent grids attention runs on
  for (auto& [path, attention] : sd.unet->cross_attentions()) {
    const int64_t level = level_of(path, levels);
    const double cells = double(side_at(height, level)) * double(side_at(width, level));
    // Each cross-attention block sits behind a self-attention (attn1) of the same heads and size.
    e.attention = std::max(e.attention, attention_bytes(batch, double(attention->heads), cells));
    const bool mid = path.rfind("mid_block.", 0) == 0;
    if (capture.enabled && (!mid || capture.mid_block))
      e.store += double(attention->heads) * double(attention->head_dim) * cells * slots * element;
    grid_sides.insert({side_at(height, level), side_at(width, level)});
  }
  // A self-attention capture keeps one [h·w, h·w] float32 mean per kept grid (25600² at 1280²: 2.6 GB).
  const auto& self = capture.self_attention;
  if (capture.enabled && self.enabled)
    for (const auto& [h, w] : grid_sides)
      if (self.sides.empty() || std::count(self.sides.begin(), self.sides.end(), std::max(h, w)))
        e.store += double(h * w) * double(h * w) * 4;
  // Input, output and residual of the decoder's last ResNets at full resolution, in float32.
  e.decode = 3 * double(sd.vae->config().block_out_channels.front()) * latent_cells * double(factor * factor) * 4;
  return e;
}

}  // namespace ovam
