#pragma once
#include <napi.h>

namespace ovam::addon {
// { tokenize, textEncoder, unet, vaeDecode, vaeEncode, scheduler, safetensors, architecture, loadComponent }
Napi::Object init_components(Napi::Env env);
}  // namespace ovam::addon
