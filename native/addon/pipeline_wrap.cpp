#include "addon/pipeline_wrap.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "addon/convert.h"
#include "addon/generation_wrap.h"
#include "pipelines/generation_file.h"
#include "pipelines/memory_estimate.h"
#include "pipelines/stable_diffusion_xl.h"
#include "schedulers/scheduler.h"
#include "util/errors.h"
#include "util/safetensors.h"

namespace ovam::addon {

namespace {
Napi::FunctionReference* constructor = nullptr;  // one per process: the addon is loaded once

CaptureOptions capture_from(const Napi::Object& o) {
  CaptureOptions c;
  c.enabled = get_bool(o, "enabled", true);
  c.mid_block = get_bool(o, "midBlock", false);
  c.branch = get_string(o, "branch", "unconditional");
  if (c.branch != "unconditional" && c.branch != "conditional")
    throw_js(o.Env(), code::kInvalidArgument, "capture.branch \"" + c.branch + "\"; accepted: unconditional, conditional");
  c.dtype = parse_dtype(get_string(o, "dtype", "float32"));
  c.streaming = get_bool(o, "streaming", false);
  if (o.Get("selfAttention").IsObject()) {
    auto sa = o.Get("selfAttention").As<Napi::Object>();
    c.self_attention.enabled = get_bool(sa, "enabled", true);
    c.self_attention.branch = get_string(sa, "branch", "conditional");
    if (c.self_attention.branch != "unconditional" && c.self_attention.branch != "conditional")
      throw_js(o.Env(), code::kInvalidArgument, "capture.selfAttention.branch \"" + c.self_attention.branch + "\"; accepted: unconditional, conditional");
    if (sa.Get("sides").IsArray()) {
      auto sides = sa.Get("sides").As<Napi::Array>();
      for (uint32_t i = 0; i < sides.Length(); ++i) c.self_attention.sides.push_back(sides.Get(i).ToNumber().Int64Value());
    }
  }
  return c;
}
}  // namespace

Napi::Function PipelineWrap::define(Napi::Env env) {
  auto fn = DefineClass(env, "Pipeline",
                        {InstanceMethod("tokenize", &PipelineWrap::Tokenize),
                         InstanceMethod("encodeText", &PipelineWrap::EncodeText),
                         InstanceMethod("encodePrompt", &PipelineWrap::EncodePrompt),
                         InstanceMethod("generate", &PipelineWrap::Generate),
                         InstanceMethod("estimateGenerate", &PipelineWrap::EstimateGenerate),
                         InstanceMethod("loadGeneration", &PipelineWrap::LoadGeneration),
                         InstanceMethod("textKeyCache", &PipelineWrap::TextKeyCacheStats),
                         InstanceMethod("dispose", &PipelineWrap::Dispose)});
  constructor = new Napi::FunctionReference(Napi::Persistent(fn));
  return fn;
}

Napi::Object PipelineWrap::wrap(Napi::Env env, std::shared_ptr<StableDiffusion> pipeline) {
  auto holder = new std::shared_ptr<StableDiffusion>(std::move(pipeline));
  auto external = Napi::External<std::shared_ptr<StableDiffusion>>::New(
      env, holder, [](Napi::Env, std::shared_ptr<StableDiffusion>* p) { delete p; });
  auto object = constructor->New({external});
  auto sd = std::move(*holder);  // the external lives until a GC; the object holds the pipeline now
  object.Set("folder", sd->folder);
  object.Set("device", sd->device.str());
  object.Set("dtype", dtype_name(sd->dtype));
  object.Set("weightDtype", dtype_name(sd->weight_dtype));
  object.Set("defaultScheduler", sd->scheduler_class);
  const int64_t side = sd->unet->config().sample_size * sd->vae_scale_factor();
  auto size = Napi::Array::New(env, 2);
  size.Set(0u, Napi::Number::New(env, double(side)));
  size.Set(1u, Napi::Number::New(env, double(side)));
  object.Set("defaultSize", size);
  object.Set("vaeScaleFactor", Napi::Number::New(env, double(sd->vae_scale_factor())));
  object.Set("contextDim", Napi::Number::New(env, double(sd->context_dim())));
  object.Set("defaultGuidanceScale", Napi::Number::New(env, sd->default_guidance_scale()));
  return object;
}

PipelineWrap::PipelineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PipelineWrap>(info) {
  if (info.Length() < 1 || !info[0].IsExternal())
    throw_js(info.Env(), code::kInvalidArgument, "Pipeline objects come from loadPipeline()");
  pipeline_ = *info[0].As<Napi::External<std::shared_ptr<StableDiffusion>>>().Data();
}

std::shared_ptr<StableDiffusion> PipelineWrap::get(Napi::Env env) const {
  if (!pipeline_) throw_js(env, "ERR_OVAM_DISPOSED", "this pipeline was disposed");
  return pipeline_;
}

Napi::Value PipelineWrap::Tokenize(const Napi::CallbackInfo& info) {
  auto sd = get(info.Env());
  if (info.Length() < 1 || !info[0].IsString()) throw_js(info.Env(), code::kInvalidArgument, "tokenize(text): text must be a string");
  auto ids = sd->tokenizer.encode(info[0].As<Napi::String>().Utf8Value());
  auto env = info.Env();
  auto id_list = Napi::Array::New(env, ids.size()), tokens = Napi::Array::New(env, ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    id_list.Set(uint32_t(i), Napi::Number::New(env, double(ids[i])));
    tokens.Set(uint32_t(i), sd->tokenizer.token_text(ids[i]));
  }
  auto out = Napi::Object::New(env);
  out.Set("ids", id_list);
  out.Set("tokens", tokens);
  return out;
}

Napi::Value PipelineWrap::EncodeText(const Napi::CallbackInfo& info) {
  auto sd = get(info.Env());
  if (info.Length() < 1 || !info[0].IsString()) throw_js(info.Env(), code::kInvalidArgument, "encodeText(text): text must be a string");
  auto text = info[0].As<Napi::String>().Utf8Value();
  return Job::queue(info.Env(), [sd, text]() {
    auto out = sd->encode_tokens(sd->tokenizer.encode(text));
    return [out](Napi::Env env) -> Napi::Value { return tensor_to_js(env, out); };
  });
}

Napi::Value PipelineWrap::EncodePrompt(const Napi::CallbackInfo& info) {
  auto sd = get(info.Env());
  if (info.Length() < 1 || !info[0].IsString()) throw_js(info.Env(), code::kInvalidArgument, "encodePrompt(text): text must be a string");
  auto text = info[0].As<Napi::String>().Utf8Value();
  return Job::queue(info.Env(), [sd, text]() {
    torch::Tensor context, pooled;
    if (auto xl = std::dynamic_pointer_cast<StableDiffusionXL>(sd)) std::tie(context, pooled) = xl->encode_prompt_pooled(text);
    else context = sd->encode_prompt(text);
    return [context, pooled](Napi::Env env) -> Napi::Value {
      auto out = Napi::Object::New(env);
      out.Set("context", tensor_to_js(env, context[0]));
      out.Set("pooled", pooled.defined() ? tensor_to_js(env, pooled[0]) : env.Null());
      return out;
    };
  });
}

namespace {
GenerateOptions generate_options(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) throw_js(info.Env(), code::kInvalidArgument, "generate(options): options must be an object");
  auto o = info[0].As<Napi::Object>();
  GenerateOptions g;
  g.prompt = get_string(o, "prompt", "");
  if (o.Get("negativePrompt").IsString()) g.negative_prompt = o.Get("negativePrompt").As<Napi::String>().Utf8Value();
  g.steps = int64_t(get_number(o, "steps", 50));
  if (o.Get("guidanceScale").IsNumber()) g.guidance_scale = o.Get("guidanceScale").As<Napi::Number>().DoubleValue();
  g.guidance_rescale = get_number(o, "guidanceRescale", 0);
  g.width = int64_t(get_number(o, "width", 0));
  g.height = int64_t(get_number(o, "height", 0));
  if (o.Get("seed").IsNumber()) g.seed = uint64_t(o.Get("seed").As<Napi::Number>().Int64Value());
  if (o.Get("latents").IsObject()) g.latents = tensor_from_js(o.Get("latents"), "latents");
  g.scheduler = get_string(o, "scheduler", "");
  if (o.Get("capture").IsObject()) g.capture = capture_from(o.Get("capture").As<Napi::Object>());
  if (o.Get("image").IsObject()) g.init_image = tensor_from_js(o.Get("image"), "image");
  g.strength = get_number(o, "strength", g.strength);
  if (o.Get("startLatents").IsObject()) g.start_latents = tensor_from_js(o.Get("startLatents"), "startLatents");
  return g;
}
}  // namespace

