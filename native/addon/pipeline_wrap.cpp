#include "addon/pipeline_wrap.h"

namespace ovam::addon {
void init_pipeline(Napi::Env env, Napi::Object exports) {}
}  // namespace ovam::addon
