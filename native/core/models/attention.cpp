#include "models/attention.h"

#include <algorithm>
#include <cmath>

namespace ovam {

AttentionImpl::AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads_, int64_t head_dim_,
                             bool upcast_attention_)
    : heads(heads_), head_dim(head_dim_), scale(1.0 / std::sqrt(double(head_dim_))), upcast_attention(upcast_attention_) {
  build(query_dim, context_dim, /*bias=*/false);
}

AttentionImpl::AttentionImpl(int64_t channels, int64_t norm_groups, double norm_eps)
    : heads(1), head_dim(channels), scale(1.0 / std::sqrt(double(channels))), upcast_attention(false), upcast_softmax(true) {
  group_norm = register_module("group_norm", nn::GroupNorm(norm_groups, channels, norm_eps));
  build(channels, channels, /*bias=*/true);
}

void AttentionImpl::build(int64_t query_dim, int64_t context_dim, bool bias) {
  const int64_t inner = heads * head_dim;
  to_q = register_module("to_q", nn::Linear(query_dim, inner, bias));
  to_k = register_module("to_k", nn::Linear(context_dim, inner, bias));
  to_v = register_module("to_v", nn::Linear(context_dim, inner, bias));
  // diffusers' to_out is a ModuleList [Linear, Dropout]: the Linear is "to_out.0".
  nn::List<nn::Linear> out_list(*this, "to_out");
  to_out = out_list.push_back(nn::Linear(inner, query_dim));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context, const Observe& on_queries,
                                     const ObserveProbs& on_probs) {
  if (!group_norm) return attend(x, context.defined() ? context : x, on_queries, on_probs);
  // The VAE's spatial form: [B, C, H, W] as a sequence of H·W tokens, normalised over channels groups.
  const auto b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  auto tokens = group_norm(x.reshape({b, c, h * w})).transpose(1, 2);
  auto out = attend(tokens, tokens, on_queries, on_probs).transpose(1, 2).reshape({b, c, h, w});
  return out + x;
}

torch::Tensor AttentionImpl::attend(const torch::Tensor& x, const torch::Tensor& context, const Observe& on_queries,
                                    const ObserveProbs& on_probs) {
  const auto b = x.size(0), n = x.size(1), t = context.size(1);
  auto split_heads = [&](const torch::Tensor& y, int64_t len) { return y.view({b, len, heads, head_dim}).transpose(1, 2); };
  auto queries = to_q(x);
  if (on_queries) on_queries(queries);
  auto q = split_heads(queries, n), k = split_heads(to_k(context), t), v = split_heads(to_v(context), t);
  const auto dtype = q.scalar_type();
  if (upcast_attention) {
    q = q.to(torch::kFloat32);
    k = k.to(torch::kFloat32);
  }
  // q·kᵀ and probs·v, for the benchmarks' FLOP count (the projections count themselves).
  nn::FlopCount::add(4.0 * double(b * heads * n * t * head_dim));
  auto weigh = [&](const torch::Tensor& rows, int64_t first) {
    // Not baddbmm on an uninitialised tensor (NaN in this libtorch build; see ENGINEERING.md).
    // Scaled in place: the product is a fresh tensor, and a copy would add a block to the peak.
    auto scores = torch::matmul(rows, k.transpose(-1, -2)).mul_(scale);
    if (upcast_softmax) scores = scores.to(torch::kFloat32);
    auto probs = scores.softmax(-1);
    if (on_probs) on_probs(probs, first);
    return torch::matmul(probs.to(dtype), v);
  };
  // Each query's softmax is its own row, so large score matrices are formed a block of queries
  // at a time: SD's 64×64 self-attention at 512² would otherwise hold 2 × 8 × 4096² float32
  // scores (1 GiB) and as many probabilities. The self-attention capture sums blocks as they come.
  const int64_t score_bytes = b * heads * n * t * int64_t(sizeof(float));
  torch::Tensor out;
  if (max_score_bytes <= 0 || score_bytes <= max_score_bytes) {
    out = weigh(q, 0);
  } else {
    const int64_t rows = std::max<int64_t>(1, n * max_score_bytes / score_bytes);
    out = torch::empty({b, heads, n, v.size(-1)}, v.options());
    for (int64_t first = 0; first < n; first += rows) {
      const int64_t end = std::min(n, first + rows);
      out.slice(2, first, end).copy_(weigh(q.slice(2, first, end), first));
    }
  }
  return to_out(out.transpose(1, 2).reshape({b, n, heads * head_dim}));
}

