// AutoencoderKL (diffusers): Encoder, Decoder (with the mid-block attention), quant_conv and
// post_quant_conv. Old checkpoints name the VAE attention query/key/value/proj_attn (possibly as
// 1×1 convs): remap_legacy_names() converts them.
#pragma once
#include <torch/torch.h>

#include "models/unet_2d_blocks.h"
#include "util/json.h"
#include "util/nn.h"
#include "util/weights.h"

namespace ovam {

struct VaeConfig {
  int64_t in_channels = 3, out_channels = 3, latent_channels = 4, layers_per_block = 1, norm_num_groups = 32;
  std::vector<int64_t> block_out_channels{64};
  double scaling_factor = 0.18215;
  static VaeConfig from(const Config& config);
};

// Image → 2 × latent_channels moments (mean, log-variance) before quant_conv.
class EncoderImpl : public torch::nn::Module {
 public:
  explicit EncoderImpl(const VaeConfig& config);
  torch::Tensor forward(const torch::Tensor& image);
  nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  nn::List<DownBlock2D> down_blocks;
  MidBlock2D mid_block{nullptr};
  nn::GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(Encoder);

// Latents (after post_quant_conv) → image.
class DecoderImpl : public torch::nn::Module {
 public:
  explicit DecoderImpl(const VaeConfig& config);
  torch::Tensor forward(const torch::Tensor& latents);
  nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  nn::List<UpBlock2D> up_blocks;
  MidBlock2D mid_block{nullptr};
  nn::GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(Decoder);

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(const VaeConfig& config);
  // latents already divided by scaling_factor → image in [-1, 1] scale.
  torch::Tensor decode(const torch::Tensor& latents);
  // image [-1, 1] → posterior (mean, std).
  std::pair<torch::Tensor, torch::Tensor> encode(const torch::Tensor& image);
  const VaeConfig& config() const { return config_; }
  // The dtype it computes in (diffusers' ModelMixin.dtype); its matrix weights may be stored narrower.
  torch::ScalarType dtype() const { return decoder->conv_in->bias.scalar_type(); }
  // Renames pre-0.14 attention tensors in place (and squeezes [C, C, 1, 1] to [C, C]).
  static void remap_legacy_names(NamedTensors& weights);

  Encoder encoder{nullptr};
  Decoder decoder{nullptr};
  nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};

 private:
  VaeConfig config_;
};
TORCH_MODULE(AutoencoderKL);

}  // namespace ovam
