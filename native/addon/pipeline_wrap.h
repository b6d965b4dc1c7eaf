// JS handle of a loaded pipeline: tokenize, encodeText, generate (controlled job), loadGeneration.
#pragma once
#include <napi.h>

#include <memory>

#include "pipelines/stable_diffusion.h"

namespace ovam::addon {

class PipelineWrap : public Napi::ObjectWrap<PipelineWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Object wrap(Napi::Env env, std::shared_ptr<StableDiffusion> pipeline);
  explicit PipelineWrap(const Napi::CallbackInfo& info);
  // The pipeline, or a JS error (ERR_OVAM_DISPOSED) once disposed.
  std::shared_ptr<StableDiffusion> get(Napi::Env env) const;

 private:
  Napi::Value Tokenize(const Napi::CallbackInfo& info);
  Napi::Value EncodeText(const Napi::CallbackInfo& info);
  Napi::Value EncodePrompt(const Napi::CallbackInfo& info);  // { context [77, D], pooled [P] (SDXL) or null }
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value EstimateGenerate(const Napi::CallbackInfo& info);
  Napi::Value LoadGeneration(const Napi::CallbackInfo& info);
  Napi::Value TextKeyCacheStats(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  std::shared_ptr<StableDiffusion> pipeline_;
};

void init_pipeline(Napi::Env env, Napi::Object exports);

}  // namespace ovam::addon
