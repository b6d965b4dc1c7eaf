// diffusers' ResnetBlock2D, Downsample2D and Upsample2D (with their conv), shared by the UNet and
// the VAE. Only the configuration Stable Diffusion uses: pre-norm, SiLU, time embedding added
// ("default" time_embedding_norm), output scale 1.
#pragma once
#include <torch/torch.h>

#include "util/nn.h"

namespace ovam {

class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  // temb_channels 0: no time_emb_proj (the VAE's blocks).
  ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels, int64_t groups, double eps);
  // x [B, in, H, W], temb [B, temb_channels] (undefined without time embedding) → [B, out, H, W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb = {});
  nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};  // conv_shortcut only where in != out
  nn::Linear time_emb_proj{nullptr};
};
TORCH_MODULE(ResnetBlock2D);

// 3×3 conv with stride 2. padding 0 (the VAE encoder) pads right and bottom by one first, as diffusers does.
class Downsample2DImpl : public torch::nn::Module {
 public:
  Downsample2DImpl(int64_t channels, int64_t padding);
  torch::Tensor forward(const torch::Tensor& x);
  nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Downsample2D);

// Nearest-neighbour upsampling to `size` (×2 when empty), then a 3×3 conv.
class Upsample2DImpl : public torch::nn::Module {
 public:
  explicit Upsample2DImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x, at::IntArrayRef size = {});
  nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

}  // namespace ovam
