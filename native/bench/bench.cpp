// Native benchmarks: links the core directly. For each case it prints the median time of several
// runs after a warm-up, the work done (FLOPs, bytes of attention store read) and the achieved
// rate beside this machine's ceilings measured in the same run (SGEMM GFLOP/s, copy GB/s).
//
//   ovam_bench [--quick | --full] [--device cpu|cuda] [--threads N] [--runs N] [--json FILE]
//              [--tiny DIR] [--arch FILE.json] [--size PX]
//
// --full adds the SD 1.5 architecture at full size in float32 and bfloat16: UNet steps at 256² and
// 512² against each dtype's GEMM ceiling, and the peak resident memory of a generation at 512² and
// 768²; and float32 on float16 matrix weights (a 256² step, the 512² peak) (minutes; not run by CI).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <unistd.h>

#include "ovam/attribution.h"
#include "ovam/optimize.h"
#include "pipelines/generation_file.h"
#include "pipelines/stable_diffusion.h"
#include "postprocess/dense_crf.h"
#include "schedulers/scheduler.h"
#include "util/errors.h"
#include "util/huge_pages.h"
#include "util/json.h"
#include "util/nn.h"
#include "util/threads.h"
#include "util/weights.h"

using namespace ovam;
namespace fs = std::filesystem;

