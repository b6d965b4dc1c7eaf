// Component-level entry points: each model part alone, for the equivalence tests against the
// reference fixtures and for inspecting checkpoints. Every call runs as a Job off the JS thread.
#include <filesystem>

#include "addon/components.h"
#include "addon/convert.h"
#include "ovam/refine.h"
#include "ovam/softmax_scores.h"
#include "ovam/summed_queries.h"
#include "pipelines/stable_diffusion.h"
#include "schedulers/scheduler.h"
#include "util/safetensors.h"

namespace ovam::addon {

namespace {

namespace fs = std::filesystem;

std::string arg_string(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) throw_js(info.Env(), code::kInvalidArgument, std::string(what) + ": expected a string");
  return info[i].As<Napi::String>().Utf8Value();
}

LoadOptions load_options(const Napi::CallbackInfo& info, size_t i) {
  LoadOptions o;
  if (info.Length() > i && info[i].IsObject()) {
    auto obj = info[i].As<Napi::Object>();
    o.strict = get_bool(obj, "strict", true);
    o.dtype = parse_dtype(get_string(obj, "dtype", "float32"));
    o.device = parse_device(get_string(obj, "device", "cpu"));
  }
  return o;
}

Napi::Value list_to_js(Napi::Env env, const std::vector<int64_t>& ids) {
  auto a = Napi::Array::New(env, ids.size());
  for (size_t i = 0; i < ids.size(); ++i) a.Set(uint32_t(i), Napi::Number::New(env, double(ids[i])));
  return a;
}

Napi::Value Tokenize(const Napi::CallbackInfo& info) {
  auto folder = arg_string(info, 0, "tokenizer folder");
  auto text = arg_string(info, 1, "text");
  return Job::queue(info.Env(), [folder, text]() {
    auto tok = ClipTokenizer::from_folder(folder);
    auto ids = tok.encode(text);
    auto padded = tok.encode_padded(text);
    return [ids, padded](Napi::Env env) -> Napi::Value {
      auto o = Napi::Object::New(env);
      o.Set("ids", list_to_js(env, ids));
      o.Set("padded", list_to_js(env, padded));
      return o;
    };
  });
}

// textEncoder(folder, ids: number[] (one row), options?) → [T, D]
Napi::Value TextEncoder(const Napi::CallbackInfo& info) {
  auto folder = arg_string(info, 0, "text_encoder folder");
  if (info.Length() < 2 || !info[1].IsArray()) throw_js(info.Env(), code::kInvalidArgument, "ids: expected an array of token ids");
  auto a = info[1].As<Napi::Array>();
  std::vector<int64_t> ids;
  for (uint32_t i = 0; i < a.Length(); ++i) ids.push_back(a.Get(i).As<Napi::Number>().Int64Value());
  auto options = load_options(info, 2);
  return Job::queue(info.Env(), [folder, ids, options]() {
    torch::NoGradGuard no_grad;
    auto model = load_text_encoder(folder, options);
    auto out = model->forward(torch::tensor(ids, torch::kInt64).unsqueeze(0).to(options.device))[0];
    return [out](Napi::Env env) -> Napi::Value { return tensor_to_js(env, out); };
  });
}

// softmaxScores(queries [heads, S, n, d], keys [heads, T, d]) → { fused, tensor, gradFused,
// gradTensor, fusedAvailable }: attribution's summed softmax scores [heads, n, T] by the fused CPU
// pass (where this CPU has it) and by tensor operations, and each one's gradient in the keys for
// the loss Σ scores · weights, with fixed pseudo-random weights.
Napi::Value SoftmaxScores(const Napi::CallbackInfo& info) {
  if (info.Length() < 2) throw_js(info.Env(), code::kInvalidArgument, "softmaxScores(queries, keys)");
  auto queries = tensor_from_js(info[0], "queries");
  auto keys = tensor_from_js(info[1], "keys");
  if (queries.dim() != 4 || keys.dim() != 3 || keys.size(0) != queries.size(0) || keys.size(2) != queries.size(3))
    throw_js(info.Env(), code::kInvalidArgument, "softmaxScores: queries [heads, S, n, d] and keys [heads, T, d]");
  return Job::queue(info.Env(), [queries, keys]() {
    torch::AutoGradMode grad_on(true);
    auto weights = torch::randn({queries.size(0), queries.size(2), keys.size(1)}, at::detail::createCPUGenerator(0));
    auto run = [&](bool fused) {
      auto k = keys.detach().clone().set_requires_grad(true);
      auto scores = summed_softmax_scores(queries, k, fused);
      (scores * weights).sum().backward();
      return std::make_pair(scores.detach().contiguous(), k.grad());
    };
    auto [fused, grad_fused] = run(true);
    auto [tensor, grad_tensor] = run(false);
    return [fused, tensor, grad_fused, grad_tensor](Napi::Env env) -> Napi::Value {
      auto o = Napi::Object::New(env);
      o.Set("fused", tensor_to_js(env, fused));
      o.Set("tensor", tensor_to_js(env, tensor));
      o.Set("gradFused", tensor_to_js(env, grad_fused));
      o.Set("gradTensor", tensor_to_js(env, grad_tensor));
      o.Set("fusedAvailable", fused_softmax_available());
      return o;
    };
  });
}

// summedQueries(queries [heads, S, n, d]) → { pass, tensor }: the linear attribution's sum over
// steps [heads, n, d] by its one-pass loop and by libtorch's sum.
Napi::Value SummedQueries(const Napi::CallbackInfo& info) {
  if (info.Length() < 1) throw_js(info.Env(), code::kInvalidArgument, "summedQueries(queries)");
  auto queries = tensor_from_js(info[0], "queries");
  if (queries.dim() != 4) throw_js(info.Env(), code::kInvalidArgument, "summedQueries: queries [heads, S, n, d]");
  return Job::queue(info.Env(), [queries]() {
    auto pass = summed_queries(queries, torch::kFloat32), tensor = queries.sum(1);
    return [pass, tensor](Napi::Env env) -> Napi::Value {
      auto o = Napi::Object::New(env);
      o.Set("pass", tensor_to_js(env, pass));
      o.Set("tensor", tensor_to_js(env, tensor));
      return o;
    };
  });
}

// unet(folder, { latents, timestep, context, textEmbeds?, timeIds?, weights? }, options?) → noise
// prediction (textEmbeds and timeIds: SDXL's added conditions)
Napi::Value UNet(const Napi::CallbackInfo& info) {
  auto folder = arg_string(info, 0, "unet folder");
  if (info.Length() < 2 || !info[1].IsObject()) throw_js(info.Env(), code::kInvalidArgument, "inputs: expected { latents, timestep, context }");
  auto in = info[1].As<Napi::Object>();
  auto latents = tensor_from_js(in.Get("latents"), "latents");
  auto context = tensor_from_js(in.Get("context"), "context");
  AddedConditions added;
  if (in.Get("textEmbeds").IsObject()) added.text_embeds = tensor_from_js(in.Get("textEmbeds"), "textEmbeds");
  if (in.Get("timeIds").IsObject()) added.time_ids = tensor_from_js(in.Get("timeIds"), "timeIds");
  double timestep = get_number(in, "timestep", 0);
  auto weights = get_string(in, "weights", "");
  auto options = load_options(info, 2);
  return Job::queue(info.Env(), [=]() {
    torch::NoGradGuard no_grad;
    auto model = load_unet(folder, options, weights);
    auto out = model->forward(latents.to(options.device, options.dtype),
                              torch::tensor(timestep, torch::kFloat32).to(options.device),
                              context.to(options.device, options.dtype), nullptr,
                              {added.text_embeds.defined() ? added.text_embeds.to(options.device, options.dtype) : added.text_embeds,
                               added.time_ids});
    return [out](Napi::Env env) -> Napi::Value { return tensor_to_js(env, out); };
  });
}

Napi::Value VaeDecode(const Napi::CallbackInfo& info) {
  auto folder = arg_string(info, 0, "vae folder");
  auto latents = tensor_from_js(info[1], "latents");
  auto options = load_options(info, 2);
  return Job::queue(info.Env(), [=]() {
    torch::NoGradGuard no_grad;
    auto model = load_vae(folder, options);
    auto out = model->decode(latents.to(options.device, options.dtype));
    return [out](Napi::Env env) -> Napi::Value { return tensor_to_js(env, out); };
  });
}

Napi::Value VaeEncode(const Napi::CallbackInfo& info) {
  auto folder = arg_string(info, 0, "vae folder");
  auto image = tensor_from_js(info[1], "image");
  auto options = load_options(info, 2);
  return Job::queue(info.Env(), [=]() {
    torch::NoGradGuard no_grad;
    auto model = load_vae(folder, options);
    auto [mean, std] = model->encode(image.to(options.device, options.dtype));
    return [mean = mean, std = std](Napi::Env env) -> Napi::Value {
      auto o = Napi::Object::New(env);
      o.Set("mean", tensor_to_js(env, mean));
      o.Set("std", tensor_to_js(env, std));
      return o;
    };
  });
}

// scheduler({ className, config (JSON text), steps, x0, eps: tensor[], start?, noise? }) → every
// step's values: { timesteps, initNoiseSigma, inputs: tensor[], outputs: tensor[], noised? }.
// `start` begins the run at that timestep index (img2img), eps[k] feeding its k-th step; `noise`
// also returns add_noise(x0, noise) at the start.
Napi::Value SchedulerRun(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) throw_js(info.Env(), code::kInvalidArgument, "expected { className, config, steps, x0, eps }");
  auto in = info[0].As<Napi::Object>();
  auto class_name = get_string(in, "className", "");
  auto config_text = get_string(in, "config", "{}");
  auto steps = int64_t(get_number(in, "steps", 0));
  auto x0 = tensor_from_js(in.Get("x0"), "x0");
  std::vector<torch::Tensor> eps;
  auto eps_a = in.Get("eps").As<Napi::Array>();
  for (uint32_t i = 0; i < eps_a.Length(); ++i) eps.push_back(tensor_from_js(eps_a.Get(i), "eps"));
  const auto start = static_cast<size_t>(get_number(in, "start", 0));
  torch::Tensor noise;
  if (in.Get("noise").IsObject()) noise = tensor_from_js(in.Get("noise"), "noise");
  return Job::queue(info.Env(), [=]() {
    auto json = Json::parse(config_text, nullptr, false);
    if (json.is_discarded() || !json.is_object()) throw Error(code::kConfig, "scheduler config: not a JSON object");
    auto scheduler = make_scheduler(class_name, Config(json, "scheduler config"));
    scheduler->set_timesteps(steps);
    scheduler->begin_at(start);
    torch::Tensor noised;
    if (noise.defined()) noised = scheduler->add_noise(x0, noise, start);
    std::vector<torch::Tensor> inputs, outputs;
    torch::Tensor x = x0;
    for (size_t k = 0, i = start; i < scheduler->timesteps().size() && k < eps.size(); ++k, ++i) {
      inputs.push_back(scheduler->scale_model_input(x, i));
      x = scheduler->step(eps[k], i, x);
      outputs.push_back(x);
    }
    auto timesteps = scheduler->timesteps();
    double sigma = scheduler->init_noise_sigma();
    return [=](Napi::Env env) -> Napi::Value {
      auto o = Napi::Object::New(env);
      auto t = Napi::Array::New(env, timesteps.size());
      for (size_t i = 0; i < timesteps.size(); ++i) t.Set(uint32_t(i), Napi::Number::New(env, timesteps[i]));
      o.Set("timesteps", t);
      o.Set("initNoiseSigma", Napi::Number::New(env, sigma));
      auto ins = Napi::Array::New(env, inputs.size()), outs = Napi::Array::New(env, outputs.size());
      for (size_t i = 0; i < inputs.size(); ++i) ins.Set(uint32_t(i), tensor_to_js(env, inputs[i]));
      for (size_t i = 0; i < outputs.size(); ++i) outs.Set(uint32_t(i), tensor_to_js(env, outputs[i]));
      o.Set("inputs", ins);
      o.Set("outputs", outs);
      if (noised.defined()) o.Set("noised", tensor_to_js(env, noised));
      return o;
    };
  });
}

