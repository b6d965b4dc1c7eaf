#include "addon/generation_wrap.h"

#include "addon/convert.h"
#include "ovam/attribution.h"
#include "ovam/optimize.h"
#include "ovam/refine.h"
#include "pipelines/generation_file.h"
#include "util/errors.h"

namespace ovam::addon {

namespace {
Napi::FunctionReference* constructor = nullptr;

using Holder = std::pair<std::weak_ptr<StableDiffusion>, std::shared_ptr<Generation>>;

AttributionOptions attribution_from(const Napi::Value& value) {
  AttributionOptions a;
  if (!value.IsObject()) return a;
  auto o = value.As<Napi::Object>();
  a.mode = get_string(o, "mode", a.mode);
  a.head_activation = get_string(o, "headActivation", a.head_activation);
  a.head_aggregation = get_string(o, "headAggregation", a.head_aggregation);
  a.block_interpolation = get_string(o, "blockInterpolation", a.block_interpolation);
  a.map_aggregation = get_string(o, "mapAggregation", a.map_aggregation);
  a.map_activation = get_string(o, "mapActivation", a.map_activation);
  auto size = o.Get("size");
  if (size.IsArray() && size.As<Napi::Array>().Length() == 2) {
    auto s = size.As<Napi::Array>();
    a.size = std::make_pair(s.Get(0u).As<Napi::Number>().Int64Value(), s.Get(1u).As<Napi::Number>().Int64Value());
  }
  auto blocks = o.Get("blocks");
  if (blocks.IsArray()) {
    auto list = blocks.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i) a.blocks.push_back(list.Get(i).ToString().Utf8Value());
  }
  auto steps = o.Get("steps");
  if (steps.IsArray() && steps.As<Napi::Array>().Length() == 2) {
    auto s = steps.As<Napi::Array>();
    a.steps = std::make_pair(s.Get(0u).As<Napi::Number>().Int64Value(), s.Get(1u).As<Napi::Number>().Int64Value());
  }
  a.per_block = get_bool(o, "perBlock", false);
  a.validate();
  return a;
}

// Rows [<|startoftext|>, the text's last token] of the text encoded inside its context, as
// vpulab/ovam's optimisation examples take them.
torch::Tensor initial_token(StableDiffusion& sd, const std::string& text, const std::string& context) {
  auto context_ids = sd.tokenizer.encode(context);
  auto text_ids = sd.tokenizer.encode(text);
  std::vector<int64_t> word(text_ids.begin() + 1, text_ids.end() - 1);
  if (word.empty()) throw Error(code::kInvalidArgument, "optimize: text \"" + text + "\" has no tokens");
  auto at = std::search(context_ids.begin(), context_ids.end(), word.begin(), word.end());
  if (at == context_ids.end())
    throw Error(code::kInvalidArgument, "optimize: text \"" + text + "\" does not occur in its context \"" + context + "\"");
  const int64_t row = (at - context_ids.begin()) + int64_t(word.size()) - 1;
  auto embeddings = sd.encode_tokens(context_ids);
  return torch::stack({embeddings[0], embeddings[row]}).to(torch::kFloat32);
}
}  // namespace

Napi::Function GenerationWrap::define(Napi::Env env) {
  auto fn = DefineClass(env, "Generation",
                        {InstanceMethod("attribute", &GenerationWrap::Attribute),
                         InstanceMethod("optimize", &GenerationWrap::Optimize),
                         InstanceMethod("encode", &GenerationWrap::Encode),
                         InstanceMethod("selfAttention", &GenerationWrap::SelfAttention),
                         InstanceMethod("refine", &GenerationWrap::Refine),
                         InstanceMethod("dispose", &GenerationWrap::Dispose)});
  constructor = new Napi::FunctionReference(Napi::Persistent(fn));
  return fn;
}

