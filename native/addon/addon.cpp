// Module entry: registers the pipeline, generation, post-processing and component bindings.
#include <napi.h>
#include <torch/torch.h>

#include "addon/components.h"
#include "addon/generation_wrap.h"
#include "addon/pipeline_wrap.h"
#include "addon/postprocess_wrap.h"
#include "util/huge_pages.h"

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  ovam::use_huge_page_allocator();
  exports.Set("components", ovam::addon::init_components(env));
  ovam::addon::init_pipeline(env, exports);
  ovam::addon::init_generation(env, exports);
  ovam::addon::init_postprocess(env, exports);
  exports.Set("torchVersion", Napi::String::New(env, TORCH_VERSION));
  exports.Set("cudaAvailable", Napi::Boolean::New(env, torch::cuda::is_available()));
  return exports;
}
}  // namespace

NODE_API_MODULE(ovam, Init)