Napi::Value entries_to_js(Napi::Env env, const SafetensorsFile& file) {
  auto list = Napi::Array::New(env);
  for (const auto& e : file.entries()) {
    auto o = Napi::Object::New(env);
    o.Set("name", e.name);
    o.Set("dtype", std::string(c10::toString(e.dtype)));
    o.Set("shape", list_to_js(env, e.shape));
    list.Set(list.Length(), o);
  }
  return list;
}

// safetensors(pathOrBuffer) → [{ name, dtype, shape }] after full validation.
Napi::Value Safetensors(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsBuffer()) {
    auto b = info[0].As<Napi::Buffer<char>>();
    std::string bytes(b.Data(), b.Length());
    return Job::queue(info.Env(), [bytes]() {
      auto file = SafetensorsFile::from_bytes(bytes, "<buffer>");
      return [file](Napi::Env env) { return entries_to_js(env, *file); };
    });
  }
  auto path = arg_string(info, 0, "safetensors path");
  return Job::queue(info.Env(), [path]() {
    auto file = SafetensorsFile::open(path);
    return [file](Napi::Env env) { return entries_to_js(env, *file); };
  });
}

// architecture(kind: "unet"|"vae"|"text_encoder", configJSON) → [[name, shape]] built on the meta
// device (no memory for weights).
Napi::Value Architecture(const Napi::CallbackInfo& info) {
  auto kind = arg_string(info, 0, "kind");
  auto config_text = arg_string(info, 1, "config");
  return Job::queue(info.Env(), [=]() {
    auto json = Json::parse(config_text, nullptr, false);
    if (json.is_discarded() || !json.is_object()) throw Error(code::kConfig, "config: not a JSON object");
    Config config(json, kind + " config");
    nn::BuildScope scope(torch::TensorOptions().device(torch::kMeta).dtype(torch::kFloat32));
    std::shared_ptr<torch::nn::Module> module;
    if (kind == "unet") module = UNet2DConditionModel(UNetConfig::from(config)).ptr();
    else if (kind == "vae") module = AutoencoderKL(VaeConfig::from(config)).ptr();
    else if (kind == "text_encoder") module = make_clip_text_model(ClipTextConfig::from(config)).ptr();
    else throw Error(code::kInvalidArgument, "kind \"" + kind + "\": accepted unet, vae, text_encoder");
    std::vector<std::pair<std::string, std::vector<int64_t>>> params;
    for (const auto& p : module->named_parameters(true)) params.emplace_back(p.key(), p.value().sizes().vec());
    return [params](Napi::Env env) -> Napi::Value {
      auto list = Napi::Array::New(env, params.size());
      for (size_t i = 0; i < params.size(); ++i) {
        auto pair = Napi::Array::New(env, 2);
        pair.Set(0u, params[i].first);
        pair.Set(1u, list_to_js(env, params[i].second));
        list.Set(uint32_t(i), pair);
      }
      return list;
    };
  });
}

