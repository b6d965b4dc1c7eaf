#include "addon/postprocess_wrap.h"

#include <ATen/Parallel.h>

#include "addon/convert.h"
#include "postprocess/dense_crf.h"
#include "postprocess/label_maps.h"
#include "util/errors.h"
#include "util/threads.h"

namespace ovam::addon {

namespace {

std::vector<double> numbers(const Napi::Object& o, const char* key) {
  std::vector<double> out;
  auto v = o.Get(key);
  if (!v.IsArray()) throw_js(o.Env(), code::kInvalidArgument, std::string("labelMaps: options.") + key + " must be an array of numbers");
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    auto x = a.Get(i);
    if (!x.IsNumber()) throw_js(o.Env(), code::kInvalidArgument, std::string("labelMaps: options.") + key + " must be an array of numbers");
    out.push_back(x.As<Napi::Number>().DoubleValue());
  }
  return out;
}

LabelMapOptions label_options(const Napi::Value& value) {
  if (!value.IsObject()) throw_js(value.Env(), code::kInvalidArgument, "labelMaps: options must be an object");
  auto o = value.As<Napi::Object>();
  LabelMapOptions l;
  l.height = int64_t(get_number(o, "height", 0));
  l.width = int64_t(get_number(o, "width", 0));
  l.interpolation = get_string(o, "interpolation", l.interpolation);
  l.normalize = get_string(o, "normalize", l.normalize);
  l.compare = get_string(o, "compare", l.compare);
  l.thresholds = numbers(o, "thresholds");
  for (double id : numbers(o, "ids")) l.ids.push_back(uint8_t(id));
  l.background = uint8_t(get_number(o, "background", 0));
  if (o.Get("uncertain").IsArray()) {
    auto band = numbers(o, "uncertain");
    if (band.size() == 2) l.uncertain = std::make_pair(band[0], band[1]);
  }
  l.min_area = int64_t(get_number(o, "minArea", 0));
  l.area = get_string(o, "area", l.area);
  return l;
}

Napi::Value LabelMaps(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2) throw_js(env, code::kInvalidArgument, "labelMaps(maps, options)");
  auto maps = tensor_from_js(info[0], "maps");
  auto options = label_options(info[1]);
  return Job::queue(env, [maps, options]() {
    auto labels = label_maps(maps, options);
    auto histogram = label_histogram(labels);
    return [labels, histogram](Napi::Env env) -> Napi::Value {
      auto out = Napi::Object::New(env);
      out.Set("labels", tensor_to_js(env, labels, Lend::kYes));
      out.Set("histogram", tensor_to_js(env, histogram));
      return out;
    };
  });
}

// denseCRF(image { data: Uint8Array, shape: [H, W, 3] }, probabilities { data: Float32Array,
// shape: [L, H, W] }, { w1, alpha, beta, w2, gamma, iterations, threads }) → labels [H, W] uint8.
Napi::Value DenseCRF(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 3 || !info[2].IsObject()) throw_js(env, code::kInvalidArgument, "denseCRF(image, probabilities, params)");
  auto image = tensor_from_js(info[0], "image");
  auto probabilities = tensor_from_js(info[1], "probabilities");
  if (image.scalar_type() != torch::kUInt8 || image.dim() != 3 || image.size(2) != 3)
    throw_js(env, code::kInvalidArgument, "denseCRF: image must be uint8 [height, width, 3]");
  if (probabilities.scalar_type() != torch::kFloat32 || probabilities.dim() != 3 || probabilities.size(1) != image.size(0) ||
      probabilities.size(2) != image.size(1))
    throw_js(env, code::kInvalidArgument, "denseCRF: probabilities must be float32 [labels, height, width] of the image's size");
  auto o = info[2].As<Napi::Object>();
  DenseCrfParams params;
  params.w1 = get_number(o, "w1", params.w1);
  params.alpha = get_number(o, "alpha", params.alpha);
  params.beta = get_number(o, "beta", params.beta);
  params.w2 = get_number(o, "w2", params.w2);
  params.gamma = get_number(o, "gamma", params.gamma);
  params.iterations = int(get_number(o, "iterations", params.iterations));
  const int threads = int(get_number(o, "threads", 0));
  return Job::queue(env, [image, probabilities, params, threads]() {
    // This job's own count, on its thread only (the next job applies the process's again).
    at::set_num_threads(intra_op_threads(threads));
    const int64_t height = image.size(0), width = image.size(1);
    auto labels = dense_crf(image.data_ptr<uint8_t>(), probabilities.data_ptr<float>(), height, width,
                            int(probabilities.size(0)), params);
    auto out = torch::from_blob(labels.data(), {height, width}, torch::kUInt8).clone();
    return [out](Napi::Env env) -> Napi::Value { return tensor_to_js(env, out, Lend::kYes); };
  });
}
}  // namespace

void init_postprocess(Napi::Env env, Napi::Object exports) {
  exports.Set("labelMaps", Napi::Function::New(env, LabelMaps));
  exports.Set("denseCRF", Napi::Function::New(env, DenseCRF));
}

}  // namespace ovam::addon
