// The few layer types Stable Diffusion is built from, with diffusers' parameter names.
// Parameters are created uninitialised with the options of the current build scope (device, dtype,
// or the meta device to list names and shapes without allocating); weights.h fills them.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ovam::nn {

// Options every parameter is created with; a scope sets them for the modules built inside it.
torch::TensorOptions& build_options();
// The dtype the matrix weights (Linear, Conv2d) are stored in, when narrower than the compute dtype
// (LoadOptions::matrix_dtype); absent: the compute dtype. Those weights are widened on use.
std::optional<torch::ScalarType>& build_matrix_dtype();
class BuildScope {
 public:
  explicit BuildScope(torch::TensorOptions options, std::optional<torch::ScalarType> matrix_dtype = std::nullopt)
      : saved_(build_options()), saved_matrix_(build_matrix_dtype()) {
    build_options() = options;
    build_matrix_dtype() = matrix_dtype;
  }
  ~BuildScope() {
    build_options() = saved_;
    build_matrix_dtype() = saved_matrix_;
  }

 private:
  torch::TensorOptions saved_;
  std::optional<torch::ScalarType> saved_matrix_;
};

// Counts the floating-point operations (2 per multiply-add) of the matrix work issued on this
// thread while alive: benchmarks report achieved GFLOP/s with it. Costs one branch when unused.
class FlopCount {
 public:
  FlopCount();
  ~FlopCount();
  double flops = 0;
  static void add(double flops);

 private:
  FlopCount* previous_;
};

// SiLU of a temporary no one else holds (a norm's output), in place: at 512² the VAE decoder's
// activations are 134–268 MB each, and a second copy set its peak. Out of place when autograd
// records it (silu's gradient needs the input).
inline torch::Tensor silu_temporary(torch::Tensor x) { return x.requires_grad() ? torch::silu(x) : torch::silu_(x); }

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in, int64_t out, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
};
TORCH_MODULE(Linear);

class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
  int64_t stride, padding;
};
TORCH_MODULE(Conv2d);

class GroupNormImpl : public torch::nn::Module {
 public:
  GroupNormImpl(int64_t groups, int64_t channels, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
  int64_t groups;
  double eps;
};
TORCH_MODULE(GroupNorm);

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t channels, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
  double eps;
};
TORCH_MODULE(LayerNorm);

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t count, int64_t dim);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

// A numbered child list ("resnets.0", "resnets.1", ...) that keeps its element type.
template <typename T>
class List {
 public:
  List() = default;
  List(torch::nn::Module& parent, const std::string& name)
      : holder_(parent.register_module(name, std::make_shared<torch::nn::Module>())) {}
  T& push_back(T item) {
    holder_->register_module(std::to_string(items_.size()), item.ptr());
    items_.push_back(item);
    return items_.back();
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  T& operator[](size_t i) { return items_[i]; }
  const T& operator[](size_t i) const { return items_[i]; }
  auto begin() { return items_.begin(); }
  auto end() { return items_.end(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::shared_ptr<torch::nn::Module> holder_;
  std::vector<T> items_;
};

}  // namespace ovam::nn
