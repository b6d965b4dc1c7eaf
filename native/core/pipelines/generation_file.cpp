#include "pipelines/generation_file.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>

#include "util/errors.h"
#include "util/safetensors.h"

namespace ovam {

namespace {
constexpr const char* kFormat = "ovam.generation/1";

std::string self_attention_tensor(int64_t height, int64_t width) {
  return "self_attention." + std::to_string(height) + "x" + std::to_string(width);
}

}  // namespace

std::string encode_generation(const Generation& g, const std::string& user_metadata) {
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
  return encode_safetensors(tensors, {{"ovam", meta.dump()}, {"user", user_metadata}});
}

namespace {

// A metadata integer in [min, max]; a float, a string or an out-of-range value is refused (a
// float converted to int64 outside its range is undefined behaviour).
int64_t integer(const Json& object, const char* key, int64_t min, int64_t max) {
  const Json& v = object.at(key);
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(max)) || v.get<int64_t>() < min ||
      v.get<int64_t>() > max)
    throw std::invalid_argument(std::string("\"") + key + "\" = " + v.dump() + "; accepted: an integer from " +
                                std::to_string(min) + " to " + std::to_string(max));
  return v.get<int64_t>();
}

std::string shape_text(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

// Bounds on what a generation file may declare, well above any real model and image: sizes in
// pixels and latent cells, heads and head widths, denoising steps.
constexpr int64_t kMaxSide = 16384, kMaxHeads = 1024, kMaxHeadDim = 4096, kMaxSteps = 100000;

// The self-attention means a file holds, or null where it has none (files from before, or
// generations made without capture.self_attention). `read(name, cells)` returns a validated
// [cells, cells] float32 matrix.
std::shared_ptr<SelfAttentionStore> load_self_attention(const Json& meta, const std::function<torch::Tensor(const std::string&, int64_t)>& read) {
  if (!meta.contains("self_attention")) return nullptr;
  const Json& j = meta.at("self_attention");
  SelfAttentionOptions options;
  options.enabled = true;
  options.branch = j.at("branch").get<std::string>();
  if (options.branch != "unconditional" && options.branch != "conditional")
    throw std::invalid_argument("self-attention branch \"" + options.branch + "\"; accepted: unconditional, conditional");
  options.sides = j.at("sides").get<std::vector<int64_t>>();
  std::vector<SelfAttentionGrid> grids;
  for (const auto& jg : j.at("grids")) {
    SelfAttentionGrid grid;
    grid.height = integer(jg, "height", 1, kMaxSide);
    grid.width = integer(jg, "width", 1, kMaxSide);
    grid.calls = integer(jg, "calls", 0, kMaxSteps * 1024);
    grid.matrix = read(self_attention_tensor(grid.height, grid.width), grid.height * grid.width);
    grids.push_back(std::move(grid));
  }
  return SelfAttentionStore::from_grids(std::move(options), std::move(grids));
}

}  // namespace