// loadComponent(kind, folder, { weights?, strict?, dtype?, device? }) → resolves when the load
// succeeds (its errors are what the tests check).
Napi::Value LoadComponent(const Napi::CallbackInfo& info) {
  auto kind = arg_string(info, 0, "kind");
  auto folder = arg_string(info, 1, "folder");
  auto options = load_options(info, 2);
  std::string weights;
  if (info.Length() > 2 && info[2].IsObject()) weights = get_string(info[2].As<Napi::Object>(), "weights", "");
  return Job::queue(info.Env(), [=]() {
    if (kind == "unet") load_unet(folder, options, weights);
    else if (kind == "vae") load_vae(folder, options);
    else if (kind == "text_encoder") load_text_encoder(folder, options);
    else throw Error(code::kInvalidArgument, "kind \"" + kind + "\": accepted unet, vae, text_encoder");
    return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
  });
}

}  // namespace

// selfAttentionRefine(matrix [h·w, h·w], height, width, maps [T, H, W], power, size?: [H', W']) →
// refine_sa_power over that matrix: the fixtures' A^τ · c on their own A.
Napi::Value SelfAttentionRefine(const Napi::CallbackInfo& info) {
  if (info.Length() < 5) throw_js(info.Env(), code::kInvalidArgument, "selfAttentionRefine(matrix, height, width, maps, power, size?)");
  SelfAttentionGrid grid;
  grid.matrix = tensor_from_js(info[0], "matrix").to(torch::kFloat32);
  grid.height = info[1].ToNumber().Int64Value();
  grid.width = info[2].ToNumber().Int64Value();
  grid.calls = 1;
  if (grid.matrix.dim() != 2 || grid.matrix.size(0) != grid.height * grid.width || grid.matrix.size(1) != grid.height * grid.width)
    throw_js(info.Env(), code::kInvalidArgument, "selfAttentionRefine: matrix must be [height·width, height·width]");
  auto maps = tensor_from_js(info[3], "maps").to(torch::kFloat32);
  RefineOptions options;
  options.power = info[4].ToNumber().Int64Value();
  if (info.Length() > 5 && info[5].IsArray()) {
    auto s = info[5].As<Napi::Array>();
    options.size = std::make_pair(s.Get(0u).ToNumber().Int64Value(), s.Get(1u).ToNumber().Int64Value());
  }
  return Job::queue(info.Env(), [grid, maps, options]() {
    auto store = SelfAttentionStore::from_grids(SelfAttentionOptions{}, {grid});
    auto out = refine_sa_power(*store, maps, options);
    return [out](Napi::Env env) -> Napi::Value { return tensor_to_js(env, out); };
  });
}

Napi::Object init_components(Napi::Env env) {
  auto o = Napi::Object::New(env);
  o.Set("tokenize", Napi::Function::New(env, Tokenize));
  o.Set("textEncoder", Napi::Function::New(env, TextEncoder));
  o.Set("unet", Napi::Function::New(env, UNet));
  o.Set("softmaxScores", Napi::Function::New(env, SoftmaxScores));
  o.Set("summedQueries", Napi::Function::New(env, SummedQueries));
  o.Set("selfAttentionRefine", Napi::Function::New(env, SelfAttentionRefine));
  o.Set("vaeDecode", Napi::Function::New(env, VaeDecode));
  o.Set("vaeEncode", Napi::Function::New(env, VaeEncode));
  o.Set("scheduler", Napi::Function::New(env, SchedulerRun));
  o.Set("safetensors", Napi::Function::New(env, Safetensors));
  o.Set("architecture", Napi::Function::New(env, Architecture));
  o.Set("loadComponent", Napi::Function::New(env, LoadComponent));
  return o;
}

}  // namespace ovam::addon
