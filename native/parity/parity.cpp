// Native parity runner: the golden fixtures' main cases (text encoders, the UNet at the fixture
// timesteps, VAE decode, the pipeline image from the given latents, OVAM maps of the fixture texts)
// through the C++ core on any device and dtype, without Node: the check a GPU machine (no Node
// there) can run. One table row per case; exit status 1 if any case fails, with a last line naming
// each failure.
//
//   ovam_parity [--device cpu|cuda] [--dtype float32|float16|bfloat16] [--root DIR]
//               [--variants sd1,sd2,sdxl] [--threads N]
//
// Tolerances: relative L2 error ‖ours − ref‖/‖ref‖ (test/fixtures/REFERENCE.md). In float32 those of
// REFERENCE.md: 1e-4 per component, 1e-3 for the pipeline image and the maps, uint8 image within ±2.
// 16-bit computation cannot meet them (its unit roundoff is 2^-11 or 2^-8, not 2^-24), so float16
// and bfloat16 have their own (kTolerances). Every case with a float input is also held to twice
// its own sensitivity: the error it shows when its input is nudged by the dtype's roundoff (the
// random-weight sd1 UNet at t=999 amplifies input noise ~170×; test/unet.test.mjs does the same
// with 1e-6 in float32). The tolerance used is printed in each row. TF32 is off (see main).
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>

#include "ovam/attribution.h"
#include "pipelines/stable_diffusion.h"
#include "pipelines/stable_diffusion_xl.h"
#include "util/errors.h"
#include "util/huge_pages.h"
#include "util/json.h"
#include "util/safetensors.h"
#include "util/threads.h"
#include "util/weights.h"

using namespace ovam;
namespace fs = std::filesystem;

namespace {

struct Tolerance {
  double component, pipeline;  // relative L2
  double roundoff;             // relative input nudge for the sensitivity check
};

// float32: REFERENCE.md, and test/unet.test.mjs's 1e-6 nudge. 16-bit: the unit roundoff u (2^-11,
// 2^-8) times the error growth measured in bfloat16 on the CPU (libtorch 1.13; it has no float16
// CPU kernels): up to 3.9e-2 ≈ 10u per component, 3.4e-2 for the maps; float16 scaled by its 8×
// smaller u, with the same margins.
Tolerance tolerance_for(torch::ScalarType dtype) {
  if (dtype == torch::kFloat16) return {5e-3, 1e-2, 0x1p-11};
  if (dtype == torch::kBFloat16) return {4e-2, 8e-2, 0x1p-8};
  return {1e-4, 1e-3, 1e-6};
}

struct Args {
  std::string device = "cpu", dtype = "float32", root = ".";
  std::vector<std::string> variants{"sd1", "sd2", "sdxl"};
  int threads = 0;
};

struct Golden {
  Json json;
  std::shared_ptr<SafetensorsFile> tensors;
  torch::Tensor operator[](const std::string& name) const { return tensors->tensor(name); }
};

Golden read_golden(const fs::path& dir) {
  return {read_json_file((dir / "golden.json").string()), SafetensorsFile::open((dir / "golden.safetensors").string())};
}

double rel_l2(const torch::Tensor& ours, const torch::Tensor& ref) {
  auto a = ours.detach().to(torch::kCPU, torch::kFloat64).flatten(), b = ref.to(torch::kFloat64).flatten();
  return ((a - b).norm() / b.norm().clamp_min(1e-300)).item<double>();
}

// x·(1 + r·{-1, 0, 1}) element by element, as test/unet.test.mjs nudges its latents.
torch::Tensor nudge(const torch::Tensor& x, double r) {
  auto pattern = (torch::arange(x.numel(), torch::kInt64).remainder(3) - 1).to(torch::kFloat32).view(x.sizes());
  return x.to(torch::kFloat32) * (1 + r * pattern.to(x.device()));
}

class Table {
 public:
  explicit Table(std::string label) : label_(std::move(label)) {
    std::printf("%-5s %-36s %11s %11s %11s  %-6s %9s\n", "model", "case", "relL2", "tolerance", "sensitivity", "result", "ms");
  }

