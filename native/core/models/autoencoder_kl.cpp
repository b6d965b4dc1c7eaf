#include "models/autoencoder_kl.h"

#include <algorithm>

namespace ovam {

namespace {
// diffusers builds every VAE ResNet, GroupNorm and attention with eps 1e-6 and no time embedding.
constexpr double kEps = 1e-6;
ResnetSettings resnet_settings(const VaeConfig& c) { return ResnetSettings{0, c.norm_num_groups, kEps}; }
}  // namespace

VaeConfig VaeConfig::from(const Config& c) {
  VaeConfig v;
  v.in_channels = c.get_int("in_channels", v.in_channels);
  v.out_channels = c.get_int("out_channels", v.out_channels);
  v.latent_channels = c.get_int("latent_channels", v.latent_channels);
  v.layers_per_block = c.get_int("layers_per_block", v.layers_per_block, 1, 64);
  v.norm_num_groups = c.get_int("norm_num_groups", v.norm_num_groups);
  v.block_out_channels = c.get_ints("block_out_channels", v.block_out_channels);
  v.scaling_factor = c.get_double("scaling_factor", v.scaling_factor);
  const size_t n = v.block_out_channels.size();
  if (n == 0) c.reject("block_out_channels", "expected at least one block");
  for (int64_t channels : v.block_out_channels)
    if (channels % v.norm_num_groups != 0)
      c.reject("norm_num_groups", "must divide every entry of block_out_channels (" + std::to_string(channels) + ")");
  for (auto [key, type] : {std::pair{"down_block_types", "DownEncoderBlock2D"}, std::pair{"up_block_types", "UpDecoderBlock2D"}}) {
    auto types = c.get_strings(key, std::vector<std::string>(n, type));
    if (types.size() != n) c.reject(key, "expected one block type per entry of block_out_channels (" + std::to_string(n) + ")");
    for (const auto& t : types) c.require_one_of(key, t, {type});
  }
  c.require_one_of("act_fn", c.get_string("act_fn", "silu"), {"silu", "swish"});
  for (const char* key : {"use_quant_conv", "use_post_quant_conv", "mid_block_add_attention"})
    if (!c.get_bool(key, true)) c.reject(key, "not implemented (only true is)");
  return v;
}

EncoderImpl::EncoderImpl(const VaeConfig& c) {
  const auto& ch = c.block_out_channels;
  const int64_t n = int64_t(ch.size());
  conv_in = register_module("conv_in", nn::Conv2d(c.in_channels, ch[0], 3, 1, 1));
  down_blocks = nn::List<DownBlock2D>(*this, "down_blocks");
  for (int64_t i = 0; i < n; ++i)
    down_blocks.push_back(DownBlock2D(ch[std::max<int64_t>(i - 1, 0)], ch[i], c.layers_per_block, resnet_settings(c),
                                      std::nullopt, /*add_downsample=*/i < n - 1, /*downsample_padding=*/0));
  mid_block = register_module("mid_block", MidBlock2D(ch[n - 1], resnet_settings(c), std::nullopt));
  conv_norm_out = register_module("conv_norm_out", nn::GroupNorm(c.norm_num_groups, ch[n - 1], kEps));
  conv_out = register_module("conv_out", nn::Conv2d(ch[n - 1], 2 * c.latent_channels, 3, 1, 1));
}

torch::Tensor EncoderImpl::forward(const torch::Tensor& image) {
  auto x = conv_in(image);
  for (auto& block : down_blocks) x = block->forward(x, {});
  x = mid_block->forward(x, {});
  return conv_out(nn::silu_temporary(conv_norm_out(x)));
}

DecoderImpl::DecoderImpl(const VaeConfig& c) {
  const auto& ch = c.block_out_channels;
  const int64_t n = int64_t(ch.size());
  conv_in = register_module("conv_in", nn::Conv2d(c.latent_channels, ch[n - 1], 3, 1, 1));
  up_blocks = nn::List<UpBlock2D>(*this, "up_blocks");  // registered before the mid block, as in diffusers
  mid_block = register_module("mid_block", MidBlock2D(ch[n - 1], resnet_settings(c), std::nullopt));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = n - 1 - i;
    up_blocks.push_back(UpBlock2D(/*prev=*/ch[std::min(r + 1, n - 1)], /*in=*/0, ch[r], c.layers_per_block + 1,
                                  /*skip_connections=*/false, resnet_settings(c), std::nullopt, /*add_upsample=*/i < n - 1));
  }
  conv_norm_out = register_module("conv_norm_out", nn::GroupNorm(c.norm_num_groups, ch[0], kEps));
  conv_out = register_module("conv_out", nn::Conv2d(ch[0], c.out_channels, 3, 1, 1));
}

