#include "models/resnet.h"

namespace ovam {

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels, int64_t groups,
                                     double eps) {
  norm1 = register_module("norm1", nn::GroupNorm(groups, in_channels, eps));
  conv1 = register_module("conv1", nn::Conv2d(in_channels, out_channels, 3, 1, 1));
  if (temb_channels > 0) time_emb_proj = register_module("time_emb_proj", nn::Linear(temb_channels, out_channels));
  norm2 = register_module("norm2", nn::GroupNorm(groups, out_channels, eps));
  conv2 = register_module("conv2", nn::Conv2d(out_channels, out_channels, 3, 1, 1));
  if (in_channels != out_channels)
    conv_shortcut = register_module("conv_shortcut", nn::Conv2d(in_channels, out_channels, 1, 1, 0));
}

torch::Tensor ResnetBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  auto h = conv1(nn::silu_temporary(norm1(x)));
  if (time_emb_proj) h = h + time_emb_proj(torch::silu(temb)).unsqueeze(-1).unsqueeze(-1);
  h = conv2(nn::silu_temporary(norm2(h)));
  // In place on conv2's fresh output (its gradient needs no output), one activation fewer.
  return h.add_(conv_shortcut ? conv_shortcut(x) : x);
}

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t padding) {
  conv = register_module("conv", nn::Conv2d(channels, channels, 3, 2, padding));
}

torch::Tensor Downsample2DImpl::forward(const torch::Tensor& x) {
  if (conv->padding == 0) return conv(torch::constant_pad_nd(x, {0, 1, 0, 1}));
  return conv(x);
}

Upsample2DImpl::Upsample2DImpl(int64_t channels) {
  conv = register_module("conv", nn::Conv2d(channels, channels, 3, 1, 1));
}

torch::Tensor Upsample2DImpl::forward(const torch::Tensor& x, at::IntArrayRef size) {
  // diffusers upsamples bfloat16 in float32 (nearest upsampling lacks bfloat16 kernels in older torch).
  auto h = x.scalar_type() == torch::kBFloat16 ? x.to(torch::kFloat32) : x;
  std::vector<int64_t> out_size = size.empty() ? std::vector<int64_t>{h.size(2) * 2, h.size(3) * 2} : size.vec();
  h = torch::upsample_nearest2d(h, out_size);
  return conv(h.to(x.scalar_type()));
}

}  // namespace ovam
