#include "pipelines/stable_diffusion.h"

#include <filesystem>
#include <random>

#include "pipelines/stable_diffusion_img2img.h"
#include "pipelines/stable_diffusion_xl.h"
#include "schedulers/scheduler.h"
#include "util/errors.h"
#include "util/huge_pages.h"
#include "util/threads.h"

namespace ovam {

namespace fs = std::filesystem;

namespace {

Config component_config(const std::string& folder) {
  fs::path p = fs::path(folder) / "config.json";
  if (!fs::is_regular_file(p)) throw Error(code::kNotFound, folder + ": no config.json (is this a diffusers component folder?)");
  return Config::load(p.string());
}

// Builds the module directly in the load dtype/device so no float32 CPU copy is made first.
template <typename Module, typename Make>
Module build_and_load(const std::string& folder, const LoadOptions& options, Make make, NamedTensors weights,
                      const IgnoredNames& ignored = {}) {
  nn::BuildScope scope(torch::TensorOptions().device(torch::kMeta).dtype(options.dtype), options.matrix_dtype);
  Module module = make();
  load_weights(*module, weights, options, ignored);
  module->eval();
  return module;
}

// diffusers' rescale_noise_cfg: the guided prediction rescaled to the conditional one's standard
// deviation per sample, mixed back by `rescale` (over-exposure fix of Lin et al. 2023, §3.4).
torch::Tensor rescale_noise_cfg(const torch::Tensor& guided, const torch::Tensor& conditional, double rescale) {
  const std::vector<int64_t> dims{1, 2, 3};
  auto rescaled = guided * (conditional.std(dims, /*unbiased=*/true, /*keepdim=*/true) / guided.std(dims, true, true));
  return rescale * rescaled + (1 - rescale) * guided;
}

// The matrix weights' storage: the compute dtype, or a 16-bit one under float32 compute (as
// stable-diffusion.cpp's "f32" keeps its convolution weights in float16). A 16-bit storage under
// 16-bit compute would only round twice, so it is refused.
torch::ScalarType matrix_dtype(const std::string& asked, torch::ScalarType compute, const std::string& compute_asked) {
  if (asked.empty()) return compute;
  const auto storage = parse_dtype(asked);
  if (storage == compute || (compute == torch::kFloat32 && storage != torch::kFloat32)) return storage;
  throw Error(code::kInvalidArgument,
              "weightDtype \"" + asked + "\" does not fit dtype \"" + compute_asked + "\" (computing in " + dtype_name(compute) +
                  "); accepted: the compute dtype itself, or \"float16\" / \"bfloat16\" with dtype \"float32\"");
}

}  // namespace

ClipTextModel load_text_encoder(const std::string& folder, const LoadOptions& options) {
  auto config = ClipTextConfig::from(component_config(folder));
  return build_and_load<ClipTextModel>(folder, options, [&] { return make_clip_text_model(config); }, read_weights(folder),
                                       ClipTextModelImpl::ignored_tensors());
}

UNet2DConditionModel load_unet(const std::string& folder, const LoadOptions& options, const std::string& weights) {
  auto config = UNetConfig::from(component_config(folder));
  return build_and_load<UNet2DConditionModel>(folder, options, [&] { return UNet2DConditionModel(config); },
                                              read_weights(weights.empty() ? folder : weights));
}

AutoencoderKL load_vae(const std::string& folder, const LoadOptions& options) {
  auto config = VaeConfig::from(component_config(folder));
  auto weights = read_weights(folder);
  AutoencoderKLImpl::remap_legacy_names(weights);
  return build_and_load<AutoencoderKL>(folder, options, [&] { return AutoencoderKL(config); }, std::move(weights));
}


std::shared_ptr<StableDiffusion> StableDiffusion::load(const std::string& folder, const PipelineOptions& options) {
  if (!fs::is_directory(folder)) throw Error(code::kNotFound, folder + ": no such model folder");
  const fs::path root(folder);
  if (!fs::is_regular_file(root / "model_index.json"))
    throw Error(code::kNotFound, folder + ": no model_index.json (expected a diffusers Stable Diffusion folder)");
  const auto model_index = Config::load((root / "model_index.json").string());
  // The count is process-wide; the last load's setting wins.
  set_intra_op_threads(options.threads);

  const bool xl = model_index.get_string("_class_name", "") == "StableDiffusionXLPipeline" || model_index.has("text_encoder_2");
  std::shared_ptr<StableDiffusion> sd = xl ? std::make_shared<StableDiffusionXL>() : std::make_shared<StableDiffusion>();
  sd->folder = folder;
  sd->device = parse_device(options.device);
  sd->dtype = options.dtype == "auto" ? auto_dtype(sd->device) : parse_dtype(options.dtype);
  sd->weight_dtype = matrix_dtype(options.weight_dtype, sd->dtype, options.dtype);
  sd->text_key_cache.set_capacity(options.text_key_cache_bytes);
  LoadOptions load{sd->device, sd->dtype, true};
  if (sd->weight_dtype != sd->dtype) load.matrix_dtype = sd->weight_dtype;
  sd->load_components(root, load, model_index);
  sd->set_attention_block_bytes(options.attention_block_bytes);
  return sd;
}

void StableDiffusion::set_attention_block_bytes(int64_t bytes) {
  if (bytes < 0) throw Error(code::kInvalidArgument, "attention block bytes must be ≥ 0 (0: whole matrices), got " + std::to_string(bytes));
  attention_block_bytes = bytes;
  ovam::set_attention_block_bytes_of(*unet, bytes);
  ovam::set_attention_block_bytes_of(*vae, bytes);
}

void StableDiffusion::load_components(const fs::path& root, const LoadOptions& load, const Config&) {
  tokenizer = ClipTokenizer::from_folder((root / "tokenizer").string());
  text_encoder = load_text_encoder((root / "text_encoder").string(), load);
  unet = load_unet((root / "unet").string(), load);
  // The VAE decodes in float32 on float16 checkpoints' advice (force_upcast) unless bfloat16.
  LoadOptions vae_load = load;
  if (dtype == torch::kFloat16) vae_load.dtype = torch::kFloat32;
  vae = load_vae((root / "vae").string(), vae_load);
  auto scheduler_file = root / "scheduler" / "scheduler_config.json";
  scheduler_config = std::make_shared<Config>(Config::load(scheduler_file.string()));
  scheduler_class = scheduler_config->get_string("_class_name", "PNDMScheduler");
  make_scheduler(scheduler_class, *scheduler_config);  // rejects an unsupported scheduler now, not mid-generation
}

int64_t StableDiffusion::vae_scale_factor() const {
  return int64_t(1) << (vae->config().block_out_channels.size() - 1);
}

torch::Tensor StableDiffusion::encode_prompt(const std::string& text) {
  torch::NoGradGuard no_grad;
  return text_encoder->forward(torch::tensor(tokenizer.encode_padded(text), torch::kInt64).unsqueeze(0).to(device));
}

Conditioning StableDiffusion::condition(const GenerateOptions& options, int64_t, int64_t, bool guided) {
  auto cond = encode_prompt(options.prompt);
  if (!guided) return {cond, {}};
  return {torch::cat({encode_prompt(options.negative_prompt.value_or("")), cond}), {}};
}

torch::Tensor StableDiffusion::encode_window(const torch::Tensor& ids) { return text_encoder->forward(ids)[0]; }

torch::Tensor StableDiffusion::encode_tokens(const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  const size_t window = ClipTokenizer::kContextLength;
  auto encode = [&](const std::vector<int64_t>& part) {
    return encode_window(torch::tensor(part, torch::kInt64).unsqueeze(0).to(device));
  };
  if (ids.size() <= window) return encode(ids);
  // Content tokens in windows of 75, each framed by bos/eos as the encoder was trained; the
  // result keeps one bos, every content token and the final eos.
  std::vector<torch::Tensor> rows;
  const size_t content = window - 2;
  for (size_t begin = 1; begin + 1 < ids.size(); begin += content) {
    size_t end = std::min(begin + content, ids.size() - 1);
    std::vector<int64_t> part{tokenizer.bos_id()};
    part.insert(part.end(), ids.begin() + begin, ids.begin() + end);
    part.push_back(tokenizer.eos_id());
    auto out = encode(part);
    if (rows.empty()) rows.push_back(out.slice(0, 0, 1));
    rows.push_back(out.slice(0, 1, out.size(0) - 1));
    if (end == ids.size() - 1) rows.push_back(out.slice(0, out.size(0) - 1));
  }
  return torch::cat(rows);
}

std::shared_ptr<const TextKeys> StableDiffusion::text_keys(const std::vector<int64_t>& ids) {
  return text_key_cache.get(ids, [&] { return ovam::text_keys(*unet, encode_tokens(ids)); });
}

Generation StableDiffusion::generate(const GenerateOptions& options, const Progress& progress) {
  torch::NoGradGuard no_grad;
  const int64_t factor = vae_scale_factor();
  const bool from_image = options.init_image.defined();  // img2img
  if (from_image) img2img::check_image(options.init_image);
  const int64_t default_side = unet->config().sample_size * factor;
  const int64_t height = options.height > 0 ? options.height : from_image ? options.init_image.size(0) : default_side;
  const int64_t width = options.width > 0 ? options.width : from_image ? options.init_image.size(1) : default_side;
  if (height % factor || width % factor)
    throw Error(code::kInvalidArgument, "width and height must be multiples of " + std::to_string(factor) + " (got " +
                                            std::to_string(width) + "×" + std::to_string(height) + ")");
  if (options.steps < 1) throw Error(code::kInvalidArgument, "steps must be at least 1");
  if (from_image && (options.init_image.size(0) != height || options.init_image.size(1) != width))
    throw Error(code::kInvalidArgument, "the init image is " + std::to_string(options.init_image.size(1)) + "×" +
                                            std::to_string(options.init_image.size(0)) + " but the output is " +
                                            std::to_string(width) + "×" + std::to_string(height));
  if (from_image && options.latents.defined())
    throw Error(code::kInvalidArgument, "img2img draws its noise from the seed; latents are not accepted with an init image");

  auto scheduler = make_scheduler(options.scheduler.empty() ? scheduler_class : options.scheduler, *scheduler_config);
  scheduler->set_timesteps(options.steps);
  const auto& timesteps = scheduler->timesteps();
  const size_t first = from_image ? img2img::first_step(options.steps, options.strength, timesteps.size()) : 0;
  scheduler->begin_at(first);

  const double guidance = options.guidance_scale.value_or(default_guidance_scale());
  const bool guided = guidance > 1.0;  // diffusers skips CFG at scale ≤ 1
  const auto conditioning = condition(options, height, width, guided);

  const std::vector<int64_t> shape{1, unet->config().in_channels, height / factor, width / factor};
  // torch.Generator().manual_seed(seed) on the CPU, as diffusers draws from it.
  auto generator = at::detail::createCPUGenerator(options.seed.value_or(std::random_device{}()));
  torch::Tensor latents;
  if (from_image && options.start_latents.defined()) {
    if (options.start_latents.sizes().vec() != shape)
      throw Error(code::kInvalidArgument, "start latents must have shape [1, " + std::to_string(shape[1]) + ", " +
                                              std::to_string(shape[2]) + ", " + std::to_string(shape[3]) + "]");
    latents = options.start_latents.to(device, torch::kFloat32);
  } else if (from_image) {
    latents = img2img::prepare_latents(*vae, options.init_image, *scheduler, first, generator, device);
  } else {
    torch::Tensor noise;
    if (options.latents.defined()) {
      if (options.latents.sizes().vec() != shape)
        throw Error(code::kInvalidArgument, "latents must have shape [1, " + std::to_string(shape[1]) + ", " +
                                                std::to_string(shape[2]) + ", " + std::to_string(shape[3]) + "]");
      noise = options.latents.to(torch::kFloat32);
    } else {
      noise = torch::randn(shape, generator, torch::kFloat32);
    }
    latents = (noise * scheduler->init_noise_sigma()).to(device, torch::kFloat32);
  }
  auto start_latents = latents.to(torch::kCPU);

  const std::vector<double> run(timesteps.begin() + static_cast<std::ptrdiff_t>(first), timesteps.end());
  const auto total = static_cast<int64_t>(run.size());
  auto store = std::make_shared<AttentionStore>(options.capture, total);
  const bool observe = options.capture.enabled || options.capture.self_attention.enabled;
  for (int64_t k = 0; k < total; ++k) {
    const size_t i = first + static_cast<size_t>(k);
    if (progress.cancel && progress.cancel->load()) throw Error(code::kAborted, "generation aborted at step " + std::to_string(k));
    auto input = guided ? torch::cat({latents, latents}) : latents;
    input = scheduler->scale_model_input(input, i);
    store->begin_step(k, guided ? 2 : 1);
    auto t = torch::tensor(timesteps[i], torch::kFloat32).to(device);
    auto eps = unet->forward(input.to(dtype), t, conditioning.context, observe ? store.get() : nullptr,
                             conditioning.added)
                   .to(torch::kFloat32);
    if (guided) {
      auto parts = eps.chunk(2);
      eps = parts[0] + guidance * (parts[1] - parts[0]);
      if (options.guidance_rescale > 0) eps = rescale_noise_cfg(eps, parts[1], options.guidance_rescale);
    }
    latents = scheduler->step(eps, i, latents);
    // NaN or infinite latents decode to a flat image without any error: stop at the first.
    if (!torch::isfinite(latents).all().item<bool>())
      throw Error(code::kInvalidArgument, "the latents became NaN or infinite at step " + std::to_string(k + 1) + " of " +
                                              std::to_string(total) + " (steps " + std::to_string(options.steps) + ", guidance scale " +
                                              std::to_string(guidance) + "); try fewer steps, another scheduler or a smaller guidance scale");
    if (progress.on_step) progress.on_step(k + 1, total);
  }
  store->finish();

  Generation g;
  g.options = options;
  g.options.width = width;
  g.options.height = height;
  g.options.guidance_scale = guidance;
  g.latents = latents.to(torch::kCPU);
  g.start_latents = start_latents;
  release_cached_pages();  // the steps' freed mappings: the decoder's maps are other sizes
  auto decoded = vae->decode((latents / vae->config().scaling_factor).to(vae->dtype()));
  g.image = (decoded.to(torch::kFloat32) / 2 + 0.5).clamp(0, 1)[0].permute({1, 2, 0}).contiguous().to(torch::kCPU);
  release_cached_pages();  // the decoder's: nothing held between jobs
  g.store = store;
  g.timesteps = run;
  return g;
}

}  // namespace ovam
