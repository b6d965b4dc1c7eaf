// JS handle of a generation: image, latents, capture; attribute, optimize, save, self-attention, refine.
#pragma once
#include <napi.h>

#include <memory>

#include "pipelines/stable_diffusion.h"

namespace ovam::addon {

class GenerationWrap : public Napi::ObjectWrap<GenerationWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Object wrap(Napi::Env env, std::shared_ptr<StableDiffusion> pipeline, std::shared_ptr<Generation> generation);
  explicit GenerationWrap(const Napi::CallbackInfo& info);

 private:
  std::shared_ptr<Generation> get(Napi::Env env) const;
  // The pipeline that made it, or a JS error (ERR_OVAM_DISPOSED) once that was disposed.
  std::shared_ptr<StableDiffusion> pipeline(Napi::Env env) const;
  Napi::Value Attribute(const Napi::CallbackInfo& info);
  Napi::Value Optimize(const Napi::CallbackInfo& info);
  Napi::Value Encode(const Napi::CallbackInfo& info);
  Napi::Value SelfAttention(const Napi::CallbackInfo& info);
  Napi::Value Refine(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  // Weak: an image must not keep a disposed pipeline's model in memory (running jobs hold their own).
  std::weak_ptr<StableDiffusion> pipeline_;
  std::shared_ptr<Generation> generation_;
};

void init_generation(Napi::Env env, Napi::Object exports);

}  // namespace ovam::addon
