// Filling a module's parameters from checkpoint tensors, strictly: every parameter must be found
// with its exact shape, and (in a strict load) every tensor of the file must belong to a parameter.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

namespace ovam {

// Named CPU tensors of one checkpoint file, in their stored dtype, and the file they came from.
struct NamedTensors {
  std::string file;
  std::map<std::string, torch::Tensor> tensors;
  std::shared_ptr<void> keepalive;  // the mapping the tensors view
};

// A component folder's weights: `diffusion_pytorch_model.safetensors` / `model.safetensors`
// (or their `.fp16` variants), or a TorchScript archive (`*.pt`, `torch.jit.save`) given as a file.
NamedTensors read_weights(const std::string& path_or_folder);
NamedTensors read_safetensors_weights(const std::string& file);
NamedTensors read_torchscript_weights(const std::string& file);

struct LoadOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  bool strict = true;
  // Storage of the matrix weights (Linear, Conv2d) when narrower than `dtype` (nn::BuildScope).
  std::optional<torch::ScalarType> matrix_dtype;
};

// Tensor names a real file may carry that are not parameters (e.g. position_ids); skipped silently.
using IgnoredNames = std::set<std::string>;

// Assigns every parameter of `module`, in the dtype it was built with (options.dtype, or
// options.matrix_dtype for matrix weights); views the file's memory when dtype and device already fit.
// Throws kWeights naming the file and tensor for a missing tensor, a shape mismatch, or (strict)
// an unknown extra tensor.
void load_weights(torch::nn::Module& module, const NamedTensors& weights, const LoadOptions& options,
                  const IgnoredNames& ignored = {});

// Fills every parameter with N(0, std) (benchmarks on real architectures without files).
void randomize_weights(torch::nn::Module& module, double std = 0.02, uint64_t seed = 0);

torch::ScalarType parse_dtype(const std::string& name);  // float32 | float16 | bfloat16
// "auto": bfloat16 where `device` computes it natively (CUDA; a CPU with AVX-512 BF16 or AMX), else float32.
torch::ScalarType auto_dtype(const torch::Device& device);
std::string dtype_name(torch::ScalarType type);          // the inverse, for the names users pass
torch::Device parse_device(const std::string& name);     // cpu | cuda | cuda:N

}  // namespace ovam
