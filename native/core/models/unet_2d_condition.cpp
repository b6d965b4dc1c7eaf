#include "models/unet_2d_condition.h"

#include <algorithm>

#include "util/errors.h"

namespace ovam {

namespace {

// Keys of diffusers' UNet config that this implementation supports only at their default.
void require_null(const Config& c, const std::string& key) {
  if (c.has(key)) c.reject(key, "not implemented (only null is)");
}

void require_false(const Config& c, const std::string& key) {
  if (!c.has(key)) return;
  const Json& v = c.json()[key];
  // A bool, or (only_cross_attention) one bool per block.
  if (v.is_array() ? std::any_of(v.begin(), v.end(), [](const Json& x) { return x != false; }) : v != false)
    c.reject(key, "not implemented (only false is)");
}

void require_number(const Config& c, const std::string& key, double value) {
  if (c.get_double(key, value) != value) c.reject(key, "not implemented (only " + Json(value).dump() + " is)");
}

bool has_cross_attention(const std::string& block_type) { return block_type.rfind("CrossAttn", 0) == 0; }

}  // namespace

UNetConfig UNetConfig::from(const Config& c) {
  UNetConfig u;
  u.in_channels = c.get_int("in_channels", u.in_channels);
  u.out_channels = c.get_int("out_channels", u.out_channels);
  u.sample_size = c.get_int("sample_size", u.sample_size);
  u.block_out_channels = c.get_ints("block_out_channels", u.block_out_channels);
  const size_t n = u.block_out_channels.size();
  if (n == 0) c.reject("block_out_channels", "expected at least one block");
  u.down_block_types = c.get_strings("down_block_types", u.down_block_types);
  u.up_block_types = c.get_strings("up_block_types", u.up_block_types);
  for (auto [key, types, accepted] :
       {std::tuple{"down_block_types", &u.down_block_types, std::vector<std::string>{"CrossAttnDownBlock2D", "DownBlock2D"}},
        std::tuple{"up_block_types", &u.up_block_types, std::vector<std::string>{"CrossAttnUpBlock2D", "UpBlock2D"}}}) {
    if (types->size() != n) c.reject(key, "expected one block type per entry of block_out_channels (" + std::to_string(n) + ")");
    for (const auto& type : *types) c.require_one_of(key, type, accepted);
  }
  if (c.json().contains("mid_block_type") && c.json()["mid_block_type"].is_null())
    c.reject("mid_block_type", "a UNet without mid block is not implemented");
  u.mid_block_type = c.get_string("mid_block_type", u.mid_block_type);
  c.require_one_of("mid_block_type", u.mid_block_type, {"UNetMidBlock2DCrossAttn"});
  u.layers_per_block = c.get_int("layers_per_block", u.layers_per_block, 1, 64);
  // SD 1.x/2.x name the head count attention_head_dim; num_attention_heads, when set, wins.
  const char* heads_key = c.has("num_attention_heads") ? "num_attention_heads" : "attention_head_dim";
  u.heads = c.get_int_or_ints(heads_key, 8, n);
  u.cross_attention_dim = c.get_int("cross_attention_dim", u.cross_attention_dim);
  u.norm_num_groups = c.get_int("norm_num_groups", u.norm_num_groups);
  if (c.json().contains("norm_num_groups") && c.json()["norm_num_groups"].is_null())
    c.reject("norm_num_groups", "a UNet without output GroupNorm is not implemented");
  u.norm_eps = c.get_double("norm_eps", u.norm_eps);
  for (size_t i = 0; i < n; ++i) {
    const int64_t channels = u.block_out_channels[i];
    if (u.heads[i] <= 0 || channels % u.heads[i] != 0)
      c.reject(heads_key, "each block's channels (" + std::to_string(channels) + ") must split evenly into its heads");
    if (channels % u.norm_num_groups != 0)
      c.reject("norm_num_groups", "must divide every entry of block_out_channels (" + std::to_string(channels) + ")");
  }
  u.use_linear_projection = c.get_bool("use_linear_projection", u.use_linear_projection);
  u.upcast_attention = c.get_bool("upcast_attention", u.upcast_attention);
  u.flip_sin_to_cos = c.get_bool("flip_sin_to_cos", u.flip_sin_to_cos);
  u.freq_shift = c.get_double("freq_shift", u.freq_shift);
  u.downsample_padding = c.get_int("downsample_padding", u.downsample_padding, 0);
  u.transformer_layers_per_block = c.get_int_or_ints("transformer_layers_per_block", 1, n);
  for (int64_t layers : u.transformer_layers_per_block)
    if (layers < 1) c.reject("transformer_layers_per_block", "each entry must be at least 1");
  if (c.has("addition_embed_type")) {
    c.require_one_of("addition_embed_type", c.get_string("addition_embed_type", ""), {"text_time"});
    u.text_time = true;
    for (const char* key : {"addition_time_embed_dim", "projection_class_embeddings_input_dim"})
      if (!c.has(key) || c.get_int(key, 0) < 1) c.reject(key, "\"text_time\" needs a positive integer here");
    u.addition_time_embed_dim = c.get_int("addition_time_embed_dim", 0);
    u.projection_class_embeddings_input_dim = c.get_int("projection_class_embeddings_input_dim", 0);
  }

  c.require_one_of("act_fn", c.get_string("act_fn", "silu"), {"silu", "swish"});
  c.require_one_of("time_embedding_type", c.get_string("time_embedding_type", "positional"), {"positional"});
  c.require_one_of("resnet_time_scale_shift", c.get_string("resnet_time_scale_shift", "default"), {"default"});
  c.require_one_of("attention_type", c.get_string("attention_type", "default"), {"default"});
  for (const char* key : {"class_embed_type", "num_class_embeds", "encoder_hid_dim",
                          "encoder_hid_dim_type", "time_embedding_dim", "time_embedding_act_fn", "timestep_post_act",
                          "time_cond_proj_dim", "cross_attention_norm"})
    require_null(c, key);
  for (const char* key : {"center_input_sample", "only_cross_attention", "dual_cross_attention", "resnet_skip_time_act"})
    require_false(c, key);
  for (const char* key : {"mid_block_scale_factor", "resnet_out_scale_factor"}) require_number(c, key, 1);
  for (const char* key : {"conv_in_kernel", "conv_out_kernel"}) require_number(c, key, 3);
  return u;
}

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNetConfig& config) : config_(config) {
  const auto& ch = config.block_out_channels;
  const int64_t n = int64_t(ch.size()), time_embed_dim = ch[0] * 4;
  conv_in = register_module("conv_in", nn::Conv2d(config.in_channels, ch[0], 3, 1, 1));
  time_proj = register_module("time_proj", Timesteps(ch[0], config.flip_sin_to_cos, config.freq_shift));
  time_embedding = register_module("time_embedding", TimestepEmbedding(ch[0], time_embed_dim));
  if (config.text_time) {
    add_time_proj = register_module("add_time_proj", Timesteps(config.addition_time_embed_dim, config.flip_sin_to_cos, config.freq_shift));
    add_embedding = register_module("add_embedding", TimestepEmbedding(config.projection_class_embeddings_input_dim, time_embed_dim));
  }
  // diffusers registers both block lists before the mid block, which fixes the parameter order.
  down_blocks = nn::List<DownBlock2D>(*this, "down_blocks");
  up_blocks = nn::List<UpBlock2D>(*this, "up_blocks");

  const ResnetSettings resnet{time_embed_dim, config.norm_num_groups, config.norm_eps};
  // Block i's settings (heads and transformer layers of down block i; up blocks mirror them).
  auto transformer = [&](bool cross_attention, int64_t i) -> std::optional<TransformerSettings> {
    if (!cross_attention) return std::nullopt;
    return TransformerSettings{config.heads[i], config.cross_attention_dim, config.norm_num_groups,
                               config.transformer_layers_per_block[i], config.use_linear_projection, config.upcast_attention};
  };
  for (int64_t i = 0; i < n; ++i)
    down_blocks.push_back(DownBlock2D(ch[std::max<int64_t>(i - 1, 0)], ch[i], config.layers_per_block, resnet,
                                      transformer(has_cross_attention(config.down_block_types[i]), i),
                                      /*add_downsample=*/i < n - 1, config.downsample_padding));
  mid_block = register_module("mid_block", MidBlock2D(ch[n - 1], resnet, transformer(true, n - 1)));
  // Up block i mirrors down block n-1-i (channels and heads reversed, one more layer for the skips).
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = n - 1 - i;
    up_blocks.push_back(UpBlock2D(/*prev=*/ch[std::min(r + 1, n - 1)], /*in=*/ch[std::max<int64_t>(r - 1, 0)], ch[r],
                                  config.layers_per_block + 1, /*skip_connections=*/true, resnet,
                                  transformer(has_cross_attention(config.up_block_types[i]), r),
                                  /*add_upsample=*/i < n - 1));
  }
  conv_norm_out = register_module("conv_norm_out", nn::GroupNorm(config.norm_num_groups, ch[0], config.norm_eps));
  conv_out = register_module("conv_out", nn::Conv2d(ch[0], config.out_channels, 3, 1, 1));

  // Each attn2 learns its module path (for the observer); listed down, mid, up as OVAM walks them.
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    if (auto* block = item.value()->as<BasicTransformerBlockImpl>()) {
      block->attn2_path = item.key() + ".attn2";
      cross_attentions_.emplace_back(block->attn2_path, block->attn2);
    }
  }
  auto rank = [](const std::string& path) { return path.rfind("down_blocks.", 0) == 0 ? 0 : path.rfind("mid_block.", 0) == 0 ? 1 : 2; };
  std::stable_sort(cross_attentions_.begin(), cross_attentions_.end(),
                   [&](const auto& a, const auto& b) { return rank(a.first) < rank(b.first); });
}