namespace {

struct Args {
  bool quick = false, full = false;
  std::string device = "cpu", json = "bench-results.json", tiny = "models/tiny-sd1";
  std::string arch = "test/fixtures/architectures/sd15.json";
  int threads = 0, runs = 5;
  int64_t size = 256;
};

void sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

// Median seconds of each function over `runs` rounds after one warm-up round; a round calls every
// function once, in turn, so a drift of the machine (other tenants, clocks) hits them alike.
std::vector<double> median_times(int runs, const torch::Device& device, const std::vector<std::function<void()>>& fns) {
  std::vector<std::vector<double>> times(fns.size());
  for (int round = -1; round < runs; ++round) {
    for (size_t f = 0; f < fns.size(); ++f) {
      auto start = std::chrono::steady_clock::now();
      fns[f]();
      sync(device);
      if (round >= 0) times[f].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }
  std::vector<double> medians;
  for (auto& t : times) {
    std::sort(t.begin(), t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

double median_time(int runs, const torch::Device& device, const std::function<void()>& fn) {
  return median_times(runs, device, {fn})[0];
}

struct Row {
  std::string model, name;
  double seconds = 0, flops = 0, bytes = 0;
  std::string note;
  double peak_bytes = 0;  // generations: the peak resident memory (VmHWM), for comparing runs
};

class Report {
 public:
  double gflops_ceiling = 0, copy_gbs = 0;
  void add(Row r) {
    print(r);
    rows_.push_back(std::move(r));
  }
  void print_header() const {
    std::printf("%-8s %-36s %11s %10s %10s %9s %9s  %s\n", "model", "case", "median ms", "GFLOP", "GFLOP/s", "% SGEMM",
                "MB read", "note");
  }
  void print(const Row& r) const {
    const double gflops = r.flops / 1e9, rate = r.seconds > 0 ? gflops / r.seconds : 0;
    // Rows without matrix work have no rate to put beside SGEMM.
    char share[16] = "-";
    if (r.flops > 0 && gflops_ceiling > 0) std::snprintf(share, sizeof share, "%.1f%%", 100 * rate / gflops_ceiling);
    std::printf("%-8s %-36s %11.3f %10.3f %10.1f %9s %9.2f  %s\n", r.model.c_str(), r.name.c_str(), r.seconds * 1e3,
                gflops, rate, share, r.bytes / 1e6, r.note.c_str());
    std::fflush(stdout);
  }
  void write(const std::string& file, const Args& args) const {
    Json out;
    out["device"] = args.device;
    out["threads"] = at::get_num_threads();
    out["torch"] = TORCH_VERSION;
    out["ceilings"] = {{"sgemm_gflops", gflops_ceiling}, {"copy_gbs", copy_gbs}};
    out["cases"] = Json::array();
    for (const auto& r : rows_) {
      Json row = {{"model", r.model}, {"case", r.name}, {"median_s", r.seconds}, {"flops", r.flops},
                  {"gflops_per_s", r.seconds > 0 ? r.flops / 1e9 / r.seconds : 0}, {"bytes_read", r.bytes}, {"note", r.note}};
      if (r.peak_bytes > 0) row["peak_resident_bytes"] = r.peak_bytes;
      out["cases"].push_back(row);
    }
    // Written beside and renamed, so an interrupted run never leaves half a file for --compare.
    const std::string partial = file + ".partial-" + std::to_string(::getpid());
    std::ofstream(partial) << out.dump(2) << "\n";
    fs::rename(partial, file);
  }

 private:
  std::vector<Row> rows_;
};

// A 256 MB copy: the machine's memory rate (read + write traffic).
struct CopyProbe {
  explicit CopyProbe(const torch::Device& device)
      : src(torch::randn({int64_t(64) << 20}, torch::TensorOptions().device(device))), dst(torch::empty_like(src)) {}
  void operator()() { dst.copy_(src); }
  double gbs(double seconds) const { return 2.0 * double(src.numel()) * 4 / seconds / 1e9; }
  torch::Tensor src, dst;
};

void measure_ceilings(Report& report, const Args& args, const torch::Device& device) {
  const int64_t n = device.is_cuda() ? 8192 : 2048;
  auto a = torch::randn({n, n}, torch::TensorOptions().device(device)), b = torch::randn({n, n}, a.options());
  double t = median_time(args.runs, device, [&] { torch::matmul(a, b); });
  report.gflops_ceiling = 2.0 * n * n * n / t / 1e9;
  report.add({"machine", "SGEMM " + std::to_string(n) + "x" + std::to_string(n), t, 2.0 * n * n * n, 0, "ceiling"});
  CopyProbe copy(device);
  t = median_time(args.runs, device, copy);
  report.copy_gbs = copy.gbs(t);
  char note[96];
  std::snprintf(note, sizeof note, "ceiling: %.1f GB/s (read+write)", report.copy_gbs);
  report.add({"machine", "copy 256 MB", t, 0, 2.0 * double(copy.src.numel()) * 4, note});
}

// An SD 1.5-architecture pipeline with random weights, built from the release's configs (drawn in
// float32, then converted, so every dtype holds the same weights); `weight_dtype` stores the matrix
// weights narrower than float32 compute (load()'s weightDtype).
std::shared_ptr<StableDiffusion> random_pipeline(const Args& args, const torch::Device& device, torch::ScalarType dtype = torch::kFloat32,
                                                 torch::ScalarType weight_dtype = torch::kFloat32) {
  Json arch = read_json_file(args.arch);
  auto sd = std::make_shared<StableDiffusion>();
  sd->folder = args.arch;
  sd->device = device;
  sd->dtype = dtype;
  sd->weight_dtype = dtype == torch::kFloat32 ? weight_dtype : dtype;
  sd->tokenizer = ClipTokenizer::from_folder((fs::path(args.tiny) / "tokenizer").string());
  const Json& tc = arch.at("text_config");
  Json text = {{"hidden_size", tc.at("width")}, {"num_hidden_layers", tc.at("layers")},
               {"num_attention_heads", tc.at("heads")}, {"intermediate_size", tc.at("width").get<int64_t>() * 4},
               {"hidden_act", tc.at("hidden_act")}};
  nn::BuildScope scope(torch::TensorOptions().device(device).dtype(torch::kFloat32),
                       sd->weight_dtype != torch::kFloat32 ? std::optional(sd->weight_dtype) : std::nullopt);
  sd->text_encoder = ClipTextModel(ClipTextConfig::from(Config(text, args.arch + ":text_config")));
  sd->unet = UNet2DConditionModel(UNetConfig::from(Config(arch.at("unet_config"), args.arch + ":unet_config")));
  sd->vae = AutoencoderKL(VaeConfig::from(Config(arch.at("vae_config"), args.arch + ":vae_config")));
  uint64_t seed = 0;
  for (torch::nn::Module* m : std::initializer_list<torch::nn::Module*>{sd->text_encoder.get(), sd->unet.get(), sd->vae.get()}) {
    randomize_weights(*m, 0.02, seed++);
    if (dtype != torch::kFloat32) m->to(dtype);  // float32 keeps narrow matrix weights as built
    m->eval();
  }
  sd->scheduler_config = std::make_shared<Config>(Config::load((fs::path(args.tiny) / "scheduler" / "scheduler_config.json").string()));
  sd->scheduler_class = sd->scheduler_config->get_string("_class_name", "PNDMScheduler");
  return sd;
}

// Random queries in every slot, every slot counted as recorded (a saved generation must say so
// to load again).
void fill_random(AttentionStore& store) {
  for (auto& b : store.blocks()) {
    b.queries.normal_();
    b.steps = b.queries.size(1);
  }
}

// The attribution cases: a 1- and an 11-token text, each in both modes, named "attribute N-token, mode".
void each_attribution_case(StableDiffusion& sd, int64_t pixels,
                           const std::function<void(const std::string&, const torch::Tensor&, const AttributionOptions&)>& body) {
  for (const char* text : {"car", "a red car parked beside a tall tree in the city"}) {
    auto embeddings = sd.encode_tokens(sd.tokenizer.encode(text));
    const int64_t tokens = embeddings.size(0) - 2;
    for (const char* mode : {"softmax", "linear"}) {
      AttributionOptions options;
      options.mode = mode;
      options.size = std::make_pair(pixels, pixels);
      body("attribute " + std::to_string(tokens) + "-token, " + mode, embeddings, options);
    }
  }
}

// The store's memory floor: its bytes read once at the copy rate, the rate measured in the same
// rounds as the case it is compared with, so that the machine's drift (its copy rate moves between
// 35 and 75 GB/s over minutes, shared with other tenants) hits both alike. Shown beside it, the
// floor at the copy rate measured at the start of the run.
std::string floor_note(const Report& report, const AttentionStore& store, double seconds, double copy_gbs) {
  const double floor_s = double(store.bytes()) / (copy_gbs * 1e9), start_s = double(store.bytes()) / (report.copy_gbs * 1e9);
  char note[128];
  std::snprintf(note, sizeof note, "%.2fx memory floor (%.2f ms at %.0f GB/s); %.2fx at the run's start", seconds / floor_s,
                floor_s * 1e3, copy_gbs, seconds / start_s);
  return note;
}

// Attribution over `store` (its queries replaced by random ones in every slot): the store's size,
// 1- and 11-token texts in both modes, and a word's first and repeated (cached keys) attribution,
// each against the memory floor.
void bench_attribution(Report& report, int runs, const std::string& label, StableDiffusion& sd, AttentionStore& store, int64_t pixels) {
  const torch::Device device = sd.device;
  fill_random(store);
  const int64_t steps = store.blocks().front().queries.size(1);
  char note[160];
  const double store_bytes = double(store.bytes());
  std::snprintf(note, sizeof note, "%.2f MB per step, %lld steps", store_bytes / steps / 1e6, (long long)steps);
  report.add({label, "attention store size", 0, 0, store_bytes, note});

  auto store_flops = [&](int64_t tokens) {
    double f = 0;
    for (const auto& b : store.blocks()) f += 2.0 * double(b.queries.numel()) * double(tokens);
    return f;
  };
  CopyProbe copy(device);
  each_attribution_case(sd, pixels, [&](const std::string& name, const torch::Tensor& embeddings, const AttributionOptions& options) {
    const auto t = median_times(runs, device, {[&] { attribute(*sd.unet, store, embeddings, options); }, copy});
    report.add({label, name + ", " + std::to_string(steps) + " steps", t[0], store_flops(embeddings.size(0)), store_bytes,
                floor_note(report, store, t[0], copy.gbs(t[1]))});
  });

  // What a user typing one word pays: the first time, the text encoder and every block's keys;
  // after that the pipeline's text key cache leaves only the store pass. The first is compared
  // with the text encoder's own time plus the repeated one.
  {
    const auto ids = sd.tokenizer.encode("car");
    AttributionOptions options;
    options.size = std::make_pair(pixels, pixels);
    const auto t = median_times(runs, device,
                                {[&] {
                                   sd.text_key_cache.clear();
                                   attribute(store, *sd.text_keys(ids), options);
                                 },
                                 [&] { attribute(store, *sd.text_keys(ids), options); }, [&] { sd.encode_tokens(ids); }, copy});
    std::snprintf(note, sizeof note, "%.2fx (text encoder %.1f ms + repeated)", t[0] / (t[2] + t[1]), t[2] * 1e3);
    report.add({label, "attribute 1-token, softmax, first (text encoder + keys)", t[0], 0, store_bytes, note});
    report.add({label, "attribute 1-token, softmax, repeated (cached keys)", t[1], 0, store_bytes, floor_note(report, store, t[1], copy.gbs(t[3]))});
  }
}

// The half-precision store (capture.dtype "float16") beside the float32 one: half the bytes; each
// mode and text timed alternately with the float32 store, so their ratio is the code's, not the
// machine's drift. It decides which is the default (README).
void bench_half_store(Report& report, int runs, const std::string& label, StableDiffusion& sd, AttentionStore& full,
                      const torch::Tensor& latents, const torch::Tensor& t, const torch::Tensor& context, int64_t pixels) {
  CaptureOptions float16;
  float16.dtype = torch::kFloat16;
  AttentionStore half(float16, full.blocks().front().queries.size(1));
  half.begin_step(0, 2);
  sd.unet->forward(latents, t, context, &half);
  fill_random(half);
  const int64_t steps = half.blocks().front().queries.size(1);
  const double bytes = double(half.bytes());
  char note[160];
  CopyProbe copy(sd.device);
  each_attribution_case(sd, pixels, [&](const std::string& name, const torch::Tensor& embeddings, const AttributionOptions& options) {
    const auto both = median_times(runs, sd.device, {[&] { attribute(*sd.unet, half, embeddings, options); },
                                                     [&] { attribute(*sd.unet, full, embeddings, options); }, copy});
    std::snprintf(note, sizeof note, "%.2fx the float32 store; ", both[0] / both[1]);
    report.add({label, name + ", " + std::to_string(steps) + " steps, f16 store", both[0], 0, bytes,
                note + floor_note(report, half, both[0], copy.gbs(both[2]))});
  });
}

void bench_model(Report& report, const Args& args, const std::string& label, StableDiffusion& sd, int64_t pixels) {
  torch::NoGradGuard no_grad;
  const torch::Device device = sd.device;
  const int64_t latent = pixels / sd.vae_scale_factor();
  const int64_t capture_steps = 30;
  auto context = torch::cat({sd.encode_prompt(""), sd.encode_prompt("a car in an urban environment")});
  auto latents = torch::randn({2, sd.unet->config().in_channels, latent, latent}, torch::TensorOptions().device(device));
  auto t = torch::tensor(500.0f, torch::TensorOptions().device(device));

  double step_flops = 0;
  {
    nn::FlopCount count;
    sd.unet->forward(latents, t, context);
    step_flops = count.flops;
  }
  AttentionStore store(CaptureOptions{}, capture_steps);
  // Off and on alternate: the difference is the capture's, not the machine's drift.
  const auto off_on = median_times(args.runs, device,
                                   {[&] { sd.unet->forward(latents, t, context); },
                                    [&] {
                                      store.begin_step(0, 2);
                                      sd.unet->forward(latents, t, context, &store);
                                    }});
  const double off = off_on[0], on = off_on[1];
  report.add({label, "UNet step (CFG batch 2), capture off", off, step_flops, 0,
              std::to_string(pixels) + "px"});
  char note[128];
  std::snprintf(note, sizeof note, "capture overhead %+.1f%%", 100 * (on - off) / off);
  report.add({label, "UNet step (CFG batch 2), capture on", on, step_flops, 0, note});

  double encode = median_time(args.runs, device, [&] { sd.encode_prompt("a car in an urban environment"); });
  report.add({label, "text encoding (77 tokens)", encode, 0, 0, ""});

  bench_attribution(report, args.runs, label, sd, store, pixels);
  bench_half_store(report, args.runs, label, sd, store, latents, t, context, pixels);
  const double store_bytes = double(store.bytes());

  auto initial = sd.encode_tokens(sd.tokenizer.encode("car")).slice(0, 0, 2).to(torch::kFloat32);
  auto target = torch::zeros({2, pixels, pixels});
  target[0].fill_(1);
  target[1].slice(0, pixels / 4, 3 * pixels / 4).slice(1, pixels / 4, 3 * pixels / 4).fill_(1);
  target[0] -= target[1];
  OptimizeOptions opt;
  opt.epochs = 1;
  double epoch = median_time(args.runs, device, [&] { optimize_token(*sd.unet, {&store}, {target}, initial, opt); });
  AttributionOptions softmax;
  softmax.size = std::make_pair(pixels, pixels);
  double one = median_time(args.runs, device, [&] { attribute(*sd.unet, store, initial, softmax); });
  std::snprintf(note, sizeof note, "%.2fx one attribution", epoch / one);
  report.add({label, "optimisation epoch (fwd + bwd)", epoch, 0, store_bytes, note});

  Generation g;
  g.options.width = g.options.height = pixels;
  g.image = torch::zeros({pixels, pixels, 3});
  g.latents = torch::zeros({1, 4, latent, latent});
  g.store = std::make_shared<AttentionStore>(store);
  const std::string file = (fs::temp_directory_path() / ("ovam-bench-" + std::to_string(::getpid()) + ".safetensors")).string();
  double save = median_time(args.runs, device, [&] {
    const std::string bytes = encode_generation(g, "{}");
    std::ofstream(file, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  });
  report.add({label, "save capture (safetensors)", save, 0, store_bytes, ""});
  double load = median_time(args.runs, device, [&] { load_generation(file, sd, nullptr); });
  report.add({label, "load capture", load, 0, store_bytes, ""});
  fs::remove(file);
}

// The dense CRF at OVAM's defaults on a 512×512, 2-label input (a noisy disc and soft, wavy
// probabilities), on one thread and on all, beside SimpleCRF's time for the same size on this
// machine (0.44 s, one thread; issue 9).
void bench_dense_crf(Report& report, const Args& args, int threads) {
  constexpr double kSimpleCrfSeconds = 0.44;
  const int64_t h = 512, w = 512;
  std::vector<uint8_t> image(h * w * 3);
  std::vector<float> probabilities(2 * h * w);
  auto noise = torch::randn({h, w, 3}, at::detail::createCPUGenerator(0)) * 20;
  auto n = noise.accessor<float, 3>();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const bool inside = (x - 256) * (x - 256) + (y - 240) * (y - 240) < 120 * 120;
      for (int c = 0; c < 3; ++c)
        image[(y * w + x) * 3 + c] = uint8_t(std::clamp((inside ? 180.0f - 40 * c : 60.0f + 30 * c) + n[y][x][c], 0.0f, 255.0f));
      const float p = (inside ? 0.7f : 0.3f) + 0.2f * std::sin(x * 0.05f) * std::cos(y * 0.07f);
      probabilities[y * w + x] = 1 - p;
      probabilities[h * w + y * w + x] = p;
    }
  DenseCrfParams params;
  char note[128];
  for (int t : {1, threads}) {
    at::set_num_threads(t);
    const double s = median_time(args.runs, torch::kCPU, [&] { dense_crf(image.data(), probabilities.data(), h, w, 2, params); });
    std::snprintf(note, sizeof note, "%.2fx SimpleCRF's %.2f s (1 thread)", s / kSimpleCrfSeconds, kSimpleCrfSeconds);
    report.add({"crf", "dense CRF 512x512, 2 labels, " + std::to_string(t) + " thr", s, 0, 0, note});
    if (threads == 1) break;
  }
  at::set_num_threads(threads);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw Error(code::kInvalidArgument, k + " needs a value");
      return argv[++i];
    };
    if (k == "--quick") a.quick = true;
    else if (k == "--full") a.full = true;
    else if (k == "--device") a.device = value();
    else if (k == "--threads") a.threads = std::stoi(value());
    else if (k == "--runs") a.runs = std::max(1, std::stoi(value()));
    else if (k == "--json") a.json = value();
    else if (k == "--tiny") a.tiny = value();
    else if (k == "--arch") a.arch = value();
    else if (k == "--size") a.size = std::stoll(value());
    else throw Error(code::kInvalidArgument, "unknown option " + k + " (see the header of native/bench/bench.cpp)");
  }
  return a;
}

// Resident memory from /proc/self/status: "VmHWM" (the peak since the last reset) or "VmRSS", in bytes.
double resident(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(status, line))
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(key.size())) * 1024;
  return 0;
}

// Linux: writing 5 to clear_refs resets VmHWM to the current resident size.
void reset_peak_resident() {
  release_cached_pages();  // and glibc's free heap: "before" counts live memory
  std::ofstream("/proc/self/clear_refs") << "5";
}

void bench_full(Report& report, const Args& args, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const int runs = std::min(args.runs, 2);  // a 512² float32 step takes ~20 s on 2 cores
  const int64_t n = 2048;
  auto a = torch::randn({n, n}, torch::TensorOptions().device(device)).to(torch::kBFloat16), b = torch::randn_like(a);
  const double gemm = median_time(args.runs, device, [&] { torch::matmul(a, b); });
  const double bf16_gflops = 2.0 * n * n * n / gemm / 1e9;
  char note[160];
  std::snprintf(note, sizeof note, "ceiling for bfloat16: %.0f GFLOP/s (%.2fx SGEMM)", bf16_gflops, bf16_gflops / report.gflops_ceiling);
  report.add({"machine", "BF16 GEMM 2048x2048", gemm, 2.0 * n * n * n, 0, note});
  std::map<int64_t, double> float32_step;
  // float32, bfloat16, and float32 compute on float16 matrix weights (weightDtype: the memory of
  // stable-diffusion.cpp's "f32"): its step at 256² and its 512² peak only.
  struct Variant {
    std::string label;
    torch::ScalarType dtype, weight_dtype;
  };
  for (const auto& [label, dtype, weight_dtype] : {Variant{"sd15-f32", torch::kFloat32, torch::kFloat32},
                                                   Variant{"sd15-bf16", torch::kBFloat16, torch::kBFloat16},
                                                   Variant{"sd15-w16", torch::kFloat32, torch::kFloat16}}) {
    const bool narrow = weight_dtype != dtype;
    const bool reference = dtype == torch::kFloat32 && !narrow;  // the float32 step the others are compared with
    const double ceiling = dtype == torch::kFloat32 ? report.gflops_ceiling : bf16_gflops;
    auto sd = random_pipeline(args, device, dtype, weight_dtype);
    // Counted from the parameters: the resident-size change understates it when the heap reuses
    // pages an earlier model freed.
    double weights = 0;
    for (torch::nn::Module* m : std::initializer_list<torch::nn::Module*>{sd->text_encoder.get(), sd->unet.get(), sd->vae.get()})
      for (const auto& p : m->parameters()) weights += double(p.numel()) * double(p.element_size());
    std::snprintf(note, sizeof note, "weights %.2f GiB, %.2f GiB resident after", weights / (1 << 30), resident("VmRSS") / (1 << 30));
    report.add({label, "load (random weights)", 0, 0, 0, note});
    auto context = torch::cat({sd->encode_prompt(""), sd->encode_prompt("a car in an urban environment")});
    auto t = torch::tensor(500.0f, torch::TensorOptions().device(device));
    for (const int64_t pixels : {int64_t(256), int64_t(512)}) {
      if (narrow && pixels == 512) continue;
      const int64_t latent = pixels / sd->vae_scale_factor();
      auto latents = torch::randn({2, sd->unet->config().in_channels, latent, latent}, torch::TensorOptions().device(device)).to(dtype);
      double flops = 0;
      {
        nn::FlopCount count;
        sd->unet->forward(latents, t, context);
        flops = count.flops;
      }
      const double s = median_time(runs, device, [&] { sd->unet->forward(latents, t, context); });
      const double rate = flops / s / 1e9;
      if (reference && pixels == 256) {
        // The same step with its large tensors on libtorch's own allocator (faulted in 4 KiB at a
        // time), runs alternating with huge pages so that the machine's drift hits both alike.
        const auto pages = median_times(runs, device, {[&] {
                                                         use_huge_page_allocator(true);
                                                         sd->unet->forward(latents, t, context);
                                                       },
                                                       [&] {
                                                         use_huge_page_allocator(false);
                                                         sd->unet->forward(latents, t, context);
                                                       }});
        use_huge_page_allocator(true);
        std::snprintf(note, sizeof note, "%.0f%% of SGEMM; %.2fx the step on huge pages (%.0f ms, alternating)",
                      100 * flops / pages[1] / 1e9 / ceiling, pages[1] / pages[0], pages[0] * 1e3);
        report.add({label, "UNet step (CFG batch 2) 256px, 4 KiB pages", pages[1], flops, 0, note});
      }
      if (reference) float32_step[pixels] = s;
      if (reference) std::snprintf(note, sizeof note, "%.0f%% of SGEMM", 100 * rate / ceiling);
      else std::snprintf(note, sizeof note, "%.0f%% of %s; %.2fx the float32 step", 100 * rate / ceiling,
                         dtype == torch::kFloat32 ? "SGEMM" : "BF16 GEMM", s / float32_step[pixels]);
      report.add({label, "UNet step (CFG batch 2) " + std::to_string(pixels) + "px", s, flops, 0, note});
      if (reference && pixels == 512) {
        // Attribution at full size: a 30-step store of this resolution's block shapes.
        AttentionStore store(CaptureOptions{}, 30);
        store.begin_step(0, 2);
        sd->unet->forward(latents, t, context, &store);
        // Attribution takes milliseconds, not a step's seconds: all the runs asked for (two are too few
        // to ride out the neighbours' load on this shared machine).
        bench_attribution(report, args.runs, label, *sd, store, pixels);
        bench_half_store(report, runs, label, *sd, store, latents, t, context, pixels);
      }
    }
    for (const int64_t pixels : {int64_t(512), int64_t(768)}) {
      if (narrow && pixels == 768) continue;
      GenerateOptions g;
      g.prompt = "a car in an urban environment";
      g.steps = 1;
      g.width = g.height = pixels;
      g.seed = 0;
      reset_peak_resident();
      const double base = resident("VmRSS");
      const auto start = std::chrono::steady_clock::now();
      sd->generate(g);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double peak = resident("VmHWM");
      std::snprintf(note, sizeof note, "peak resident %.2f GiB (%.2f GiB before: weights and buffers)", peak / (1 << 30), base / (1 << 30));
      report.add({label, "generate 1 step + decode " + std::to_string(pixels) + "px", s, 0, 0, note, peak});
    }
  }
}
// The thread-pool settings the library runs with (ts/native.ts sets them before the addon loads;
// without them an SD 1.5 UNet step took 4.4 s instead of 2.4 s on 2 cores). libgomp and OpenBLAS
// read them when they load, so a run started without them starts itself again with them; a user's
// own settings win.
void use_library_thread_settings(char** argv) {
  if (std::getenv("GOMP_SPINCOUNT") && std::getenv("OPENBLAS_THREAD_TIMEOUT")) return;
  setenv("GOMP_SPINCOUNT", "10000", 0);
  setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0);
  execv("/proc/self/exe", argv);
  std::perror("ovam_bench: could not restart with the library's thread settings");  // goes on; the header says
}
}  // namespace

