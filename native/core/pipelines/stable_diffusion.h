// The one way through the engine: tokenizer → text encoder → UNet (with attention capture) →
// scheduler → VAE, loaded from a diffusers folder.
#pragma once
#include <torch/torch.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "models/autoencoder_kl.h"
#include "models/unet_2d_condition.h"
#include "ovam/attention_store.h"
#include "transformers/clip_text_model.h"
#include "transformers/clip_tokenizer.h"
#include "util/json.h"
#include "util/weights.h"

namespace ovam {

struct PipelineOptions {
  std::string device = "cpu";
  std::string dtype = "float32";
  int threads = 0;  // intra-op threads; 0 = the machine's cores
};

struct GenerateOptions {
  std::string prompt, negative_prompt;
  int64_t steps = 50;
  double guidance_scale = 7.5;
  int64_t width = 0, height = 0;  // 0 = the UNet's sample_size × VAE scale factor
  std::optional<uint64_t> seed;   // initial noise as torch.Generator().manual_seed(seed) on the CPU
  torch::Tensor latents;          // or the noise itself [1, 4, h, w] (before init_noise_sigma)
  std::string scheduler;          // empty = the model folder's
  CaptureOptions capture;
  // img2img (pipelines/stable_diffusion_img2img.h): the picture to start from, RGB uint8
  // [height, width, 3] (its size is the output's), and how much of the schedule runs over it.
  torch::Tensor init_image;
  double strength = 0.8;
  // img2img from these noised start latents [1, 4, h, w] instead of the picture's encoding noised
  // from the seed (a recorded Generation::start_latents; the picture is still recorded).
  torch::Tensor start_latents;
};

struct Generation {
  GenerateOptions options;
  torch::Tensor latents;      // final latents [1, 4, h, w] (float32, CPU)
  torch::Tensor start_latents;  // what the loop began from: scaled noise, or the noised picture (CPU)
  torch::Tensor image;        // [H, W, 3] float32 in [0, 1] (CPU)
  std::shared_ptr<AttentionStore> store;
  std::vector<double> timesteps;  // the timesteps run (img2img: the tail of the schedule)
};

// Progress and cancellation: called after each step; the flag is polled between steps and blocks.
struct Progress {
  std::function<void(int64_t step, int64_t total)> on_step;
  const std::atomic<bool>* cancel = nullptr;
};

// Each component from its folder (config.json + weights); `weights` overrides the weights file
// (a .safetensors or a TorchScript archive).
ClipTextModel load_text_encoder(const std::string& folder, const LoadOptions& options);
UNet2DConditionModel load_unet(const std::string& folder, const LoadOptions& options, const std::string& weights = "");
AutoencoderKL load_vae(const std::string& folder, const LoadOptions& options);

class StableDiffusion {
 public:
  static std::shared_ptr<StableDiffusion> load(const std::string& folder, const PipelineOptions& options);

  // Padded ids → last hidden state [1, 77, D] (prompts: diffusers truncates at 77 tokens).
  torch::Tensor encode_ids(const std::vector<int64_t>& padded_ids);
  torch::Tensor encode_prompt(const std::string& text);
  // Unpadded ids (bos … eos) → [T, D], as OVAM encodes attribution texts; texts over 77 tokens are
  // encoded in windows of 75 and joined, so any length works.
  torch::Tensor encode_tokens(const std::vector<int64_t>& ids);
  Generation generate(const GenerateOptions& options, const Progress& progress = {});
  int64_t vae_scale_factor() const;

  std::string folder;
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  ClipTokenizer tokenizer;
  ClipTextModel text_encoder{nullptr};
  UNet2DConditionModel unet{nullptr};
  AutoencoderKL vae{nullptr};
  std::string scheduler_class;
  std::shared_ptr<Config> scheduler_config;
};

}  // namespace ovam