Napi::Object GenerationWrap::wrap(Napi::Env env, std::shared_ptr<StableDiffusion> pipeline,
                                  std::shared_ptr<Generation> generation) {
  auto holder = new Holder(pipeline, generation);
  auto external = Napi::External<Holder>::New(env, holder, [](Napi::Env, Holder* h) { delete h; });
  auto object = constructor->New({external});
  holder->second.reset();  // the external lives until a GC; the object holds the generation now
  const auto& g = *generation;
  object.Set("width", Napi::Number::New(env, double(g.image.size(1))));
  object.Set("height", Napi::Number::New(env, double(g.image.size(0))));
  object.Set("pixels", tensor_to_js(env, (g.image * 255).round().to(torch::kUInt8)).Get("data"));
  object.Set("image", tensor_to_js(env, g.image));
  object.Set("latents", tensor_to_js(env, g.latents));
  if (g.start_latents.defined()) object.Set("startLatents", tensor_to_js(env, g.start_latents));  // not kept in files
  object.Set("attentionBytes", Napi::Number::New(env, double(g.store->bytes())));
  auto blocks = Napi::Array::New(env, g.store->blocks().size());
  for (size_t i = 0; i < g.store->blocks().size(); ++i) {
    const auto& b = g.store->blocks()[i];
    auto jb = Napi::Object::New(env);
    jb.Set("name", b.name);
    jb.Set("heads", Napi::Number::New(env, double(b.heads)));
    jb.Set("height", Napi::Number::New(env, double(b.height)));
    jb.Set("width", Napi::Number::New(env, double(b.width)));
    jb.Set("steps", Napi::Number::New(env, double(b.steps)));
    blocks.Set(uint32_t(i), jb);
  }
  object.Set("blocks", blocks);
  const auto& sa = g.store->self_attention();
  auto grids = Napi::Array::New(env, sa ? sa->grids().size() : 0);
  for (size_t i = 0; sa && i < sa->grids().size(); ++i) {
    const auto& grid = sa->grids()[i];
    auto jg = Napi::Object::New(env);
    jg.Set("side", Napi::Number::New(env, double(grid.side())));
    jg.Set("height", Napi::Number::New(env, double(grid.height)));
    jg.Set("width", Napi::Number::New(env, double(grid.width)));
    jg.Set("calls", Napi::Number::New(env, double(grid.calls)));
    grids.Set(uint32_t(i), jg);
  }
  object.Set("selfAttentionGrids", grids);
  return object;
}

GenerationWrap::GenerationWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GenerationWrap>(info) {
  if (info.Length() < 1 || !info[0].IsExternal())
    throw_js(info.Env(), code::kInvalidArgument, "Generation objects come from generate() or loadGeneration()");
  auto* h = info[0].As<Napi::External<Holder>>().Data();
  pipeline_ = h->first;
  generation_ = h->second;
}

std::shared_ptr<Generation> GenerationWrap::get(Napi::Env env) const {
  if (!generation_) throw_js(env, "ERR_OVAM_DISPOSED", "this generation was disposed");
  return generation_;
}

std::shared_ptr<StableDiffusion> GenerationWrap::pipeline(Napi::Env env) const {
  auto sd = pipeline_.lock();
  if (!sd) throw_js(env, "ERR_OVAM_DISPOSED", "the pipeline that made this generation was disposed");
  return sd;
}

