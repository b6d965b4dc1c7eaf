#include "models/unet_2d_blocks.h"

namespace ovam {

namespace {
ResnetBlock2D make_resnet(int64_t in_channels, int64_t out_channels, const ResnetSettings& s) {
  return ResnetBlock2D(in_channels, out_channels, s.temb_channels, s.groups, s.eps);
}

// One layer: the ResNet, then the layer's Transformer2DModel where the block has cross-attention.
torch::Tensor layer(nn::List<ResnetBlock2D>& resnets, nn::List<Transformer2DModel>& attentions, size_t i,
                    const torch::Tensor& x, const BlockInputs& in) {
  auto h = resnets[i]->forward(x, in.temb);
  return attentions.empty() ? h : attentions[i]->forward(h, in.context, in.observer);
}
}  // namespace

DownBlock2DImpl::DownBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t layers, const ResnetSettings& resnet,
                                 const std::optional<TransformerSettings>& transformer, bool add_downsample,
                                 int64_t downsample_padding) {
  // diffusers registers attentions before resnets.
  if (transformer) attentions = nn::List<Transformer2DModel>(*this, "attentions");
  resnets = nn::List<ResnetBlock2D>(*this, "resnets");
  for (int64_t i = 0; i < layers; ++i) {
    resnets.push_back(make_resnet(i == 0 ? in_channels : out_channels, out_channels, resnet));
    if (transformer) attentions.push_back(Transformer2DModel(out_channels, *transformer));
  }
  if (add_downsample) {
    downsamplers = nn::List<Downsample2D>(*this, "downsamplers");
    downsamplers.push_back(Downsample2D(out_channels, downsample_padding));
  }
}

torch::Tensor DownBlock2DImpl::forward(torch::Tensor x, const BlockInputs& in, std::vector<torch::Tensor>* skips) {
  for (size_t i = 0; i < resnets.size(); ++i) {
    x = layer(resnets, attentions, i, x, in);
    if (skips) skips->push_back(x);
  }
  for (auto& downsampler : downsamplers) {
    x = downsampler->forward(x);
    if (skips) skips->push_back(x);
  }
  return x;
}

UpBlock2DImpl::UpBlock2DImpl(int64_t prev_channels, int64_t in_channels, int64_t out_channels, int64_t layers,
                             bool skip_connections, const ResnetSettings& resnet,
                             const std::optional<TransformerSettings>& transformer, bool add_upsample) {
  if (transformer) attentions = nn::List<Transformer2DModel>(*this, "attentions");
  resnets = nn::List<ResnetBlock2D>(*this, "resnets");
  for (int64_t i = 0; i < layers; ++i) {
    int64_t channels = i == 0 ? prev_channels : out_channels;
    if (skip_connections) channels += i == layers - 1 ? in_channels : out_channels;
    resnets.push_back(make_resnet(channels, out_channels, resnet));
    if (transformer) attentions.push_back(Transformer2DModel(out_channels, *transformer));
  }
  if (add_upsample) {
    upsamplers = nn::List<Upsample2D>(*this, "upsamplers");
    upsamplers.push_back(Upsample2D(out_channels));
  }
}

torch::Tensor UpBlock2DImpl::forward(torch::Tensor x, const BlockInputs& in, std::vector<torch::Tensor>* skips) {
  for (size_t i = 0; i < resnets.size(); ++i) {
    if (skips) {
      x = torch::cat({x, skips->back()}, 1);
      skips->pop_back();
    }
    x = layer(resnets, attentions, i, x, in);
  }
  for (auto& upsampler : upsamplers) {
    // The next skip connection's size: odd latent sizes round like the down path did.
    x = skips && !skips->empty() ? upsampler->forward(x, skips->back().sizes().slice(2)) : upsampler->forward(x);
  }
  return x;
}

MidBlock2DImpl::MidBlock2DImpl(int64_t channels, const ResnetSettings& resnet,
                               const std::optional<TransformerSettings>& transformer) {
  if (transformer) {
    transformers = nn::List<Transformer2DModel>(*this, "attentions");
    transformers.push_back(Transformer2DModel(channels, *transformer));
  } else {
    attentions = nn::List<Attention>(*this, "attentions");
    attentions.push_back(Attention(channels, resnet.groups, resnet.eps));
  }
  resnets = nn::List<ResnetBlock2D>(*this, "resnets");
  resnets.push_back(make_resnet(channels, channels, resnet));
  resnets.push_back(make_resnet(channels, channels, resnet));
}

torch::Tensor MidBlock2DImpl::forward(torch::Tensor x, const BlockInputs& in) {
  x = resnets[0]->forward(x, in.temb);
  x = transformers.empty() ? attentions[0]->forward(x) : transformers[0]->forward(x, in.context, in.observer);
  return resnets[1]->forward(x, in.temb);
}

}  // namespace ovam
