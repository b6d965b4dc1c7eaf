// AutoencoderKL (diffusers): Encoder, Decoder (with the mid-block attention), quant_conv and
// post_quant_conv. Old checkpoints name the VAE attention query/key/value/proj_attn (possibly as
// 1×1 convs): remap_legacy_names() converts them.
#pragma once
#include <torch/torch.h>

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

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(const VaeConfig& config);
  // latents already divided by scaling_factor → image in [-1, 1] scale.
  torch::Tensor decode(const torch::Tensor& latents);
  // image [-1, 1] → posterior (mean, std).
  std::pair<torch::Tensor, torch::Tensor> encode(const torch::Tensor& image);
  const VaeConfig& config() const { return config_; }
  // Renames pre-0.14 attention tensors in place (and squeezes [C, C, 1, 1] to [C, C]).
  static void remap_legacy_names(NamedTensors& weights);

 private:
  VaeConfig config_;
};
TORCH_MODULE(AutoencoderKL);

}  // namespace ovam
