// diffusers' timestep embeddings: Timesteps (the sinusoidal projection, no parameters) and
// TimestepEmbedding (linear_1, SiLU, linear_2).
#pragma once
#include <torch/torch.h>

#include "util/nn.h"

namespace ovam {

// diffusers' get_timestep_embedding (max_period 10000, scale 1): timesteps [B] → [B, dim] float32.
torch::Tensor get_timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                     double downscale_freq_shift);

class TimestepsImpl : public torch::nn::Module {
 public:
  TimestepsImpl(int64_t channels, bool flip_sin_to_cos, double downscale_freq_shift);
  torch::Tensor forward(const torch::Tensor& timesteps);
  int64_t channels;
  bool flip_sin_to_cos;
  double downscale_freq_shift;
};
TORCH_MODULE(Timesteps);

class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in_channels, int64_t time_embed_dim);
  torch::Tensor forward(const torch::Tensor& sample);
  nn::Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

}  // namespace ovam