// estimateGenerate(options) → { evaluations, attention, store, decode } in bytes (synchronous, cheap).
Napi::Value PipelineWrap::EstimateGenerate(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto sd = get(env);
  MemoryEstimate e;
  try {
    e = estimate_generation(*sd, generate_options(info));
  } catch (const Error& error) {
    throw_js(env, error.code(), error.what());
  }
  auto out = Napi::Object::New(env);
  out.Set("evaluations", Napi::Number::New(env, double(e.evaluations)));
  out.Set("attention", Napi::Number::New(env, e.attention));
  out.Set("store", Napi::Number::New(env, e.store));
  out.Set("decode", Napi::Number::New(env, e.decode));
  return out;
}

Napi::Value PipelineWrap::Generate(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto sd = get(env);
  auto g = generate_options(info);
  Napi::Value on_step = info.Length() > 1 ? info[1] : env.Undefined();
  return Job::queue_controlled(env, on_step, [sd, g](JobControl& control) {
    Progress progress;
    progress.cancel = &control.cancel;
    progress.on_step = [&control](int64_t step, int64_t total) { control.report(double(step), double(total)); };
    auto generation = std::make_shared<Generation>(sd->generate(g, progress));
    return [sd, generation](Napi::Env env) -> Napi::Value { return GenerationWrap::wrap(env, sd, generation); };
  });
}