Generation load_generation(const std::string& path, StableDiffusion& pipeline, std::string* user_metadata) {
  auto file = SafetensorsFile::open(path);
  auto fail = [&](const std::string& why) -> Error { return Error(code::kInvalidArgument, path + ": " + why); };
  auto it = file->metadata().find("ovam");
  if (it == file->metadata().end()) throw fail("not an ovam generation file (no \"ovam\" metadata)");
  Json meta = Json::parse(it->second, nullptr, false);
  if (meta.is_discarded() || !meta.is_object() || meta.value("format", "") != kFormat)
    throw fail(std::string("unknown generation format (expected ") + kFormat + ")");
  // Every tensor is checked (dtype, shape, agreement with the metadata and this UNet, finite
  // values) before anything uses it: a crafted file must fail here, not inside libtorch.
  auto tensor = [&](const std::string& name, std::initializer_list<torch::ScalarType> dtypes, const std::string& dtype_text) {
    if (!file->contains(name)) throw fail("no tensor \"" + name + "\"");
    auto t = file->tensor(name);
    if (std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end())
      throw fail("tensor \"" + name + "\" has dtype " + std::string(c10::toString(t.scalar_type())) + "; accepted: " + dtype_text);
    return t;
  };
  auto expect_shape = [&](const std::string& name, const torch::Tensor& t, const std::vector<int64_t>& shape, const std::string& meaning) {
    if (t.sizes().vec() != shape) throw fail("tensor \"" + name + "\" has shape " + shape_text(t) + "; expected " + meaning);
  };
  auto finite = [&](const std::string& name, const torch::Tensor& t) {
    if (!torch::isfinite(t).all().item<bool>()) throw fail("tensor \"" + name + "\" holds NaN or infinite values");
  };
  try {
    Generation g;
    g.options.prompt = meta.at("prompt").get<std::string>();
    // null: no negative prompt (SDXL then conditions on zeros).
    if (!meta.at("negative_prompt").is_null()) g.options.negative_prompt = meta["negative_prompt"].get<std::string>();
    g.options.steps = integer(meta, "steps", 1, kMaxSteps);
    g.options.guidance_scale = meta.at("guidance_scale").get<double>();
    g.options.guidance_rescale = meta.value("guidance_rescale", 0.0);  // files from before it existed
    g.options.width = integer(meta, "width", 1, kMaxSide);
    g.options.height = integer(meta, "height", 1, kMaxSide);
    if (meta.contains("seed")) {
      if (!meta["seed"].is_number_unsigned()) throw std::invalid_argument("\"seed\" = " + meta["seed"].dump() + "; accepted: a non-negative integer");
      g.options.seed = meta["seed"].get<uint64_t>();
    }
    g.options.scheduler = meta.at("scheduler").get<std::string>();
    g.timesteps = meta.at("timesteps").get<std::vector<double>>();
    const Json& c = meta.at("capture");
    CaptureOptions capture;
    capture.enabled = c.at("enabled").get<bool>();
    capture.mid_block = c.at("mid_block").get<bool>();
    capture.branch = c.at("branch").get<std::string>();
    if (capture.branch != "unconditional" && capture.branch != "conditional")
      throw fail("capture branch \"" + capture.branch + "\"; accepted: unconditional, conditional");
    capture.streaming = c.at("streaming").get<bool>();
    const int64_t total_steps = integer(c, "steps", 0, kMaxSteps);

    const int64_t height = g.options.height, width = g.options.width, factor = pipeline.vae_scale_factor();
    g.image = tensor("image", {torch::kFloat32}, "F32").clone();
    expect_shape("image", g.image, {height, width, 3}, "[height, width, 3] = [" + std::to_string(height) + ", " + std::to_string(width) + ", 3]");
    finite("image", g.image);
    g.latents = tensor("latents", {torch::kFloat32}, "F32").clone();
    if (height % factor || width % factor) throw fail("a " + std::to_string(width) + "×" + std::to_string(height) + " image is not a multiple of this VAE's factor " + std::to_string(factor));
    expect_shape("latents", g.latents, {1, pipeline.unet->config().in_channels, height / factor, width / factor},
                 "[1, " + std::to_string(pipeline.unet->config().in_channels) + ", height / " + std::to_string(factor) + ", width / " + std::to_string(factor) + "]");
    finite("latents", g.latents);
    if (meta.contains("strength")) {
      g.options.strength = meta["strength"].get<double>();
      if (!(g.options.strength > 0 && g.options.strength <= 1)) throw fail("strength " + std::to_string(g.options.strength) + "; accepted: a number in (0, 1]");
      g.options.init_image = tensor("init_image", {torch::kUInt8}, "U8").clone();
      expect_shape("init_image", g.options.init_image, {height, width, 3}, "[height, width, 3] = [" + std::to_string(height) + ", " + std::to_string(width) + ", 3]");
    }

    std::map<std::string, Attention> attentions;
    for (auto& [name, attention] : pipeline.unet->cross_attentions()) attentions.emplace(name, attention);
    std::vector<StoredBlock> blocks;
    std::set<std::string> names;
    for (const auto& jb : meta.at("blocks")) {
      StoredBlock b;
      b.name = jb.at("name").get<std::string>();
      if (!names.insert(b.name).second) throw fail("block " + b.name + " is listed twice");
      b.heads = integer(jb, "heads", 1, kMaxHeads);
      b.head_dim = integer(jb, "head_dim", 1, kMaxHeadDim);
      b.height = integer(jb, "height", 1, kMaxSide);
      b.width = integer(jb, "width", 1, kMaxSide);
      b.scale = jb.at("scale").get<double>();
      if (!std::isfinite(b.scale) || b.scale <= 0) throw fail("block " + b.name + " has scale " + std::to_string(b.scale) + "; accepted: a positive number");
      b.steps = integer(jb, "steps", 1, kMaxSteps);
      if (b.steps != total_steps) throw fail("block " + b.name + " recorded " + std::to_string(b.steps) + " steps, the capture " + std::to_string(total_steps));
      auto a = attentions.find(b.name);
      if (a == attentions.end() || a->second->heads != b.heads || a->second->head_dim != b.head_dim)
        throw fail("block " + b.name + " does not match this pipeline's UNet (was it made with another model?)");
      const std::string name = "queries." + b.name;
      auto queries = tensor(name, {torch::kFloat32, torch::kFloat16, torch::kBFloat16}, "F32, F16 or BF16");
      const int64_t slots = capture.streaming ? 1 : total_steps;
      expect_shape(name, queries, {b.heads, slots, b.height * b.width, b.head_dim},
                   "[heads, " + std::string(capture.streaming ? "1" : "steps") + ", height × width, head_dim] = [" + std::to_string(b.heads) + ", " +
                       std::to_string(slots) + ", " + std::to_string(b.height * b.width) + ", " + std::to_string(b.head_dim) + "]");
      if (!blocks.empty() && queries.scalar_type() != blocks[0].queries.scalar_type())
        throw fail("tensor \"" + name + "\" has dtype " + std::string(c10::toString(queries.scalar_type())) + ", block " + blocks[0].name + " " +
                   c10::toString(blocks[0].queries.scalar_type()) + "; every block has one dtype");
      finite(name, queries);
      b.queries = queries.to(pipeline.device).clone();
      capture.dtype = b.queries.scalar_type();
      blocks.push_back(std::move(b));
    }
    if (capture.enabled != !blocks.empty()) throw fail(capture.enabled ? "capture enabled but no blocks stored" : "capture disabled but blocks stored");
    auto self_attention = load_self_attention(meta, [&](const std::string& name, int64_t cells) {
      auto matrix = tensor(name, {torch::kFloat32, torch::kFloat16, torch::kBFloat16}, "F32, F16 or BF16");
      expect_shape(name, matrix, {cells, cells}, "[cells, cells] for the grid's " + std::to_string(cells) + " cells");
      finite(name, matrix);
      return matrix.to(pipeline.device, torch::kFloat32).clone();
    });
    if (self_attention) capture.self_attention = self_attention->options();
    g.options.capture = capture;
    g.store = AttentionStore::from_blocks(capture, total_steps, std::move(blocks), std::move(self_attention));
    if (user_metadata) {
      auto u = file->metadata().find("user");
      *user_metadata = u == file->metadata().end() ? "{}" : u->second;
    }
    return g;
  } catch (const Json::exception& e) {
    throw fail(std::string("malformed generation metadata: ") + e.what());
  } catch (const std::invalid_argument& e) {
    throw fail(std::string("malformed generation metadata: ") + e.what());
  }
}

}  // namespace ovam