torch::Tensor UNet2DConditionModelImpl::forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                                                const torch::Tensor& encoder_hidden_states,
                                                CrossAttentionObserver* observer, const AddedConditions& added) {
  auto timesteps = (timestep.dim() == 0 ? timestep.reshape({1}) : timestep).to(sample.device()).expand({sample.size(0)});
  auto temb = time_embedding(time_proj(timesteps).to(sample.scalar_type()));
  if (add_embedding) temb = temb + add_embedding(text_time_embedding(added, sample.size(0), temb.scalar_type()));
  const BlockInputs in{temb, encoder_hidden_states, observer};
  auto x = conv_in(sample);
  std::vector<torch::Tensor> skips{x};
  for (auto& block : down_blocks) x = block->forward(x, in, &skips);
  x = mid_block->forward(x, in);
  for (auto& block : up_blocks) x = block->forward(x, in, &skips);
  return conv_out(nn::silu_temporary(conv_norm_out(x)));
}

torch::Tensor UNet2DConditionModelImpl::text_time_embedding(const AddedConditions& added, int64_t batch,
                                                            torch::ScalarType dtype) {
  const auto& text = added.text_embeds;
  const auto& time_ids = added.time_ids;
  if (!text.defined() || !time_ids.defined())
    throw Error(code::kInvalidArgument, "this UNet (addition_embed_type \"text_time\") needs text_embeds and time_ids");
  const int64_t width = config_.projection_class_embeddings_input_dim;
  if (text.dim() != 2 || time_ids.dim() != 2 || text.size(0) != batch || time_ids.size(0) != batch ||
      text.size(1) + time_ids.size(1) * config_.addition_time_embed_dim != width)
    throw Error(code::kInvalidArgument, "text_embeds [" + std::to_string(batch) + ", P] and time_ids [" + std::to_string(batch) +
                                            ", K] must give P + K·" + std::to_string(config_.addition_time_embed_dim) + " = " +
                                            std::to_string(width) + ", got " + std::string(c10::str(text.sizes())) + " and " +
                                            std::string(c10::str(time_ids.sizes())));
  // As diffusers: time ids embedded flat then one row per sample, concatenated after the text.
  auto time_embeds = add_time_proj(time_ids.to(text.device()).flatten()).reshape({batch, -1});
  return torch::cat({text.to(torch::kFloat32), time_embeds}, -1).to(dtype);
}

std::vector<std::pair<std::string, Attention>> UNet2DConditionModelImpl::cross_attentions() { return cross_attentions_; }

}  // namespace ovam
