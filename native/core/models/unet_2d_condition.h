// UNet2DConditionModel (diffusers) with the SD 1.x, 2.x and XL switches. Module tree and tensor
// names are diffusers' own: conv_in, time_proj/time_embedding, add_time_proj/add_embedding (SDXL),
// down_blocks, up_blocks, mid_block, conv_norm_out, conv_out.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/attention.h"
#include "models/embeddings.h"
#include "models/unet_2d_blocks.h"
#include "util/json.h"
#include "util/nn.h"

namespace ovam {

struct UNetConfig {
  int64_t in_channels = 4, out_channels = 4, sample_size = 64;
  std::vector<int64_t> block_out_channels{320, 640, 1280, 1280};
  std::vector<std::string> down_block_types{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                            "DownBlock2D"};
  std::vector<std::string> up_block_types{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                          "CrossAttnUpBlock2D"};
  std::string mid_block_type = "UNetMidBlock2DCrossAttn";
  int64_t layers_per_block = 2;
  std::vector<int64_t> heads;  // per down block (attention_head_dim / num_attention_heads, see ENGINEERING.md)
  int64_t cross_attention_dim = 1280;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool use_linear_projection = false, upcast_attention = false, flip_sin_to_cos = true;
  double freq_shift = 0;
  int64_t downsample_padding = 1;
  std::vector<int64_t> transformer_layers_per_block;  // per down block; the mid block takes the last
  // addition_embed_type "text_time" (SDXL): add_embedding over [text_embeds, add_time_proj(time_ids)].
  bool text_time = false;
  int64_t addition_time_embed_dim = 0, projection_class_embeddings_input_dim = 0;
  // Reads diffusers' config.json with its defaults; rejects (kConfig) what we do not implement.
  static UNetConfig from(const Config& config);
};

// diffusers' added_cond_kwargs for "text_time": text_embeds [B, P] (the pooled text) and time_ids
// [B, 6] (original height, width, crop top, left, target height, width). Unused by SD 1.x/2.x.
struct AddedConditions {
  torch::Tensor text_embeds, time_ids;
};

class UNet2DConditionModelImpl : public torch::nn::Module {
 public:
  explicit UNet2DConditionModelImpl(const UNetConfig& config);
  // sample [B, C, h, w], timestep scalar or [B], encoder_hidden_states [B, T, D] → noise prediction.
  // `observer` (may be null) sees every cross-attention input. Block names are the module paths,
  // e.g. "down_blocks.0.attentions.1.transformer_blocks.0.attn2". `added` is required by "text_time".
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                        const torch::Tensor& encoder_hidden_states, CrossAttentionObserver* observer = nullptr,
                        const AddedConditions& added = {});
  // Each cross-attention block by module path, in module order (down, mid, up).
  std::vector<std::pair<std::string, Attention>> cross_attentions();
  const UNetConfig& config() const { return config_; }
  // The dtype it computes in (diffusers' ModelMixin.dtype); its matrix weights may be stored narrower.
  torch::ScalarType dtype() const { return conv_in->bias.scalar_type(); }
  torch::Device device() const { return conv_in->bias.device(); }

  nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  Timesteps time_proj{nullptr};
  TimestepEmbedding time_embedding{nullptr};
  Timesteps add_time_proj{nullptr};             // "text_time" only
  TimestepEmbedding add_embedding{nullptr};     // "text_time" only
  nn::List<DownBlock2D> down_blocks;
  nn::List<UpBlock2D> up_blocks;
  MidBlock2D mid_block{nullptr};
  nn::GroupNorm conv_norm_out{nullptr};

 private:
  torch::Tensor text_time_embedding(const AddedConditions& added, int64_t batch, torch::ScalarType dtype);
  UNetConfig config_;
  std::vector<std::pair<std::string, Attention>> cross_attentions_;
};
TORCH_MODULE(UNet2DConditionModel);

}  // namespace ovam
