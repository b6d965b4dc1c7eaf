// diffusers' UNet blocks. Each class here covers the diffusers classes that differ only by what
// they contain, with their module names:
//   DownBlock2D: CrossAttnDownBlock2D (with attentions), DownBlock2D, and the VAE's DownEncoderBlock2D
//                (no time embedding);
//   UpBlock2D:   CrossAttnUpBlock2D (with attentions), UpBlock2D (both with skip connections), and
//                the VAE's UpDecoderBlock2D (no skips, no time embedding);
//   MidBlock2D:  UNetMidBlock2DCrossAttn (Transformer2DModel) and the VAE's UNetMidBlock2D (spatial Attention).
#pragma once
#include <torch/torch.h>

#include <optional>
#include <vector>

#include "models/attention.h"
#include "models/resnet.h"
#include "util/nn.h"

namespace ovam {

// What the ResNets of one block share. temb_channels 0: no time embedding (the VAE).
struct ResnetSettings {
  int64_t temb_channels = 0, groups = 32;
  double eps = 1e-6;
};

// What a block's forward needs besides the hidden states (all optional: undefined / null in the VAE).
struct BlockInputs {
  torch::Tensor temb, context;
  CrossAttentionObserver* observer = nullptr;
};

class DownBlock2DImpl : public torch::nn::Module {
 public:
  // `transformer`: the block has cross-attention (one Transformer2DModel after each ResNet).
  DownBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t layers, const ResnetSettings& resnet,
                  const std::optional<TransformerSettings>& transformer, bool add_downsample, int64_t downsample_padding);
  // Appends each layer's output, then the downsampled one, to `skips` when given (the UNet's skip connections).
  torch::Tensor forward(torch::Tensor x, const BlockInputs& in, std::vector<torch::Tensor>* skips = nullptr);
  nn::List<Transformer2DModel> attentions;
  nn::List<ResnetBlock2D> resnets;
  nn::List<Downsample2D> downsamplers;
};
TORCH_MODULE(DownBlock2D);

class UpBlock2DImpl : public torch::nn::Module {
 public:
  // With `skip_channels` (the UNet's up blocks): layer i concatenates a skip connection, of
  // `in_channels` for the last layer and `out_channels` before it; layer 0 takes `prev_channels`.
  // Without (the VAE decoder): layer 0 takes `prev_channels`.
  UpBlock2DImpl(int64_t prev_channels, int64_t in_channels, int64_t out_channels, int64_t layers, bool skip_connections,
                const ResnetSettings& resnet, const std::optional<TransformerSettings>& transformer, bool add_upsample);
  // Takes one skip connection per layer from the back of `skips` (when the block has them); the
  // upsampler then matches the spatial size of the next skip connection (×2 without one).
  torch::Tensor forward(torch::Tensor x, const BlockInputs& in, std::vector<torch::Tensor>* skips = nullptr);
  nn::List<Transformer2DModel> attentions;
  nn::List<ResnetBlock2D> resnets;
  nn::List<Upsample2D> upsamplers;
};
TORCH_MODULE(UpBlock2D);

class MidBlock2DImpl : public torch::nn::Module {
 public:
  // With `transformer`: UNetMidBlock2DCrossAttn; without: the VAE's UNetMidBlock2D (spatial self-attention).
  MidBlock2DImpl(int64_t channels, const ResnetSettings& resnet, const std::optional<TransformerSettings>& transformer);
  torch::Tensor forward(torch::Tensor x, const BlockInputs& in);
  nn::List<Transformer2DModel> transformers;  // registered as "attentions" (UNet)
  nn::List<Attention> attentions;             // the VAE's
  nn::List<ResnetBlock2D> resnets;
};
TORCH_MODULE(MidBlock2D);

}  // namespace ovam
