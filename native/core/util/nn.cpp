#include "util/nn.h"

namespace ovam::nn {

torch::TensorOptions& build_options() {
  thread_local torch::TensorOptions options = torch::TensorOptions().dtype(torch::kFloat32);
  return options;
}

std::optional<torch::ScalarType>& build_matrix_dtype() {
  thread_local std::optional<torch::ScalarType> dtype;
  return dtype;
}

namespace {
thread_local FlopCount* active_count = nullptr;
}  // namespace

FlopCount::FlopCount() : previous_(active_count) { active_count = this; }
FlopCount::~FlopCount() { active_count = previous_; }
void FlopCount::add(double flops) {
  if (active_count) active_count->flops += flops;
}

namespace {
torch::Tensor make(at::IntArrayRef shape) { return torch::empty(shape, build_options()); }
torch::Tensor make_matrix(at::IntArrayRef shape) {
  const auto narrow = build_matrix_dtype();
  return torch::empty(shape, narrow ? build_options().dtype(*narrow) : build_options());
}
// A weight stored narrower than the input (float16 weights, float32 compute) widened for this call
// only: the layer's temporary, the largest one (1280×1280×3×3) 59 MB in float32.
torch::Tensor widened(const torch::Tensor& weight, const torch::Tensor& x) {
  return weight.scalar_type() == x.scalar_type() ? weight : weight.to(x.scalar_type());
}
}  // namespace

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias) {
  weight = register_parameter("weight", make_matrix({out, in}), false);
  if (with_bias) bias = register_parameter("bias", make({out}), false);
}
torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  FlopCount::add(2.0 * double(x.numel()) * double(weight.size(0)));
  return torch::linear(x, widened(weight, x), bias);
}

Conv2dImpl::Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride_, int64_t padding_, bool with_bias)
    : stride(stride_), padding(padding_) {
  weight = register_parameter("weight", make_matrix({out, in, kernel, kernel}), false);
  if (with_bias) bias = register_parameter("bias", make({out}), false);
}
torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) {
  auto y = torch::conv2d(x, widened(weight, x), bias, {stride, stride}, {padding, padding});
  FlopCount::add(2.0 * double(y.numel()) * double(weight.size(1) * weight.size(2) * weight.size(3)));
  return y;
}

GroupNormImpl::GroupNormImpl(int64_t groups_, int64_t channels, double eps_) : groups(groups_), eps(eps_) {
  weight = register_parameter("weight", make({channels}), false);
  bias = register_parameter("bias", make({channels}), false);
}
torch::Tensor GroupNormImpl::forward(const torch::Tensor& x) { return torch::group_norm(x, groups, weight, bias, eps); }

LayerNormImpl::LayerNormImpl(int64_t channels, double eps_) : eps(eps_) {
  weight = register_parameter("weight", make({channels}), false);
  bias = register_parameter("bias", make({channels}), false);
}
torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

EmbeddingImpl::EmbeddingImpl(int64_t count, int64_t dim) {
  weight = register_parameter("weight", make({count, dim}), false);
}
torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) { return torch::embedding(weight, ids); }

}  // namespace ovam::nn
