// StableDiffusionImg2ImgPipeline (diffusers 0.20.2): what img2img does differently from
// text-to-image: the picture's preprocessing, get_timesteps and prepare_latents.
// StableDiffusion::generate runs these when GenerateOptions has an init_image.
#pragma once
#include <torch/torch.h>

#include "models/autoencoder_kl.h"
#include "schedulers/scheduler.h"

namespace ovam::img2img {

// Throws kInvalidArgument unless `image` is uint8 [H, W, 3].
void check_image(const torch::Tensor& image);
// uint8 [H, W, 3] → [1, 3, H, W] float32 in [-1, 1] (VaeImageProcessor: x / 255, then 2x − 1).
torch::Tensor preprocess(const torch::Tensor& image);
// get_timesteps: the index into `timestep_count` timesteps where the run begins, skipping the first
// steps − int(steps · strength). Throws kInvalidArgument for strength outside (0, 1] or when no
// step would run.
size_t first_step(int64_t steps, double strength, size_t timestep_count);
// prepare_latents: the VAE posterior *sample* (the generator's first draw) × scaling_factor, noised
// with the generator's second draw to the level of the scheduler's timestep `first`.
torch::Tensor prepare_latents(AutoencoderKLImpl& vae, const torch::Tensor& image, const Scheduler& scheduler, size_t first,
                              at::Generator& generator, const torch::Device& device);

}  // namespace ovam::img2img
