// CLIP text transformer (Hugging Face CLIPTextModel tensor names): token + position embeddings,
// pre-LN causal self-attention layers, final LayerNorm. quick_gelu (SD 1.x) or gelu (SD 2.x).
// CLIPTextModelWithProjection (SDXL's second encoder) adds text_projection on the pooled state.
#pragma once
#include <torch/torch.h>

#include <set>
#include <string>
#include <vector>

#include "util/json.h"
#include "util/nn.h"

namespace ovam {

struct ClipTextConfig {
  int64_t vocab_size = 49408, hidden_size = 512, intermediate_size = 2048;
  int64_t num_attention_heads = 8, num_hidden_layers = 12, max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;
  // architectures ["CLIPTextModelWithProjection"]: text_projection [projection_dim, hidden], no bias.
  bool with_projection = false;
  int64_t projection_dim = 512;
  static ClipTextConfig from(const Config& config);  // transformers' defaults for missing keys
};

// CLIPAttention: multi-head causal self-attention (q/k/v/out_proj, all with biases).
class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(int64_t hidden, int64_t heads);
  // x [B, T, D] → [B, T, D], each position attending to itself and earlier ones.
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int64_t heads_, head_dim_;
  double scale_;  // head_dim^-0.5
  nn::Linear q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr}, out_proj_{nullptr};
};
TORCH_MODULE(ClipAttention);

// One pre-LN encoder layer: x + self_attn(layer_norm1(x)), then x + mlp(layer_norm2(x)).
class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderLayerImpl(const ClipTextConfig& config);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  bool quick_gelu_;
  ClipAttention self_attn_{nullptr};
  nn::LayerNorm layer_norm1_{nullptr}, layer_norm2_{nullptr};
  nn::Linear fc1_{nullptr}, fc2_{nullptr};  // registered under "mlp"
};
TORCH_MODULE(ClipEncoderLayer);

class ClipTextModelImpl : public torch::nn::Module {
 public:
  explicit ClipTextModelImpl(const ClipTextConfig& config);
  // ids [B, T] (T ≤ 77) → last hidden state after final_layer_norm [B, T, hidden].
  torch::Tensor forward(const torch::Tensor& ids);
  // Same, from token embeddings [B, T, hidden] (optimised tokens enter here).
  torch::Tensor forward_embeddings(const torch::Tensor& token_embeddings);
  // transformers' output_hidden_states: the embeddings' output, then each layer's (before the
  // final LayerNorm); SDXL conditions on the second-to-last one.
  std::vector<torch::Tensor> hidden_states(const torch::Tensor& ids);
  torch::Tensor final_layer_norm(const torch::Tensor& hidden_state) { return final_layer_norm_(hidden_state); }
  torch::Tensor token_embedding_weight() const;
  const ClipTextConfig& config() const { return config_; }
  // Real exports also carry text_model.embeddings.position_ids; it is not a parameter.
  static const std::set<std::string>& ignored_tensors();

 private:
  torch::Tensor embed(const torch::Tensor& ids);  // token embeddings of checked ids
  std::vector<torch::Tensor> encoder_states(const torch::Tensor& token_embeddings);
  ClipTextConfig config_;
  // Registered as text_model.embeddings.{token,position}_embedding, text_model.encoder.layers.N,
  // text_model.final_layer_norm.
  nn::Embedding token_embedding_{nullptr}, position_embedding_{nullptr};
  nn::List<ClipEncoderLayer> layers_;
  nn::LayerNorm final_layer_norm_{nullptr};
};
TORCH_MODULE(ClipTextModel);

class ClipTextModelWithProjectionImpl : public ClipTextModelImpl {
 public:
  explicit ClipTextModelWithProjectionImpl(const ClipTextConfig& config);
  // text_embeds [B, projection_dim]: text_projection of the final-LN state at each row's
  // end-of-text token, found as transformers does for these configs (the first largest id).
  torch::Tensor text_embeds(const torch::Tensor& last_hidden_state, const torch::Tensor& ids);
  nn::Linear text_projection{nullptr};
};
TORCH_MODULE(ClipTextModelWithProjection);

// CLIPTextModel or CLIPTextModelWithProjection, as the config's architectures name it.
ClipTextModel make_clip_text_model(const ClipTextConfig& config);

}  // namespace ovam
