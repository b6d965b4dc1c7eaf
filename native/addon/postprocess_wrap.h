// JS entry points of the post-processing that turns attribution maps into labels.
#pragma once
#include <napi.h>

namespace ovam::addon {
// exports.labelMaps(maps, options) → Promise<{ labels, histogram }> (postprocess/label_maps.h)
// exports.denseCRF(image, probabilities, params) → Promise<labels> (postprocess/dense_crf.h)
void init_postprocess(Napi::Env env, Napi::Object exports);
}  // namespace ovam::addon