Napi::Value PipelineWrap::LoadGeneration(const Napi::CallbackInfo& info) {
  auto sd = get(info.Env());
  if (info.Length() < 1 || !info[0].IsString()) throw_js(info.Env(), code::kInvalidArgument, "loadGeneration(file): file must be a string");
  auto file = info[0].As<Napi::String>().Utf8Value();
  return Job::queue(info.Env(), [sd, file]() {
    std::string user;
    auto generation = std::make_shared<Generation>(load_generation(file, *sd, &user));
    return [sd, generation, user](Napi::Env env) -> Napi::Value {
      auto object = GenerationWrap::wrap(env, sd, generation);
      object.Set("userMetadata", user);
      return object;
    };
  });
}

// textKeyCache() → { hits, misses, entries, bytes, capacity } (synchronous).
Napi::Value PipelineWrap::TextKeyCacheStats(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const auto stats = get(env)->text_key_cache.stats();
  auto out = Napi::Object::New(env);
  out.Set("hits", Napi::Number::New(env, double(stats.hits)));
  out.Set("misses", Napi::Number::New(env, double(stats.misses)));
  out.Set("entries", Napi::Number::New(env, double(stats.entries)));
  out.Set("bytes", Napi::Number::New(env, double(stats.bytes)));
  out.Set("capacity", Napi::Number::New(env, double(stats.capacity)));
  return out;
}

Napi::Value PipelineWrap::Dispose(const Napi::CallbackInfo& info) {
  pipeline_.reset();  // running jobs keep their own reference until they finish
  return info.Env().Undefined();
}

namespace {
void return_free_memory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

Napi::Value LoadPipeline(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_js(env, code::kInvalidArgument, "loadPipeline(folder, options): folder must be a string");
  auto folder = info[0].As<Napi::String>().Utf8Value();
  PipelineOptions options;
  if (info.Length() > 1 && info[1].IsObject()) {
    auto o = info[1].As<Napi::Object>();
    options.device = get_string(o, "device", "cpu");
    options.dtype = get_string(o, "dtype", "float32");
    options.weight_dtype = get_string(o, "weightDtype", "");
    options.threads = int(get_number(o, "threads", 0));
    options.text_key_cache_bytes = int64_t(get_number(o, "textKeyCacheBytes", double(options.text_key_cache_bytes)));
    options.attention_block_bytes = int64_t(get_number(o, "attentionBlockBytes", double(options.attention_block_bytes)));
  }
  return Job::queue(env, [folder, options]() {
    auto loaded = StableDiffusion::load(folder, options);
    // When the last reference goes (dispose(), or the last job using it ends), the model is freed
    // and the heap's free pages go back to the system: glibc would otherwise keep them, and a
    // server reloading models sees its memory grow as if it leaked.
    std::shared_ptr<StableDiffusion> sd(loaded.get(), [loaded](StableDiffusion*) mutable {
      loaded.reset();
      return_free_memory();
    });
    return [sd](Napi::Env env) -> Napi::Value { return PipelineWrap::wrap(env, sd); };
  });
}

std::vector<std::pair<std::string, torch::Tensor>> named_tensors(const Napi::Object& o) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  auto keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    auto key = keys.Get(i).As<Napi::String>().Utf8Value();
    out.emplace_back(key, tensor_from_js(o.Get(key), "tensors." + key));
  }
  return out;
}

