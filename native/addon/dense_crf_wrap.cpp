// denseCRF(image { data: Uint8Array, shape: [H, W, 3] }, probabilities { data: Float32Array,
// shape: [L, H, W] }, { w1, alpha, beta, w2, gamma, iterations, threads }) → labels [H, W] uint8,
// computed off the JS thread.
#include "addon/dense_crf_wrap.h"

#include <ATen/Parallel.h>

#include <thread>

#include "addon/convert.h"
#include "postprocess/dense_crf.h"
#include "util/errors.h"

namespace ovam::addon {

namespace {
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
    // libtorch's thread count is process-wide, as load()'s `threads` sets it.
    at::set_num_threads(threads > 0 ? threads : std::max(1, int(std::thread::hardware_concurrency())));
    const int64_t height = image.size(0), width = image.size(1);
    auto labels = dense_crf(image.data_ptr<uint8_t>(), probabilities.data_ptr<float>(), height, width,
                            int(probabilities.size(0)), params);
    auto out = torch::from_blob(labels.data(), {height, width}, torch::kUInt8).clone();
    return [out](Napi::Env env) -> Napi::Value { return tensor_to_js(env, out); };
  });
}
}  // namespace

void init_dense_crf(Napi::Env env, Napi::Object exports) { exports.Set("denseCRF", Napi::Function::New(env, DenseCRF)); }

}  // namespace ovam::addon
