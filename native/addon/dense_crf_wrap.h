#pragma once
#include <napi.h>

namespace ovam::addon {
// exports.denseCRF(image, probabilities, params) (postprocess/dense_crf.h).
void init_dense_crf(Napi::Env env, Napi::Object exports);
}  // namespace ovam::addon
