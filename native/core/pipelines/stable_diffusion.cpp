#include "pipelines/stable_diffusion.h"

#include <filesystem>

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

}  // namespace ovam