GEGLUImpl::GEGLUImpl(int64_t dim_in, int64_t dim_out) {
  proj = register_module("proj", nn::Linear(dim_in, dim_out * 2));
}

torch::Tensor GEGLUImpl::forward(const torch::Tensor& x) {
  auto halves = proj(x).chunk(2, -1);
  return halves[0] * torch::gelu(halves[1]);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim) {
  auto net = register_module("net", std::make_shared<torch::nn::Module>());
  geglu = net->register_module("0", GEGLU(dim, dim * 4));
  out = net->register_module("2", nn::Linear(dim * 4, dim));
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) { return out(geglu(x)); }

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, const TransformerSettings& s) {
  const int64_t head_dim = dim / s.heads;
  norm1 = register_module("norm1", nn::LayerNorm(dim, 1e-5));
  attn1 = register_module("attn1", Attention(dim, dim, s.heads, head_dim, s.upcast_attention));
  norm2 = register_module("norm2", nn::LayerNorm(dim, 1e-5));
  attn2 = register_module("attn2", Attention(dim, s.cross_attention_dim, s.heads, head_dim, s.upcast_attention));
  norm3 = register_module("norm3", nn::LayerNorm(dim, 1e-5));
  ff = register_module("ff", FeedForward(dim));
}

torch::Tensor BasicTransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& context,
                                                 CrossAttentionObserver* observer, int64_t height, int64_t width) {
  AttentionImpl::Observe see_queries;
  AttentionImpl::ObserveProbs see_probs;
  if (observer) {
    see_probs = [&](const torch::Tensor& probs, int64_t first) { observer->on_self_attention(probs, first, height, width); };
    see_queries = [&](const torch::Tensor& queries) { observer->on_cross_attention(attn2_path, *attn2, queries, height, width); };
  }
  auto h = attn1->forward(norm1(x), {}, {}, see_probs) + x;
  h = attn2->forward(norm2(h), context, see_queries) + h;
  return ff(norm3(h)) + h;
}

Transformer2DModelImpl::Transformer2DModelImpl(int64_t channels, const TransformerSettings& s)
    : use_linear_projection(s.use_linear_projection) {
  norm = register_module("norm", nn::GroupNorm(s.norm_groups, channels, 1e-6));
  auto projection = [&](const char* name) -> std::shared_ptr<torch::nn::Module> {
    if (use_linear_projection) return register_module(name, nn::Linear(channels, channels));
    return register_module(name, nn::Conv2d(channels, channels, 1));
  };
  proj_in = projection("proj_in");
  transformer_blocks = nn::List<BasicTransformerBlock>(*this, "transformer_blocks");
  for (int64_t i = 0; i < s.layers; ++i) transformer_blocks.push_back(BasicTransformerBlock(channels, s));
  proj_out = projection("proj_out");
}

torch::Tensor Transformer2DModelImpl::project(const std::shared_ptr<torch::nn::Module>& projection,
                                              const torch::Tensor& x) {
  if (use_linear_projection) return projection->as<nn::LinearImpl>()->forward(x);
  return projection->as<nn::Conv2dImpl>()->forward(x);
}

torch::Tensor Transformer2DModelImpl::forward(const torch::Tensor& x, const torch::Tensor& context,
                                              CrossAttentionObserver* observer) {
  const auto b = x.size(0), height = x.size(2), width = x.size(3);
  auto to_tokens = [&](const torch::Tensor& y) { return y.permute({0, 2, 3, 1}).reshape({b, height * width, y.size(1)}); };
  auto to_grid = [&](const torch::Tensor& y) { return y.reshape({b, height, width, y.size(2)}).permute({0, 3, 1, 2}).contiguous(); };
  auto h = norm(x);
  // A 1×1 conv projects on the grid, a Linear on the tokens (diffusers' order of operations).
  h = use_linear_projection ? project(proj_in, to_tokens(h)) : to_tokens(project(proj_in, h));
  for (auto& block : transformer_blocks) h = block->forward(h, context, observer, height, width);
  h = use_linear_projection ? to_grid(project(proj_out, h)) : project(proj_out, to_grid(h));
  return h + x;
}

void set_attention_block_bytes_of(torch::nn::Module& model, int64_t bytes) {
  for (const auto& m : model.modules())
    if (auto* attention = dynamic_cast<AttentionImpl*>(m.get())) attention->max_score_bytes = bytes;
}

}  // namespace ovam
