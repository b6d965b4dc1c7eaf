#include "pipelines/stable_diffusion_img2img.h"

#include <cmath>
#include <string>

#include "util/errors.h"

namespace ovam::img2img {

void check_image(const torch::Tensor& image) {
  if (image.scalar_type() != torch::kUInt8 || image.dim() != 3 || image.size(2) != 3 || image.size(0) < 1 || image.size(1) < 1)
    throw Error(code::kInvalidArgument, "the init image must be RGB uint8 [height, width, 3]");
}

torch::Tensor preprocess(const torch::Tensor& image) {
  check_image(image);
  auto x = image.to(torch::kFloat32) / 255.f;
  return (x * 2.f - 1.f).permute({2, 0, 1}).unsqueeze(0).contiguous();
}

size_t first_step(int64_t steps, double strength, size_t timestep_count) {
  if (!(strength > 0.0 && strength <= 1.0))
    throw Error(code::kInvalidArgument, "strength must be in (0, 1], got " + std::to_string(strength));
  // Python's int() of the double product, as diffusers computes it.
  const auto kept = std::min(static_cast<int64_t>(double(steps) * strength), steps);
  if (kept < 1)
    throw Error(code::kInvalidArgument, "strength " + std::to_string(strength) + " with " + std::to_string(steps) +
                                            " steps runs no denoising step (int(steps × strength) = 0); raise steps or strength");
  // Every implemented scheduler has order 1: the index is the number of skipped steps.
  const auto first = static_cast<size_t>(steps - kept);
  if (first >= timestep_count)
    throw Error(code::kInvalidArgument, "strength " + std::to_string(strength) + " leaves no timestep of the scheduler's " +
                                            std::to_string(timestep_count));
  return first;
}

torch::Tensor prepare_latents(AutoencoderKLImpl& vae, const torch::Tensor& image, const Scheduler& scheduler, size_t first,
                              at::Generator& generator, const torch::Device& device) {
  const auto vae_dtype = vae.dtype();
  const auto posterior = vae.encode(preprocess(image).to(device, vae_dtype));
  const auto mean = posterior.first.to(torch::kFloat32), deviation = posterior.second.to(torch::kFloat32);
  // DiagonalGaussianDistribution.sample draws on the generator's device (the CPU) first.
  auto sample = torch::randn(mean.sizes(), generator, torch::kFloat32).to(device);
  auto latents = (mean + deviation * sample) * vae.config().scaling_factor;
  auto noise = torch::randn(latents.sizes(), generator, torch::kFloat32).to(device);
  return scheduler.add_noise(latents, noise, first);
}

}  // namespace ovam::img2img
