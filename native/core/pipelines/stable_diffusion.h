// The one way through the engine: tokenizer → text encoder → UNet (with attention capture) →
// scheduler → VAE, loaded from a diffusers folder. SDXL (stable_diffusion_xl.h) changes only the
// text encoding and the UNet's added conditions; the loop, capture and attribution are these.
#pragma once
#include <torch/torch.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "models/autoencoder_kl.h"
#include "models/unet_2d_condition.h"
#include "ovam/attention_store.h"
#include "ovam/text_keys.h"
#include "transformers/clip_text_model.h"
#include "transformers/clip_tokenizer.h"
#include "util/json.h"
#include "util/weights.h"

namespace ovam {

struct PipelineOptions {
  std::string device = "cpu";
  std::string dtype = "float32";  // or "auto": bfloat16 where the device computes it natively (auto_dtype)
  // Storage of the matrix weights (linear and convolution), widened per layer on use: "" = dtype;
  // "float16" or "bfloat16" under float32 compute halves the weights' memory.
  std::string weight_dtype;
  int threads = 0;  // intra-op threads; 0 = the machine's cores
  int64_t text_key_cache_bytes = int64_t(64) << 20;  // recent texts' attribution keys (0: none)
  int64_t attention_block_bytes = AttentionImpl::kDefaultMaxScoreBytes;  // largest scores formed at once (0: no limit)
};

struct GenerateOptions {
  std::string prompt;
  // Absent: SD encodes "" (as diffusers); SDXL with force_zeros_for_empty_prompt uses zeros, while
  // an explicit "" is encoded.
  std::optional<std::string> negative_prompt;
  int64_t steps = 50;
  std::optional<double> guidance_scale;  // absent = the pipeline's default (SD 7.5, SDXL 5.0)
  // diffusers' guidance_rescale (rescale_noise_cfg, Lin et al. 2023, §3.4): 0 = off.
  double guidance_rescale = 0;
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

// What the UNet is conditioned on, one row per CFG branch ([unconditional; conditional] with guidance).
struct Conditioning {
  torch::Tensor context;  // encoder_hidden_states [B, 77, D]
  AddedConditions added;  // SDXL's pooled text and size conditions (undefined for SD 1.x/2.x)
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
  virtual ~StableDiffusion() = default;
  // SD 1.x/2.x, or SDXL when model_index.json names StableDiffusionXLPipeline.
  static std::shared_ptr<StableDiffusion> load(const std::string& folder, const PipelineOptions& options);

  // The prompt's encoder_hidden_states [1, 77, D] (diffusers truncates prompts at 77 tokens).
  virtual torch::Tensor encode_prompt(const std::string& text);
  // Unpadded ids (bos … eos) → [T, D], as OVAM encodes attribution texts; texts over 77 tokens are
  // encoded in windows of 75 and joined, so any length works.
  torch::Tensor encode_tokens(const std::vector<int64_t>& ids);
  // The text's embeddings and keys in every cross-attention block, from the cache when recent.
  std::shared_ptr<const TextKeys> text_keys(const std::vector<int64_t>& ids);
  // The UNet's conditioning for a generation of height × width.
  virtual Conditioning condition(const GenerateOptions& options, int64_t height, int64_t width, bool guided);
  Generation generate(const GenerateOptions& options, const Progress& progress = {});
  int64_t vae_scale_factor() const;
  // Caps every attention's score matrix (UNet and VAE) at `bytes`, a block of queries at a time;
  // 0 forms whole matrices.
  void set_attention_block_bytes(int64_t bytes);
  // Width of the text embeddings the UNet attends to (attribution and optimised tokens use it).
  int64_t context_dim() const { return unet->config().cross_attention_dim; }
  virtual double default_guidance_scale() const { return 7.5; }

  std::string folder;
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  torch::ScalarType weight_dtype = torch::kFloat32;  // the matrix weights' storage (PipelineOptions)
  ClipTokenizer tokenizer;
  ClipTextModel text_encoder{nullptr};
  UNet2DConditionModel unet{nullptr};
  AutoencoderKL vae{nullptr};
  std::string scheduler_class;
  std::shared_ptr<Config> scheduler_config;
  TextKeyCache text_key_cache;
  int64_t attention_block_bytes = AttentionImpl::kDefaultMaxScoreBytes;

 protected:
  // Each component of the folder (model_index.json given); SDXL adds its second encoder.
  virtual void load_components(const std::filesystem::path& root, const LoadOptions& load, const Config& model_index);
  // One window of unpadded ids [1, T] → [T, D].
  virtual torch::Tensor encode_window(const torch::Tensor& ids);
};

}  // namespace ovam
