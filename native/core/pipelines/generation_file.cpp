#include "pipelines/generation_file.h"

#include <functional>
#include <map>

#include "util/errors.h"
#include "util/safetensors.h"

namespace ovam {

namespace {
constexpr const char* kFormat = "ovam.generation/1";

std::string self_attention_tensor(int64_t height, int64_t width) {
  return "self_attention." + std::to_string(height) + "x" + std::to_string(width);
}

// The self-attention means a file holds, or null where it has none (files from before, or
// generations made without capture.self_attention).
std::shared_ptr<SelfAttentionStore> load_self_attention(const Json& meta, SafetensorsFile& file, const torch::Device& device,
                                                        const std::function<Error(const std::string&)>& fail) {
  if (!meta.contains("self_attention")) return nullptr;
  const Json& j = meta.at("self_attention");
  SelfAttentionOptions options;
  options.enabled = true;
  options.branch = j.at("branch").get<std::string>();
  options.sides = j.at("sides").get<std::vector<int64_t>>();
  std::vector<SelfAttentionGrid> grids;
  for (const auto& jg : j.at("grids")) {
    SelfAttentionGrid grid;
    grid.height = jg.at("height").get<int64_t>();
    grid.width = jg.at("width").get<int64_t>();
    grid.calls = jg.at("calls").get<int64_t>();
    const int64_t n = grid.height * grid.width;
    grid.matrix = file.tensor(self_attention_tensor(grid.height, grid.width)).to(device, torch::kFloat32).clone();
    if (grid.matrix.sizes().vec() != std::vector<int64_t>{n, n})
      throw fail("self-attention " + self_attention_tensor(grid.height, grid.width) + " has the wrong shape");
    grids.push_back(std::move(grid));
  }
  return SelfAttentionStore::from_grids(std::move(options), std::move(grids));
}
}  // namespace

void save_generation(const std::string& path, const Generation& g, const std::string& user_metadata) {
  Json meta;
  meta["format"] = kFormat;
  meta["prompt"] = g.options.prompt;
  meta["negative_prompt"] = g.options.negative_prompt ? Json(*g.options.negative_prompt) : Json(nullptr);
  meta["steps"] = g.options.steps;
  meta["guidance_scale"] = g.options.guidance_scale.value_or(0);  // generate() records the one it used
  meta["guidance_rescale"] = g.options.guidance_rescale;
  meta["width"] = g.options.width;
  meta["height"] = g.options.height;
  if (g.options.seed) meta["seed"] = *g.options.seed;
  meta["scheduler"] = g.options.scheduler;
  meta["timesteps"] = g.timesteps;
  const auto& capture = g.store->options();
  meta["capture"] = {{"enabled", capture.enabled},
                     {"mid_block", capture.mid_block},
                     {"branch", capture.branch},
                     {"dtype", dtype_name(capture.dtype)},
                     {"streaming", capture.streaming},
                     {"steps", g.store->total_steps()}};
  std::vector<std::pair<std::string, torch::Tensor>> tensors{{"image", g.image}, {"latents", g.latents}};
  if (g.options.init_image.defined()) {
    meta["strength"] = g.options.strength;
    tensors.emplace_back("init_image", g.options.init_image);
  }
  Json blocks = Json::array();
  for (const auto& b : g.store->blocks()) {
    blocks.push_back({{"name", b.name}, {"heads", b.heads}, {"head_dim", b.head_dim}, {"height", b.height},
                      {"width", b.width}, {"scale", b.scale}, {"steps", b.steps}});
    tensors.emplace_back("queries." + b.name, b.queries);
  }
  meta["blocks"] = blocks;
  if (const auto& sa = g.store->self_attention()) {
    Json grids = Json::array();
    for (const auto& grid : sa->grids()) {
      grids.push_back({{"height", grid.height}, {"width", grid.width}, {"calls", grid.calls}});
      tensors.emplace_back(self_attention_tensor(grid.height, grid.width), grid.matrix);
    }
    meta["self_attention"] = {{"branch", sa->options().branch}, {"sides", sa->options().sides}, {"grids", grids}};
  }
  save_safetensors(path, tensors, {{"ovam", meta.dump()}, {"user", user_metadata}});
}

Generation load_generation(const std::string& path, StableDiffusion& pipeline, std::string* user_metadata) {
  auto file = SafetensorsFile::open(path);
  auto fail = [&](const std::string& why) -> Error { return Error(code::kInvalidArgument, path + ": " + why); };
  auto it = file->metadata().find("ovam");
  if (it == file->metadata().end()) throw fail("not an ovam generation file (no \"ovam\" metadata)");
  Json meta = Json::parse(it->second, nullptr, false);
  if (meta.is_discarded() || !meta.is_object() || meta.value("format", "") != kFormat)
    throw fail(std::string("unknown generation format (expected ") + kFormat + ")");
  try {
    Generation g;
    g.options.prompt = meta.at("prompt").get<std::string>();
    // null: no negative prompt (SDXL then conditions on zeros).
    if (!meta.at("negative_prompt").is_null()) g.options.negative_prompt = meta["negative_prompt"].get<std::string>();
    g.options.steps = meta.at("steps").get<int64_t>();
    g.options.guidance_scale = meta.at("guidance_scale").get<double>();
    g.options.guidance_rescale = meta.value("guidance_rescale", 0.0);  // files from before it existed
    g.options.width = meta.at("width").get<int64_t>();
    g.options.height = meta.at("height").get<int64_t>();
    if (meta.contains("seed")) g.options.seed = meta["seed"].get<uint64_t>();
    g.options.scheduler = meta.at("scheduler").get<std::string>();
    g.timesteps = meta.at("timesteps").get<std::vector<double>>();
    const Json& c = meta.at("capture");
    CaptureOptions capture;
    capture.enabled = c.at("enabled").get<bool>();
    capture.mid_block = c.at("mid_block").get<bool>();
    capture.branch = c.at("branch").get<std::string>();
    capture.streaming = c.at("streaming").get<bool>();
    g.options.capture = capture;
    if (meta.contains("strength")) {
      g.options.strength = meta["strength"].get<double>();
      g.options.init_image = file->tensor("init_image").clone();
    }
    g.image = file->tensor("image").clone();
    g.latents = file->tensor("latents").clone();

    std::map<std::string, Attention> attentions;
    for (auto& [name, attention] : pipeline.unet->cross_attentions()) attentions.emplace(name, attention);
    std::vector<StoredBlock> blocks;
    for (const auto& jb : meta.at("blocks")) {
      StoredBlock b;
      b.name = jb.at("name").get<std::string>();
      b.heads = jb.at("heads").get<int64_t>();
      b.head_dim = jb.at("head_dim").get<int64_t>();
      b.height = jb.at("height").get<int64_t>();
      b.width = jb.at("width").get<int64_t>();
      b.scale = jb.at("scale").get<double>();
      b.steps = jb.at("steps").get<int64_t>();
      auto a = attentions.find(b.name);
      if (a == attentions.end() || a->second->heads != b.heads || a->second->head_dim != b.head_dim)
        throw fail("block " + b.name + " does not match this pipeline's UNet (was it made with another model?)");
      b.queries = file->tensor("queries." + b.name).to(pipeline.device).clone();
      if (b.queries.dim() != 4 || b.queries.size(0) != b.heads || b.queries.size(2) != b.height * b.width ||
          b.queries.size(3) != b.head_dim)
        throw fail("queries of block " + b.name + " have the wrong shape");
      capture.dtype = b.queries.scalar_type();
      blocks.push_back(std::move(b));
    }
    auto self_attention = load_self_attention(meta, *file, pipeline.device, fail);
    if (self_attention) capture.self_attention = self_attention->options();
    g.store = AttentionStore::from_blocks(capture, c.at("steps").get<int64_t>(), std::move(blocks), std::move(self_attention));
    if (user_metadata) {
      auto u = file->metadata().find("user");
      *user_metadata = u == file->metadata().end() ? "{}" : u->second;
    }
    return g;
  } catch (const Json::exception& e) {
    throw fail(std::string("malformed generation metadata: ") + e.what());
  }
}

}  // namespace ovam
