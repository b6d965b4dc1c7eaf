#pragma once
#include <napi.h>

namespace ovam::addon {
void init_generation(Napi::Env env, Napi::Object exports);
}  // namespace ovam::addon