Napi::Value GenerationWrap::Attribute(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto g = get(env);
  auto sd = pipeline(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw_js(env, code::kInvalidArgument, "attribute(text, options): text must be { text } or { embeddings }");
  auto in = info[0].As<Napi::Object>();
  AttributionOptions options;
  try {
    options = attribution_from(info.Length() > 1 ? info[1] : env.Undefined());
  } catch (const Error& e) {
    throw_js(env, e.code(), e.what());
  }
  std::string text;
  torch::Tensor embeddings;
  if (in.Get("text").IsString()) text = in.Get("text").As<Napi::String>().Utf8Value();
  else embeddings = tensor_from_js(in.Get("embeddings"), "embeddings");
  if (embeddings.defined() && (embeddings.dim() != 2 || embeddings.size(1) != sd->context_dim()))
    throw_js(env, code::kInvalidArgument, "embeddings must be [tokens, " + std::to_string(sd->context_dim()) + "]");
  if (embeddings.defined()) require_finite(env, embeddings, "embeddings");
  return Job::queue(env, [sd, g, text, embeddings, options]() {
    torch::NoGradGuard no_grad;
    std::vector<int64_t> ids;
    torch::Tensor maps;
    if (embeddings.defined()) {
      maps = attribute(*sd->unet, *g->store, embeddings, options);
    } else {
      ids = sd->tokenizer.encode(text);
      maps = attribute(*g->store, *sd->text_keys(ids), options);
    }
    return [maps, ids](Napi::Env env) -> Napi::Value {
      auto out = Napi::Object::New(env);
      out.Set("maps", tensor_to_js(env, maps, Lend::kYes));
      auto list = Napi::Array::New(env, ids.size());
      for (size_t i = 0; i < ids.size(); ++i) list.Set(uint32_t(i), Napi::Number::New(env, double(ids[i])));
      out.Set("ids", list);
      return out;
    };
  });
}

// optimize(others: Generation[], options, onEpoch) → { promise, cancel }
Napi::Value GenerationWrap::Optimize(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto g = get(env);
  auto sd = pipeline(env);
  std::vector<std::shared_ptr<Generation>> generations{g};
  if (info.Length() > 0 && info[0].IsArray()) {
    auto others = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < others.Length(); ++i) {
      auto o = others.Get(i);
      if (!o.IsObject() || !o.As<Napi::Object>().InstanceOf(constructor->Value()))
        throw_js(env, code::kInvalidArgument, "optimize: every image must be a generation");
      auto* other = GenerationWrap::Unwrap(o.As<Napi::Object>());
      if (other->pipeline(env) != sd) throw_js(env, code::kInvalidArgument, "optimize: all images must come from the same pipeline");
      generations.push_back(other->get(env));
    }
  }
  if (info.Length() < 2 || !info[1].IsObject()) throw_js(env, code::kInvalidArgument, "optimize: options must be an object");
  auto o = info[1].As<Napi::Object>();
  OptimizeOptions options;
  options.epochs = int64_t(get_number(o, "epochs", options.epochs));
  options.lr = get_number(o, "lr", options.lr);
  options.step_size = int64_t(get_number(o, "stepSize", double(options.step_size)));
  options.gamma = get_number(o, "gamma", options.gamma);
  try {
    options.attribution = attribution_from(o.Get("attribute"));
  } catch (const Error& e) {
    throw_js(env, e.code(), e.what());
  }
  auto text = get_string(o, "text", "");
  auto context = get_string(o, "context", text);
  torch::Tensor initial;
  if (o.Get("initial").IsObject()) {
    initial = tensor_from_js(o.Get("initial"), "initial");
    require_finite(env, initial, "initial");
  }
  std::vector<torch::Tensor> targets;
  if (!o.Get("targets").IsArray()) throw_js(env, code::kInvalidArgument, "optimize: targets must be an array of [2, H, W] masks");
  auto ta = o.Get("targets").As<Napi::Array>();
  for (uint32_t i = 0; i < ta.Length(); ++i) targets.push_back(tensor_from_js(ta.Get(i), "targets[" + std::to_string(i) + "]").to(torch::kFloat32));
  if (targets.size() != generations.size())
    throw_js(env, code::kInvalidArgument, "optimize: " + std::to_string(generations.size()) + " images but " + std::to_string(targets.size()) + " targets");
  Napi::Value on_epoch = info.Length() > 2 ? info[2] : env.Undefined();
  return Job::queue_controlled(env, on_epoch, [=](JobControl& control) {
    auto start = initial.defined() ? initial : initial_token(*sd, text, context);
    std::vector<const AttentionStore*> stores;
    for (const auto& gen : generations) stores.push_back(gen->store.get());
    OptimizeProgress progress;
    progress.cancel = &control.cancel;
    progress.on_epoch = [&control](int64_t epoch, double loss) { control.report(double(epoch), loss); };
    auto result = optimize_token(*sd->unet, stores, targets, start, options, progress);
    return [result, start](Napi::Env env) -> Napi::Value {
      auto out = Napi::Object::New(env);
      out.Set("embedding", tensor_to_js(env, result.embedding));
      out.Set("final", tensor_to_js(env, result.final));
      out.Set("initial", tensor_to_js(env, start));
      auto losses = Napi::Array::New(env, result.losses.size());
      for (size_t i = 0; i < result.losses.size(); ++i) losses.Set(uint32_t(i), Napi::Number::New(env, result.losses[i]));
      out.Set("losses", losses);
      return out;
    };
  });
}

