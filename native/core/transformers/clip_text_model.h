// CLIP text transformer (Hugging Face CLIPTextModel tensor names): token + position embeddings,
// pre-LN causal self-attention layers, final LayerNorm. quick_gelu (SD 1.x) or gelu (SD 2.x).
#pragma once
#include <torch/torch.h>

#include "util/json.h"
#include "util/nn.h"

namespace ovam {

struct ClipTextConfig {
  int64_t vocab_size = 49408, hidden_size = 512, intermediate_size = 2048;
  int64_t num_attention_heads = 8, num_hidden_layers = 12, max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;
  static ClipTextConfig from(const Config& config);  // transformers' defaults for missing keys
};

class ClipTextModelImpl : public torch::nn::Module {
 public:
  explicit ClipTextModelImpl(const ClipTextConfig& config);
  // ids [B, T] (T ≤ 77) → last hidden state after final_layer_norm [B, T, hidden].
  torch::Tensor forward(const torch::Tensor& ids);
  // Same, from token embeddings [B, T, hidden] (optimised tokens enter here).
  torch::Tensor forward_embeddings(const torch::Tensor& token_embeddings);
  torch::Tensor token_embedding_weight() const;
  const ClipTextConfig& config() const { return config_; }
  // Real exports also carry text_model.embeddings.position_ids; it is not a parameter.
  static const std::set<std::string>& ignored_tensors();

 private:
  ClipTextConfig config_;
  // submodules: text_model.embeddings.{token,position}_embedding, text_model.encoder.layers.N…,
  // text_model.final_layer_norm (registered under a "text_model" child).
};
TORCH_MODULE(ClipTextModel);

}  // namespace ovam
