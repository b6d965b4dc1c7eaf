// diffusers' attention: Attention (to_q/to_k/to_v/to_out.0), FeedForward (GEGLU),
// BasicTransformerBlock (attn1 self, attn2 cross, ff) and Transformer2DModel (proj_in/out as 1×1
// conv, or linear with use_linear_projection). The VAE's mid-block attention is the same Attention
// with a group_norm and a residual connection.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>

#include "util/nn.h"

namespace ovam {

class AttentionImpl;

// Called by every cross-attention (attn2) with its queries, to_q of its input, as the attention
// computes them (storing them costs a copy, not a second projection): OVAM's store hooks here.
// `queries` is [B, h·w, heads·head_dim] for the latent grid of this block, h × w.
// Self-attention (attn1) reports its softmax probabilities the same way, a block of queries at a
// time: [B, heads, rows, h·w] for the queries first_query … first_query + rows.
class CrossAttentionObserver {
 public:
  virtual ~CrossAttentionObserver() = default;
  virtual void on_cross_attention(const std::string& block, const AttentionImpl& attention, const torch::Tensor& queries,
                                  int64_t height, int64_t width) = 0;
  virtual void on_self_attention(const torch::Tensor& probs, int64_t first_query, int64_t height, int64_t width) {}
};

class AttentionImpl : public torch::nn::Module {
 public:
  // The UNet's attention: query_dim = C, context_dim = cross-attention dim (or C for self-attention),
  // heads × head_dim = inner; to_q/to_k/to_v without bias.
  AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim, bool upcast_attention);
  // The VAE's spatial self-attention (diffusers' Attention as built by UNetMidBlock2D): group_norm,
  // biased to_q/to_k/to_v, one head of all `channels`, softmax in float32, residual connection.
  AttentionImpl(int64_t channels, int64_t norm_groups, double norm_eps);
  // x [B, N, C], context [B, T, Cc] (or undefined for self-attention) → [B, N, C].
  // With group_norm (the VAE), x is [B, C, H, W] and so is the result.
  // `on_queries`, when set, sees to_q(x) before the attention uses it; `on_probs` the softmax
  // probabilities of each block of queries, [B, heads, rows, T] from query `first` (float32 where
  // the softmax is upcast), before they weight v.
  using Observe = std::function<void(const torch::Tensor&)>;
  using ObserveProbs = std::function<void(const torch::Tensor& probs, int64_t first)>;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {}, const Observe& on_queries = {},
                        const ObserveProbs& on_probs = {});
  // Largest attention score matrix (bytes) formed at once; larger ones go a block of queries at a
  // time (0: whole matrices). Set per pipeline with set_attention_block_bytes.
  static constexpr int64_t kDefaultMaxScoreBytes = int64_t(128) << 20;
  int64_t max_score_bytes = kDefaultMaxScoreBytes;
  int64_t heads, head_dim;
  double scale;  // head_dim^-0.5
  bool upcast_attention;  // scores and softmax in float32
  bool upcast_softmax = false;  // softmax only in float32
  nn::GroupNorm group_norm{nullptr};  // the VAE's only
  nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, to_out{nullptr};  // to_out registered as "to_out.0"

 private:
  void build(int64_t query_dim, int64_t context_dim, bool bias);
  torch::Tensor attend(const torch::Tensor& x, const torch::Tensor& context, const Observe& on_queries,
                       const ObserveProbs& on_probs);
};
TORCH_MODULE(Attention);

// Sets max_score_bytes on every attention inside `model`.
void set_attention_block_bytes_of(torch::nn::Module& model, int64_t bytes);

// proj (to 2 × inner), value half × GELU(gate half).
class GEGLUImpl : public torch::nn::Module {
 public:
  GEGLUImpl(int64_t dim_in, int64_t dim_out);
  torch::Tensor forward(const torch::Tensor& x);
  nn::Linear proj{nullptr};
};
TORCH_MODULE(GEGLU);

// net.0 = GEGLU(dim, 4·dim), net.1 = dropout (no parameters, identity at inference), net.2 = Linear(4·dim, dim).
class FeedForwardImpl : public torch::nn::Module {
 public:
  explicit FeedForwardImpl(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);
  GEGLU geglu{nullptr};
  nn::Linear out{nullptr};
};
TORCH_MODULE(FeedForward);

// The options of a block's Transformer2DModels that come from the UNet config.
struct TransformerSettings {
  int64_t heads = 8, cross_attention_dim = 768, norm_groups = 32;
  int64_t layers = 1;  // BasicTransformerBlocks per Transformer2DModel (SDXL: transformer_layers_per_block)
  bool use_linear_projection = false, upcast_attention = false;
};

class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(int64_t dim, const TransformerSettings& settings);
  // x [B, h·w, dim], context [B, T, cross_attention_dim]; `observer` (may be null) sees attn2's
  // queries and attn1's probabilities.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context, CrossAttentionObserver* observer,
                        int64_t height, int64_t width);
  nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Attention attn1{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr};
  std::string attn2_path = "attn2";  // module path of attn2 as the observer names it (set by the UNet)
};
TORCH_MODULE(BasicTransformerBlock);

class Transformer2DModelImpl : public torch::nn::Module {
 public:
  Transformer2DModelImpl(int64_t channels, const TransformerSettings& settings);
  // x [B, C, H, W] → [B, C, H, W] (residual included)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context, CrossAttentionObserver* observer);
  nn::GroupNorm norm{nullptr};
  // proj_in/proj_out are 1×1 convs, or Linear with use_linear_projection (SD 2.x).
  std::shared_ptr<torch::nn::Module> proj_in, proj_out;
  nn::List<BasicTransformerBlock> transformer_blocks;
  bool use_linear_projection;

 private:
  torch::Tensor project(const std::shared_ptr<torch::nn::Module>& projection, const torch::Tensor& x);
};
TORCH_MODULE(Transformer2DModel);

}  // namespace ovam
