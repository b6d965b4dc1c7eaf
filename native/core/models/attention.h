// diffusers' attention: Attention (to_q/to_k/to_v/to_out.0), FeedForward (GEGLU),
// BasicTransformerBlock (attn1 self, attn2 cross, ff) and Transformer2DModel (proj_in/out as 1×1
// conv, or linear with use_linear_projection).
#pragma once
#include <torch/torch.h>

#include <string>

#include "util/nn.h"

namespace ovam {

class AttentionImpl;

// Called by every cross-attention (attn2) with its input, before to_q: OVAM's store hooks here.
// `hidden_states` is [B, h·w, C] for the latent grid of this block, h × w.
class CrossAttentionObserver {
 public:
  virtual ~CrossAttentionObserver() = default;
  virtual void on_cross_attention(const std::string& block, AttentionImpl& attention, const torch::Tensor& hidden_states,
                                  int64_t height, int64_t width) = 0;
};

class AttentionImpl : public torch::nn::Module {
 public:
  // query_dim = C, context_dim = cross-attention dim (or C for self-attention), heads × head_dim = inner.
  AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim, bool upcast_attention);
  // x [B, N, C], context [B, T, Cc] (or undefined for self-attention) → [B, N, C]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {});
  int64_t heads, head_dim;
  double scale;  // head_dim^-0.5
  bool upcast_attention;
  nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, to_out{nullptr};  // to_out registered as "to_out.0"
};
TORCH_MODULE(Attention);

}  // namespace ovam
