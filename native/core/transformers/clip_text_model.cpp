#include "transformers/clip_text_model.h"

#include <cmath>
#include <limits>

#include "util/errors.h"

namespace ovam {

ClipTextConfig ClipTextConfig::from(const Config& config) {
  ClipTextConfig c;
  c.vocab_size = config.get_int("vocab_size", c.vocab_size);
  c.hidden_size = config.get_int("hidden_size", c.hidden_size);
  c.intermediate_size = config.get_int("intermediate_size", c.intermediate_size);
  c.num_attention_heads = config.get_int("num_attention_heads", c.num_attention_heads);
  c.num_hidden_layers = config.get_int("num_hidden_layers", c.num_hidden_layers, 1, 256);
  c.max_position_embeddings = config.get_int("max_position_embeddings", c.max_position_embeddings);
  c.hidden_act = config.get_string("hidden_act", c.hidden_act);
  c.layer_norm_eps = config.get_double("layer_norm_eps", c.layer_norm_eps);
  config.require_one_of("hidden_act", c.hidden_act, {"quick_gelu", "gelu"});
  const auto architectures = config.get_strings("architectures", {"CLIPTextModel"});
  if (architectures.size() != 1) config.reject("architectures", "expected one class name");
  config.require_one_of("architectures", architectures[0], {"CLIPTextModel", "CLIPTextModelWithProjection"});
  c.with_projection = architectures[0] == "CLIPTextModelWithProjection";
  c.projection_dim = config.get_int("projection_dim", c.projection_dim);
  if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0)
    config.reject("num_attention_heads", "must divide hidden_size (" + std::to_string(c.hidden_size) + ")");
  return c;
}

ClipAttentionImpl::ClipAttentionImpl(int64_t hidden, int64_t heads)
    : heads_(heads), head_dim_(hidden / heads), scale_(1.0 / std::sqrt(double(hidden / heads))) {
  q_proj_ = register_module("q_proj", nn::Linear(hidden, hidden));
  k_proj_ = register_module("k_proj", nn::Linear(hidden, hidden));
  v_proj_ = register_module("v_proj", nn::Linear(hidden, hidden));
  out_proj_ = register_module("out_proj", nn::Linear(hidden, hidden));
}

torch::Tensor ClipAttentionImpl::forward(const torch::Tensor& x) {
  const auto b = x.size(0), t = x.size(1);
  auto split_heads = [&](const torch::Tensor& y) { return y.view({b, t, heads_, head_dim_}).transpose(1, 2); };
  // q is scaled before the product, as CLIP and transformers do.
  auto q = split_heads(q_proj_(x) * scale_), k = split_heads(k_proj_(x)), v = split_heads(v_proj_(x));
  // q·kᵀ and probs·v, for the benchmarks' FLOP count (the projections count themselves).
  nn::FlopCount::add(4.0 * double(b * heads_ * t * t * head_dim_));
  // Not baddbmm on an uninitialised tensor (NaN in this libtorch build; see ENGINEERING.md).
  auto scores = torch::matmul(q, k.transpose(-1, -2));
  auto future = torch::ones({t, t}, torch::TensorOptions().dtype(torch::kBool).device(x.device())).triu(1);
  auto probs = scores.masked_fill(future, -std::numeric_limits<double>::infinity()).softmax(-1);
  auto out = torch::matmul(probs, v).transpose(1, 2).reshape({b, t, heads_ * head_dim_});
  return out_proj_(out);
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipTextConfig& c) : quick_gelu_(c.hidden_act == "quick_gelu") {
  self_attn_ = register_module("self_attn", ClipAttention(c.hidden_size, c.num_attention_heads));
  layer_norm1_ = register_module("layer_norm1", nn::LayerNorm(c.hidden_size, c.layer_norm_eps));
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
  fc1_ = mlp->register_module("fc1", nn::Linear(c.hidden_size, c.intermediate_size));
  fc2_ = mlp->register_module("fc2", nn::Linear(c.intermediate_size, c.hidden_size));
  layer_norm2_ = register_module("layer_norm2", nn::LayerNorm(c.hidden_size, c.layer_norm_eps));
}