// The decoder's convolutions run on full-resolution maps of 128–512 channels. oneDNN convolves NCHW
// tensors through a blocked copy of each (a 512² float32 decode peaked 0.3 GiB higher and took
// 8.1–9.3 s instead of 7.2–7.5 s); channels-last maps it takes as they are. Float32 on the CPU only:
// libtorch 1.13's channels-last GroupNorm is wrong in bfloat16 (0.93 relative L2 from float64 where
// NCHW's is 4.7e-3; 6.2e-7 against 5.3e-8 in float32, within the fixtures' 1e-4). The image goes back
// to NCHW. (The encoder stays NCHW: it runs only for img2img, and the fixtures' img2img start latents
// are held to the error it makes now.)
torch::Tensor DecoderImpl::forward(const torch::Tensor& latents) {
  const bool channels_last = latents.is_cpu() && latents.scalar_type() == torch::kFloat32;
  auto x = mid_block->forward(conv_in(channels_last ? latents.contiguous(at::MemoryFormat::ChannelsLast) : latents), {});
  for (auto& block : up_blocks) x = block->forward(x, {});
  return conv_out(nn::silu_temporary(conv_norm_out(x))).contiguous();
}

AutoencoderKLImpl::AutoencoderKLImpl(const VaeConfig& config) : config_(config) {
  encoder = register_module("encoder", Encoder(config));
  decoder = register_module("decoder", Decoder(config));
  const int64_t latent = config.latent_channels;
  quant_conv = register_module("quant_conv", nn::Conv2d(2 * latent, 2 * latent, 1));
  post_quant_conv = register_module("post_quant_conv", nn::Conv2d(latent, latent, 1));
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& latents) { return decoder(post_quant_conv(latents)); }

std::pair<torch::Tensor, torch::Tensor> AutoencoderKLImpl::encode(const torch::Tensor& image) {
  // diffusers' DiagonalGaussianDistribution: log-variance clamped to [-30, 20].
  auto moments = quant_conv(encoder(image)).chunk(2, 1);
  auto logvar = moments[1].clamp(-30.0, 20.0);
  return {moments[0], torch::exp(0.5 * logvar)};
}

void AutoencoderKLImpl::remap_legacy_names(NamedTensors& weights) {
  static const std::pair<const char*, const char*> kRenames[] = {
      {"query", "to_q"}, {"key", "to_k"}, {"value", "to_v"}, {"proj_attn", "to_out.0"}};
  std::map<std::string, torch::Tensor> renamed;
  for (auto it = weights.tensors.begin(); it != weights.tensors.end();) {
    // "<…>.mid_block.attentions.0.<old>.<weight|bias>"
    const std::string& name = it->first;
    const auto last = name.rfind('.');
    const auto prev = last == std::string::npos ? std::string::npos : name.rfind('.', last - 1);
    const std::string owner = prev == std::string::npos ? "" : name.substr(prev + 1, last - prev - 1);
    const auto* rename = std::find_if(std::begin(kRenames), std::end(kRenames), [&](const auto& r) { return owner == r.first; });
    if (name.find("mid_block.attentions.") == std::string::npos || rename == std::end(kRenames)) {
      ++it;
      continue;
    }
    std::string new_name = name.substr(0, prev + 1) + rename->second + name.substr(last);
    if (weights.tensors.count(new_name))
      throw Error(code::kWeights, weights.file + ": both \"" + name + "\" and \"" + new_name + "\" are present");
    torch::Tensor t = it->second;
    // Some exports keep the 1×1 conv shape [C, C, 1, 1] of the original attention block.
    if (t.dim() == 4 && t.size(2) == 1 && t.size(3) == 1) t = t.flatten(1);
    renamed.emplace(std::move(new_name), t);
    it = weights.tensors.erase(it);
  }
  weights.tensors.merge(renamed);
}

}  // namespace ovam