  // One case: `run` computes ours (and, for the sensitivity, ours from nudged inputs when
  // `nudged` is set). The tolerance is max(base, 2 · sensitivity).
  void check(const std::string& model, const std::string& name, double base, const torch::Tensor& ref,
             const std::function<torch::Tensor()>& run, const std::function<torch::Tensor()>& nudged = nullptr,
             const std::function<std::string(const torch::Tensor&)>& extra = nullptr) {
    const auto start = std::chrono::steady_clock::now();
    std::string error;
    double err = 0, sensitivity = 0, tolerance = base;
    try {
      auto ours = run();
      if (ours.sizes() != ref.sizes()) {
        std::ostringstream s;
        s << "shape " << ours.sizes() << ", expected " << ref.sizes();
        error = s.str();
      } else {
        err = rel_l2(ours, ref);
        if (nudged) sensitivity = rel_l2(nudged(), ours);
        tolerance = std::max(base, 2 * sensitivity);
        if (!(err <= tolerance)) {
          char line[160];
          std::snprintf(line, sizeof line, "relL2 %.3e > tolerance %.3e", err, tolerance);
          error = line;
        } else if (extra) {
          error = extra(ours);
        }
      }
    } catch (const std::exception& e) {
      error = e.what();
      const auto nl = error.find('\n');  // libtorch appends its C++ stack: the first line says it
      if (nl != std::string::npos) error.resize(nl);
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    const bool ok = error.empty();
    std::printf("%-5s %-36s %11.3e %11.3e %11.3e  %-6s %9.1f%s%s\n", model.c_str(), name.c_str(), err, tolerance, sensitivity,
                ok ? "ok" : "FAIL", ms, ok ? "" : "  ", error.c_str());
    std::fflush(stdout);
    ++cases_;
    if (!ok) failures_.push_back(model + " " + name + ": " + error);
  }

  int finish() const {
    if (failures_.empty()) {
      std::printf("\novam_parity %s: all %d cases passed\n", label_.c_str(), cases_);
      return 0;
    }
    std::printf("\novam_parity %s: FAILED %zu of %d cases:\n", label_.c_str(), failures_.size(), cases_);
    for (const auto& f : failures_) std::printf("  %s\n", f.c_str());
    return 1;
  }

 private:
  std::string label_;
  int cases_ = 0;
  std::vector<std::string> failures_;
};

// Generation options of a fixture run (prompt, negative prompt, steps, guidance, size, latents).
GenerateOptions request(const Json& p, const Golden& g) {
  GenerateOptions o;
  o.prompt = p.at("prompt").get<std::string>();
  if (p.contains("negative_prompt") && !p.at("negative_prompt").is_null()) o.negative_prompt = p.at("negative_prompt").get<std::string>();
  o.steps = p.at("steps").get<int64_t>();
  o.guidance_scale = p.at("guidance_scale").get<double>();
  o.width = p.at("width").get<int64_t>();
  o.height = p.at("height").get<int64_t>();
  if (p.contains("latents")) o.latents = g[p.at("latents").get<std::string>()];
  else o.seed = p.at("seed").get<uint64_t>();
  return o;
}

torch::Tensor uint8_image(const torch::Tensor& image) { return (image * 255).round().clamp(0, 255).to(torch::kUInt8); }

// The pipeline image against image_float (and image_uint8 within ±2 in float32).
void check_image(Table& table, const std::string& model, const std::string& name, const Json& p, const Golden& g,
                 const Tolerance& tol, bool exact_uint8, const std::function<Generation(bool nudged)>& generate) {
  auto uint8_check = [&](const torch::Tensor& ours) -> std::string {
    if (!exact_uint8) return "";
    const auto diff = (uint8_image(ours).to(torch::kInt32) - g[p.at("image_uint8").get<std::string>()].to(torch::kInt32)).abs().max().item<int>();
    return diff <= 2 ? "" : "uint8 image differs by " + std::to_string(diff) + " > 2";
  };
  if (p.contains("image_float")) {
    table.check(model, name, tol.pipeline, g[p.at("image_float").get<std::string>()], [&] { return generate(false).image; },
                [&] { return generate(true).image; }, uint8_check);
  } else {  // uint8 only: compared as [0, 1] floats
    auto ref = g[p.at("image_uint8").get<std::string>()].to(torch::kFloat32) / 255;
    table.check(model, name, tol.pipeline, ref, [&] { return uint8_image(generate(false).image).to(torch::kFloat32) / 255; },
                [&] { return uint8_image(generate(true).image).to(torch::kFloat32) / 255; }, nullptr);
  }
}

// OVAM's knob names (the fixtures' `options`) → ours.
AttributionOptions attribution_of(const Json& options, const Json& expand_size) {
  AttributionOptions a;
  auto text = [&](const char* key, const std::string& fallback) {
    return options.contains(key) ? options.at(key).get<std::string>() : fallback;
  };
  a.mode = text("heads_epochs_activation", "token_softmax") == "linear" ? "linear" : "softmax";
  a.head_activation = text("heads_activation", "none");
  if (a.head_activation == "linear") a.head_activation = "none";
  a.head_aggregation = text("heads_aggregation", "sum");
  a.block_interpolation = text("block_interpolation_mode", "bilinear");
  a.map_aggregation = text("heatmaps_aggregation", "sum");
  if (expand_size.is_array()) a.size = std::make_pair(expand_size[0].get<int64_t>(), expand_size[1].get<int64_t>());
  return a;
}

std::string ids_check(StableDiffusion& sd, const Json& c) {
  const auto ids = sd.tokenizer.encode(c.at("text").get<std::string>());
  return ids == c.at("ids").get<std::vector<int64_t>>() ? "" : "token ids differ from the fixture's";
}

// The UNet at each fixture timestep and the VAE decode: shared by SD and SDXL.
void check_unet_and_vae(Table& table, const std::string& model, StableDiffusion& sd, const Golden& g, const Tolerance& tol) {
  const auto dev = sd.device;
  const auto dtype = sd.dtype;
  for (const auto& c : g.json.at("unet")) {
    const auto context = g[c.at("context").get<std::string>()].to(dev, dtype);
    AddedConditions added;
    if (c.contains("text_embeds")) {
      added.text_embeds = g[c.at("text_embeds").get<std::string>()].to(dev, dtype);
      added.time_ids = g[c.at("time_ids").get<std::string>()].to(dev);
    }
    const auto t = torch::tensor(c.at("timestep").get<double>(), torch::kFloat32).to(dev);
    const auto latents = g[c.at("latents").get<std::string>()];
    auto unet = [&](const torch::Tensor& x) { return sd.unet->forward(x.to(dev, dtype), t, context, nullptr, added).to(torch::kFloat32); };
    table.check(model, "unet t=" + std::to_string(c.at("timestep").get<int64_t>()), tol.component, g[c.at("out").get<std::string>()],
                [&] { return unet(latents); }, [&] { return unet(nudge(latents, tol.roundoff)); });
  }
  const auto& v = g.json.at("vae_decode");
  // The reference divides in float32, then decodes.
  const auto latents = g[v.at("latents").get<std::string>()] / float(v.at("scaling_factor").get<double>());
  const auto vae_dtype = sd.vae->dtype();
  auto decode = [&](const torch::Tensor& x) { return sd.vae->decode(x.to(dev, vae_dtype)).to(torch::kFloat32); };
  table.check(model, "vae decode", tol.component, g[v.at("out").get<std::string>()], [&] { return decode(latents); },
              [&] { return decode(nudge(latents, tol.roundoff)); });
}

void check_sd(Table& table, const std::string& model, StableDiffusion& sd, const Golden& g, const Tolerance& tol) {
  torch::NoGradGuard no_grad;
  for (const auto& c : g.json.at("text_encoder")) {
    const auto ids = torch::tensor(c.at("ids").get<std::vector<int64_t>>(), torch::kInt64).unsqueeze(0).to(sd.device);
    table.check(model, "text encoder \"" + c.at("text").get<std::string>().substr(0, 20) + "\"", tol.component,
                g[c.at("out").get<std::string>()], [&] { return sd.text_encoder->forward(ids)[0].to(torch::kFloat32); });
  }
  check_unet_and_vae(table, model, sd, g, tol);

  const auto& p = g.json.at("pipeline");
  // One generation per capture setting the OVAM cases need (and its nudged twin), kept for the maps.
  std::map<std::string, Generation> runs;
  auto run = [&](const std::string& label, bool nudged) -> Generation& {
    const std::string key = (label == "with_mid_block" || label == "cond_branch" ? label : "") + (nudged ? "+nudged" : "");
    auto it = runs.find(key);
    if (it != runs.end()) return it->second;
    auto o = request(p, g);
    o.capture.mid_block = label == "with_mid_block";
    o.capture.branch = label == "cond_branch" ? "conditional" : "unconditional";
    if (nudged) o.latents = nudge(o.latents, tol.roundoff);
    return runs.emplace(key, sd.generate(o)).first->second;
  };
  check_image(table, model, "pipeline image (" + std::to_string(p.at("steps").get<int64_t>()) + " steps)", p, g, tol,
              sd.dtype == torch::kFloat32, [&](bool nudged) { return run("", nudged); });
  for (const auto& c : g.json.at("ovam")) {
    const auto label = c.at("label").get<std::string>();
    const auto options = attribution_of(c.at("options"), c.at("expand_size"));
    auto maps = [&](bool nudged) {
      auto& gen = run(label, nudged);
      return attribute(*sd.unet, *gen.store, sd.encode_tokens(sd.tokenizer.encode(c.at("text").get<std::string>())), options).unsqueeze(0);
    };
    table.check(model, "ovam " + label, tol.pipeline, g[c.at("out").get<std::string>()], [&] { return maps(false); },
                [&] { return maps(true); }, [&](const torch::Tensor&) { return ids_check(sd, c); });
  }
}

void check_sdxl(Table& table, StableDiffusionXL& sd, const Golden& g, const Tolerance& tol) {
  torch::NoGradGuard no_grad;
  const std::string model = "sdxl";
  for (const auto& c : g.json.at("encode_prompt")) {
    for (const auto& [text, embeds, pooled] : {std::tuple{"text", "prompt_embeds", "pooled"}, std::tuple{"negative", "negative_embeds", "negative_pooled"}}) {
      const auto s = c.at(text).get<std::string>();
      const std::string name = "encode_prompt \"" + s.substr(0, 14) + "\"";
      table.check(model, name + " embeds", tol.component, g[c.at(embeds).get<std::string>()],
                  [&] { return sd.encode_prompt_pooled(s).first[0].to(torch::kFloat32); });
      table.check(model, name + " pooled", tol.component, g[c.at(pooled).get<std::string>()],
                  [&] { return sd.encode_prompt_pooled(s).second[0].to(torch::kFloat32); });
    }
  }
  check_unet_and_vae(table, model, sd, g, tol);

  const auto& runs = g.json.at("pipeline");
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& p = runs[i];
    std::map<bool, Generation> gens;
    auto generate = [&](bool nudged) -> Generation& {
      if (!gens.count(nudged)) {
        auto o = request(p, g);
        if (nudged) o.latents = nudge(o.latents, tol.roundoff);
        gens.emplace(nudged, sd.generate(o));
      }
      return gens.at(nudged);
    };
    check_image(table, model, "pipeline " + std::to_string(i) + " image", p, g, tol, sd.dtype == torch::kFloat32, generate);
    if (!p.contains("ovam")) continue;
    const Json size = {p.at("height"), p.at("width")};
    for (const auto& c : p.at("ovam")) {
      const auto options = attribution_of({{"heads_epochs_activation", c.at("mode").get<std::string>() == "linear" ? "linear" : "token_softmax"}}, size);
      auto maps = [&](bool nudged) {
        return attribute(*sd.unet, *generate(nudged).store, sd.encode_tokens(sd.tokenizer.encode(c.at("text").get<std::string>())), options).unsqueeze(0);
      };
      table.check(model, "ovam " + c.at("label").get<std::string>() + " (" + c.at("mode").get<std::string>() + ")", tol.pipeline,
                  g[c.at("out").get<std::string>()], [&] { return maps(false); }, [&] { return maps(true); },
                  [&](const torch::Tensor&) { return ids_check(sd, c); });
    }
  }
  const auto& p = g.json.at("pipeline_nonsquare");
  std::map<bool, Generation> gens;
  check_image(table, model, "pipeline 64x96 from a seed", p, g, tol, sd.dtype == torch::kFloat32, [&](bool nudged) {
    // A seeded run has no latents to nudge: its sensitivity is that of the seed's own noise.
    auto o = request(p, g);
    o.latents = torch::randn({1, 4, o.height / sd.vae_scale_factor(), o.width / sd.vae_scale_factor()},
                             at::detail::createCPUGenerator(p.at("seed").get<uint64_t>()));
    if (nudged) o.latents = nudge(o.latents, tol.roundoff);
    o.seed.reset();
    return sd.generate(o);
  });
}

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream s(list);
  for (std::string item; std::getline(s, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  // Every option takes a value.
  const std::map<std::string, std::function<void(const std::string&)>> options{
      {"--device", [&](const std::string& v) { a.device = v; }},
      {"--dtype", [&](const std::string& v) { a.dtype = v; }},
      {"--root", [&](const std::string& v) { a.root = v; }},
      {"--variants", [&](const std::string& v) { a.variants = split(v); }},
      {"--threads", [&](const std::string& v) { a.threads = std::stoi(v); }},
  };
  for (int i = 1; i < argc; i += 2) {
    const auto option = options.find(argv[i]);
    if (option == options.end()) throw Error(code::kInvalidArgument, std::string("unknown option ") + argv[i] + " (see the header of native/parity/parity.cpp)");
    if (i + 1 >= argc) throw Error(code::kInvalidArgument, std::string(argv[i]) + " needs a value");
    option->second(argv[i + 1]);
  }
  for (const auto& v : a.variants)
    if (v != "sd1" && v != "sd2" && v != "sdxl") throw Error(code::kInvalidArgument, "--variants: " + v + " is not one of sd1, sd2, sdxl");
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse(argc, argv);
    use_huge_page_allocator();
    const torch::ScalarType dtype = parse_dtype(args.dtype);
    parse_device(args.device);  // a bad device fails here, before any table
    const Tolerance tol = tolerance_for(dtype);
    // float32 means float32: libtorch lets cuDNN convolutions run in TF32 (10-bit mantissa) by
    // default, which alone moves a UNet output by ~1e-3, ten times REFERENCE.md's tolerance.
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
    const int threads = intra_op_threads(args.threads);
    std::printf("ovam parity: libtorch %s, device %s, dtype %s, %d threads\n\n", TORCH_VERSION, args.device.c_str(),
                args.dtype.c_str(), threads);
    const fs::path root(args.root), fixtures = root / "test" / "fixtures";
    Table table(args.device + " " + args.dtype);
    for (const auto& v : args.variants) {
      // The tiny SD 1.x model is also the bundled demo model (test/helpers/golden.mjs: modelDir).
      const fs::path model = v == "sd1" ? root / "models" / "tiny-sd1" : fixtures / ("tiny-" + v) / "model";
      const Golden g = read_golden(fixtures / ("tiny-" + v));
      auto sd = StableDiffusion::load(model.string(), PipelineOptions{args.device, args.dtype, "", threads});
      if (auto* xl = dynamic_cast<StableDiffusionXL*>(sd.get())) check_sdxl(table, *xl, g, tol);
      else check_sd(table, v, *sd, g, tol);
    }
    return table.finish();
  } catch (const Error& e) {
    std::fprintf(stderr, "ovam_parity: %s (%s)\n", e.what(), e.code().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ovam_parity: %s\n", e.what());
  }
  return 2;
}