torch::Tensor ClipEncoderLayerImpl::forward(const torch::Tensor& x) {
  auto h = x + self_attn_(layer_norm1_(x));
  auto y = fc1_(layer_norm2_(h));
  // quick_gelu is the sigmoid approximation OpenAI trained CLIP with; gelu is the exact (erf) one.
  y = quick_gelu_ ? y * torch::sigmoid(1.702 * y) : torch::gelu(y);
  return h + fc2_(y);
}

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& config) : config_(config) {
  auto text_model = register_module("text_model", std::make_shared<torch::nn::Module>());
  auto embeddings = text_model->register_module("embeddings", std::make_shared<torch::nn::Module>());
  token_embedding_ = embeddings->register_module("token_embedding", nn::Embedding(config.vocab_size, config.hidden_size));
  position_embedding_ =
      embeddings->register_module("position_embedding", nn::Embedding(config.max_position_embeddings, config.hidden_size));
  auto encoder = text_model->register_module("encoder", std::make_shared<torch::nn::Module>());
  layers_ = nn::List<ClipEncoderLayer>(*encoder, "layers");
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) layers_.push_back(ClipEncoderLayer(config));
  final_layer_norm_ = text_model->register_module("final_layer_norm", nn::LayerNorm(config.hidden_size, config.layer_norm_eps));
}

torch::Tensor ClipTextModelImpl::embed(const torch::Tensor& ids) {
  if (ids.dim() != 2) throw Error(code::kInvalidArgument, "token ids must be [batch, tokens], got " + std::to_string(ids.dim()) + " dimensions");
  if (ids.numel() > 0) {
    const auto low = ids.min().item<int64_t>(), high = ids.max().item<int64_t>();
    if (low < 0 || high >= config_.vocab_size)
      throw Error(code::kInvalidArgument, "token id " + std::to_string(low < 0 ? low : high) + " is outside the vocabulary (0.." +
                                              std::to_string(config_.vocab_size - 1) + ")");
  }
  return token_embedding_(ids);
}

torch::Tensor ClipTextModelImpl::forward(const torch::Tensor& ids) { return forward_embeddings(embed(ids)); }

torch::Tensor ClipTextModelImpl::forward_embeddings(const torch::Tensor& token_embeddings) {
  return final_layer_norm_(encoder_states(token_embeddings).back());
}

std::vector<torch::Tensor> ClipTextModelImpl::hidden_states(const torch::Tensor& ids) { return encoder_states(embed(ids)); }

std::vector<torch::Tensor> ClipTextModelImpl::encoder_states(const torch::Tensor& token_embeddings) {
  if (token_embeddings.dim() != 3 || token_embeddings.size(2) != config_.hidden_size)
    throw Error(code::kInvalidArgument, "token embeddings must be [batch, tokens, " + std::to_string(config_.hidden_size) +
                                            "], got " + std::string(c10::str(token_embeddings.sizes())));
  const auto t = token_embeddings.size(1);
  if (t < 1 || t > config_.max_position_embeddings)
    throw Error(code::kInvalidArgument, "the text encoder takes 1 to " + std::to_string(config_.max_position_embeddings) +
                                            " tokens at once, got " + std::to_string(t));
  std::vector<torch::Tensor> states{token_embeddings + position_embedding_->weight.slice(0, 0, t)};
  for (auto& layer : layers_) states.push_back(layer(states.back()));
  return states;
}

torch::Tensor ClipTextModelImpl::token_embedding_weight() const { return token_embedding_->weight; }

const std::set<std::string>& ClipTextModelImpl::ignored_tensors() {
  static const std::set<std::string> names{"text_model.embeddings.position_ids"};
  return names;
}

ClipTextModel make_clip_text_model(const ClipTextConfig& config) {
  if (!config.with_projection) return ClipTextModel(config);
  return ClipTextModel(std::shared_ptr<ClipTextModelImpl>(std::make_shared<ClipTextModelWithProjectionImpl>(config)));
}

ClipTextModelWithProjectionImpl::ClipTextModelWithProjectionImpl(const ClipTextConfig& config) : ClipTextModelImpl(config) {
  text_projection = register_module("text_projection", nn::Linear(config.hidden_size, config.projection_dim, /*bias=*/false));
}

torch::Tensor ClipTextModelWithProjectionImpl::text_embeds(const torch::Tensor& last_hidden_state, const torch::Tensor& ids) {
  // transformers (eos_token_id 2 in these configs): the position of the largest id, <|endoftext|>.
  auto eos = ids.to(last_hidden_state.device()).argmax(-1);
  auto rows = torch::arange(last_hidden_state.size(0), eos.options());
  return text_projection(last_hidden_state.index({rows, eos}));
}

}  // namespace ovam