// Every property of `o` as a string (safetensors metadata).
std::map<std::string, std::string> string_map(const Napi::Object& o) {
  std::map<std::string, std::string> out;
  auto keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    auto key = keys.Get(i).As<Napi::String>().Utf8Value();
    out[key] = o.Get(key).ToString().Utf8Value();
  }
  return out;
}

// encodeTensors(tensors, metadata, dtype?) → Promise<Buffer>: the bytes of a safetensors file (the
// TS side writes them through its atomic writer); float tensors are stored in `dtype` when given.
Napi::Value EncodeTensors(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject())
    throw_js(env, code::kInvalidArgument, "encodeTensors(tensors, metadata, dtype?)");
  auto tensors = named_tensors(info[0].As<Napi::Object>());
  auto metadata = string_map(info[1].As<Napi::Object>());
  if (info.Length() > 2 && info[2].IsString()) {
    auto dtype = parse_dtype(info[2].As<Napi::String>().Utf8Value());
    for (auto& [name, tensor] : tensors)
      if (tensor.is_floating_point()) tensor = tensor.to(dtype);
  }
  return Job::queue(env, [tensors, metadata]() {
    auto bytes = std::make_shared<std::string>(encode_safetensors(tensors, metadata));
    return [bytes](Napi::Env env) -> Napi::Value { return bytes_to_js(env, std::move(*bytes)); };
  });
}

Napi::Object metadata_to_js(Napi::Env env, const std::map<std::string, std::string>& metadata) {
  auto m = Napi::Object::New(env);
  for (const auto& [k, v] : metadata) m.Set(k, v);
  return m;
}

// loadTensors(file or bytes, label?) → { tensors (float32), metadata }; bytes are what the TS layer
// read with its bounded input reader, `label` names them in errors.
Napi::Value LoadTensors(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  std::string path, bytes;
  if (info.Length() > 0 && info[0].IsBuffer()) {
    auto b = info[0].As<Napi::Buffer<char>>();
    bytes.assign(b.Data(), b.Length());
    path = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "<buffer>";
  } else if (info.Length() > 0 && info[0].IsString()) {
    path = info[0].As<Napi::String>().Utf8Value();
  } else {
    throw_js(env, code::kInvalidArgument, "loadTensors(file): file must be a string or a Buffer");
  }
  const bool from_bytes = info[0].IsBuffer();
  return Job::queue(env, [path, bytes = std::move(bytes), from_bytes]() mutable {
    auto file = from_bytes ? SafetensorsFile::from_bytes(std::move(bytes), path) : SafetensorsFile::open(path);
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& e : file->entries()) tensors.emplace_back(e.name, file->tensor(e.name).to(torch::kFloat32));
    auto metadata = file->metadata();
    return [tensors, metadata](Napi::Env env) -> Napi::Value {
      auto out = Napi::Object::New(env), t = Napi::Object::New(env);
      for (const auto& [name, tensor] : tensors) t.Set(name, tensor_to_js(env, tensor));
      out.Set("tensors", t);
      out.Set("metadata", metadata_to_js(env, metadata));
      return out;
    };
  });
}

// readMetadata(file) → the string metadata of a safetensors file; its header is validated, its
// tensors are mapped but never read.
Napi::Value ReadMetadata(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_js(env, code::kInvalidArgument, "readMetadata(file): file must be a string");
  auto path = info[0].As<Napi::String>().Utf8Value();
  return Job::queue(env, [path]() {
    auto metadata = SafetensorsFile::open(path)->metadata();
    return [metadata](Napi::Env env) -> Napi::Value { return metadata_to_js(env, metadata); };
  });
}
}  // namespace

void init_pipeline(Napi::Env env, Napi::Object exports) {
  exports.Set("Pipeline", PipelineWrap::define(env));
  exports.Set("loadPipeline", Napi::Function::New(env, LoadPipeline));
  exports.Set("encodeTensors", Napi::Function::New(env, EncodeTensors));
  exports.Set("loadTensors", Napi::Function::New(env, LoadTensors));
  exports.Set("readMetadata", Napi::Function::New(env, ReadMetadata));
  auto names = scheduler_names();
  auto list = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); ++i) list.Set(uint32_t(i), names[i]);
  exports.Set("schedulers", list);
}

}  // namespace ovam::addon