int main(int argc, char** argv) {
  use_library_thread_settings(argv);
  try {
    Args args = parse(argc, argv);
    use_huge_page_allocator();
    const int threads = intra_op_threads(args.threads);
    at::set_num_threads(threads);
    const torch::Device device = parse_device(args.device);
    auto env = [](const char* name) { const char* v = std::getenv(name); return v ? v : "(unset)"; };
    std::printf("ovam native benchmark: libtorch %s, device %s, %d threads, GOMP_SPINCOUNT=%s, OPENBLAS_THREAD_TIMEOUT=%s\n\n",
                TORCH_VERSION, args.device.c_str(), threads, env("GOMP_SPINCOUNT"), env("OPENBLAS_THREAD_TIMEOUT"));
    Report report;
    report.print_header();
    measure_ceilings(report, args, device);
    bench_dense_crf(report, args, threads);
    auto tiny = StableDiffusion::load(args.tiny, PipelineOptions{args.device, "float32", "", threads});
    bench_model(report, args, "tiny-sd1", *tiny, tiny->unet->config().sample_size * tiny->vae_scale_factor());
    if (!args.quick) {
      auto sd15 = random_pipeline(args, device);
      bench_model(report, args, "sd15", *sd15, args.size);
    }
    if (args.full) bench_full(report, args, device);
    report.write(args.json, args);
    std::printf("\nwrote %s\n", args.json.c_str());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "ovam_bench: %s (%s)\n", e.what(), e.code().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ovam_bench: %s\n", e.what());
  }
  return 1;
}
