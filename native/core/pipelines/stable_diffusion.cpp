#include "pipelines/stable_diffusion.h"

#include <filesystem>
#include <random>
#include <thread>

#include "schedulers/scheduler.h"
#include "util/errors.h"

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
  nn::BuildScope scope(torch::TensorOptions().device(torch::kMeta).dtype(options.dtype));
  Module module = make();
  load_weights(*module, weights, options, ignored);
  module->eval();
  return module;
}

}  // namespace

ClipTextModel load_text_encoder(const std::string& folder, const LoadOptions& options) {
  auto config = ClipTextConfig::from(component_config(folder));
  return build_and_load<ClipTextModel>(folder, options, [&] { return ClipTextModel(config); }, read_weights(folder),
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
  if (!fs::is_regular_file(fs::path(folder) / "model_index.json"))
    throw Error(code::kNotFound, folder + ": no model_index.json (expected a diffusers Stable Diffusion folder)");
  // Threads are process-wide in libtorch; the last load's setting wins.
  int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(std::max(1, threads));

  auto sd = std::make_shared<StableDiffusion>();
  sd->folder = folder;
  sd->device = parse_device(options.device);
  sd->dtype = parse_dtype(options.dtype);
  LoadOptions load{sd->device, sd->dtype, true};
  const fs::path root(folder);
  sd->tokenizer = ClipTokenizer::from_folder((root / "tokenizer").string());
  sd->text_encoder = load_text_encoder((root / "text_encoder").string(), load);
  sd->unet = load_unet((root / "unet").string(), load);
  // The VAE decodes in float32 on float16 checkpoints' advice (force_upcast) unless bfloat16.
  LoadOptions vae_load = load;
  if (sd->dtype == torch::kFloat16) vae_load.dtype = torch::kFloat32;
  sd->vae = load_vae((root / "vae").string(), vae_load);
  auto scheduler_file = root / "scheduler" / "scheduler_config.json";
  sd->scheduler_config = std::make_shared<Config>(Config::load(scheduler_file.string()));
  sd->scheduler_class = sd->scheduler_config->get_string("_class_name", "PNDMScheduler");
  make_scheduler(sd->scheduler_class, *sd->scheduler_config);  // rejects an unsupported scheduler now, not mid-generation
  return sd;
}

int64_t StableDiffusion::vae_scale_factor() const {
  return int64_t(1) << (vae->config().block_out_channels.size() - 1);
}

torch::Tensor StableDiffusion::encode_ids(const std::vector<int64_t>& padded_ids) {
  torch::NoGradGuard no_grad;
  auto ids = torch::tensor(padded_ids, torch::kInt64).unsqueeze(0).to(device);
  return text_encoder->forward(ids);
}

torch::Tensor StableDiffusion::encode_prompt(const std::string& text) {
  return encode_ids(tokenizer.encode_padded(text));
}

torch::Tensor StableDiffusion::encode_tokens(const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  const size_t window = ClipTokenizer::kContextLength;
  auto encode = [&](const std::vector<int64_t>& part) {
    return text_encoder->forward(torch::tensor(part, torch::kInt64).unsqueeze(0).to(device))[0];
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

Generation StableDiffusion::generate(const GenerateOptions& options, const Progress& progress) {
  torch::NoGradGuard no_grad;
  const int64_t factor = vae_scale_factor();
  const int64_t height = options.height > 0 ? options.height : unet->config().sample_size * factor;
  const int64_t width = options.width > 0 ? options.width : unet->config().sample_size * factor;
  if (height % factor || width % factor)
    throw Error(code::kInvalidArgument, "width and height must be multiples of " + std::to_string(factor) + " (got " +
                                            std::to_string(width) + "×" + std::to_string(height) + ")");
  if (options.steps < 1) throw Error(code::kInvalidArgument, "steps must be at least 1");

  auto scheduler = make_scheduler(options.scheduler.empty() ? scheduler_class : options.scheduler, *scheduler_config);
  scheduler->set_timesteps(options.steps);
  const auto& timesteps = scheduler->timesteps();

  const bool guided = options.guidance_scale > 1.0;  // diffusers skips CFG at scale ≤ 1
  auto cond = encode_prompt(options.prompt);
  auto context = guided ? torch::cat({encode_prompt(options.negative_prompt), cond}) : cond;

  const std::vector<int64_t> shape{1, unet->config().in_channels, height / factor, width / factor};
  torch::Tensor noise;
  if (options.latents.defined()) {
    if (options.latents.sizes().vec() != shape)
      throw Error(code::kInvalidArgument, "latents must have shape [1, " + std::to_string(shape[1]) + ", " +
                                              std::to_string(shape[2]) + ", " + std::to_string(shape[3]) + "]");
    noise = options.latents.to(torch::kFloat32);
  } else {
    // torch.Generator().manual_seed(seed) on the CPU, as diffusers draws it.
    auto generator = at::detail::createCPUGenerator(options.seed.value_or(std::random_device{}()));
    noise = torch::randn(shape, generator, torch::kFloat32);
  }
  auto latents = (noise * scheduler->init_noise_sigma()).to(device, torch::kFloat32);

  auto store = std::make_shared<AttentionStore>(options.capture, static_cast<int64_t>(timesteps.size()));
  const int64_t total = static_cast<int64_t>(timesteps.size());
  for (int64_t i = 0; i < total; ++i) {
    if (progress.cancel && progress.cancel->load()) throw Error(code::kAborted, "generation aborted at step " + std::to_string(i));
    auto input = guided ? torch::cat({latents, latents}) : latents;
    input = scheduler->scale_model_input(input, i);
    store->begin_step(i, guided ? 2 : 1);
    auto t = torch::tensor(timesteps[i], torch::kFloat32).to(device);
    auto eps = unet->forward(input.to(dtype), t, context, options.capture.enabled ? store.get() : nullptr).to(torch::kFloat32);
    if (guided) {
      auto parts = eps.chunk(2);
      eps = parts[0] + options.guidance_scale * (parts[1] - parts[0]);
    }
    latents = scheduler->step(eps, i, latents);
    // NaN or infinite latents decode to a flat image without any error: stop at the first.
    if (!torch::isfinite(latents).all().item<bool>())
      throw Error(code::kInvalidArgument, "the latents became NaN or infinite at step " + std::to_string(i + 1) + " of " +
                                              std::to_string(total) + " (steps " + std::to_string(options.steps) + ", guidance scale " +
                                              std::to_string(options.guidance_scale) + "); try fewer steps, another scheduler or a smaller guidance scale");
    if (progress.on_step) progress.on_step(i + 1, total);
  }
  store->finish();

  Generation g;
  g.options = options;
  g.options.width = width;
  g.options.height = height;
  g.latents = latents.to(torch::kCPU);
  auto decoded = vae->decode((latents / vae->config().scaling_factor).to(vae->parameters()[0].scalar_type()));
  g.image = (decoded.to(torch::kFloat32) / 2 + 0.5).clamp(0, 1)[0].permute({1, 2, 0}).contiguous().to(torch::kCPU);
  g.store = store;
  g.timesteps = timesteps;
  return g;
}

}  // namespace ovam