// encode(metadata) → Promise<Buffer>: the generation file's bytes (the TS layer writes them).
Napi::Value GenerationWrap::Encode(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto g = get(env);
  std::string metadata = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "{}";
  return Job::queue(env, [g, metadata]() {
    auto bytes = std::make_shared<std::string>(encode_generation(*g, metadata));
    return [bytes](Napi::Env env) -> Napi::Value { return bytes_to_js(env, std::move(*bytes)); };
  });
}

// selfAttention(side) → the [h·w, h·w] mean of the grid of that longer side.
Napi::Value GenerationWrap::SelfAttention(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto g = get(env);
  if (info.Length() < 1 || !info[0].IsNumber()) throw_js(env, code::kInvalidArgument, "selfAttention(side): side must be a number");
  const int64_t side = info[0].As<Napi::Number>().Int64Value();
  return Job::queue(env, [g, side]() {
    const auto& sa = g->store->self_attention();
    if (!sa) throw Error(code::kInvalidArgument, "the image holds no self-attention (generate with capture.selfAttention)");
    auto matrix = sa->grid(side).matrix.to(torch::kCPU);
    return [matrix](Napi::Env env) -> Napi::Value { return tensor_to_js(env, matrix); };
  });
}

// refine(maps [T, H, W], { power, side?, size? }) → refined maps (ovam/refine.h).
Napi::Value GenerationWrap::Refine(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto g = get(env);
  if (info.Length() < 2 || !info[1].IsObject()) throw_js(env, code::kInvalidArgument, "refine(maps, options)");
  auto maps = tensor_from_js(info[0], "maps").to(torch::kFloat32);
  auto o = info[1].As<Napi::Object>();
  RefineOptions options;
  options.power = int64_t(get_number(o, "power", double(options.power)));
  if (o.Get("side").IsNumber()) options.side = o.Get("side").As<Napi::Number>().Int64Value();
  auto size = o.Get("size");
  if (size.IsArray() && size.As<Napi::Array>().Length() == 2) {
    auto s = size.As<Napi::Array>();
    options.size = std::make_pair(s.Get(0u).ToNumber().Int64Value(), s.Get(1u).ToNumber().Int64Value());
  }
  return Job::queue(env, [g, maps, options]() {
    const auto& sa = g->store->self_attention();
    if (!sa) throw Error(code::kInvalidArgument, "refine: the image holds no self-attention (generate with capture.selfAttention)");
    auto refined = refine_sa_power(*sa, maps, options);
    return [refined](Napi::Env env) -> Napi::Value { return tensor_to_js(env, refined, Lend::kYes); };
  });
}

Napi::Value GenerationWrap::Dispose(const Napi::CallbackInfo& info) {
  generation_.reset();
  return info.Env().Undefined();
}

void init_generation(Napi::Env env, Napi::Object exports) { exports.Set("Generation", GenerationWrap::define(env)); }

}  // namespace ovam::addon
