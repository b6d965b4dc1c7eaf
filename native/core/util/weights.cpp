#include "util/weights.h"

#include <fstream>
#include <sstream>

#include <torch/script.h>

#include <filesystem>

#include "util/errors.h"
#include "util/safetensors.h"

namespace ovam {

namespace fs = std::filesystem;

namespace {
std::string shape_text(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}
}  // namespace

NamedTensors read_safetensors_weights(const std::string& file) {
  auto st = SafetensorsFile::open(file);
  NamedTensors out;
  out.file = file;
  out.keepalive = st;
  for (const auto& e : st->entries()) out.tensors[e.name] = st->tensor(e.name);
  return out;
}

NamedTensors read_torchscript_weights(const std::string& file) {
  torch::jit::Module module;
  try {
    module = torch::jit::load(file, torch::kCPU);
  } catch (const c10::Error& e) {
    throw Error(code::kWeights, file + ": not a TorchScript archive (" + std::string(e.what_without_backtrace()) + ")");
  }
  NamedTensors out;
  out.file = file;
  for (const auto& p : module.named_parameters(true)) out.tensors[p.name] = p.value.detach();
  for (const auto& b : module.named_buffers(true)) out.tensors[b.name] = b.value.detach();
  return out;
}

NamedTensors read_weights(const std::string& path) {
  if (fs::is_regular_file(path)) {
    const std::string ext = fs::path(path).extension().string();
    if (ext == ".safetensors") return read_safetensors_weights(path);
    if (ext == ".pt" || ext == ".pth" || ext == ".ts") return read_torchscript_weights(path);
    throw Error(code::kWeights, path + ": unknown weights format (accepted: .safetensors, TorchScript .pt)");
  }
  if (!fs::is_directory(path)) throw Error(code::kNotFound, path + ": no such folder or file");
  for (const char* name : {"diffusion_pytorch_model.safetensors", "model.safetensors",
                           "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors"}) {
    fs::path p = fs::path(path) / name;
    if (fs::is_regular_file(p)) return read_safetensors_weights(p.string());
  }
  throw Error(code::kNotFound, path + ": no diffusion_pytorch_model.safetensors or model.safetensors in this folder");
}

void load_weights(torch::nn::Module& module, const NamedTensors& weights, const LoadOptions& options,
                  const IgnoredNames& ignored) {
  std::set<std::string> used;
  auto assign = [&](const std::string& name, torch::Tensor& target) {
    auto it = weights.tensors.find(name);
    if (it == weights.tensors.end())
      throw Error(code::kWeights, weights.file + ": missing tensor \"" + name + "\" (expected shape " +
                                      shape_text(target.sizes()) + ")");
    const torch::Tensor& src = it->second;
    if (src.sizes() != target.sizes())
      throw Error(code::kWeights, weights.file + ": tensor \"" + name + "\" has shape " + shape_text(src.sizes()) +
                                      ", expected " + shape_text(target.sizes()));
    if (!src.is_floating_point())
      throw Error(code::kWeights, weights.file + ": tensor \"" + name + "\" is not floating point");
    used.insert(name);
    // Modules are built on the meta device, and set_data refuses a change of backend in libtorch
    // 1.13: swap the tensor's storage and metadata in place instead (what set_data does after its
    // check), so every handle on the parameter (module members included) sees the data.
    torch::Tensor data = src.device() == options.device && src.scalar_type() == target.scalar_type()
                             ? src  // a view of the mapped file: no copy
                             : src.to(options.device, target.scalar_type());
    target.unsafeGetTensorImpl()->shallow_copy_from(data.getIntrusivePtr());
  };
  for (auto& p : module.named_parameters(true)) assign(p.key(), p.value());
  for (auto& b : module.named_buffers(true)) assign(b.key(), b.value());
  if (options.strict) {
    for (const auto& [name, t] : weights.tensors)
      if (!used.count(name) && !ignored.count(name))
        throw Error(code::kWeights, weights.file + ": unexpected tensor \"" + name + "\" " + shape_text(t.sizes()) +
                                        " that this model does not have");
  }
}

void randomize_weights(torch::nn::Module& module, double std, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& p : module.named_parameters(true)) {
    auto cpu = torch::empty(p.value().sizes(), torch::kFloat32);
    cpu.normal_(0.0, std, gen);
    p.value().set_data(cpu.to(p.value().device(), p.value().scalar_type()));
  }
}

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return torch::kFloat32;
  if (name == "float16" || name == "fp16") return torch::kFloat16;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  throw Error(code::kInvalidArgument, "dtype \"" + name + "\" is not supported (accepted: float32, float16, bfloat16)");
}

namespace {
// Whether the CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX): Linux's cpuinfo flags.
bool cpu_has_bf16() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream flags(line.substr(line.find(':') + 1));
    std::string flag;
    while (flags >> flag)
      if (flag == "avx512_bf16" || flag == "amx_bf16") return true;
    return false;
  }
  return false;
}
}  // namespace

torch::ScalarType auto_dtype(const torch::Device& device) {
  // Measured on an EPYC with AVX-512 BF16: a UNet step takes about half the float32 time. Without
  // native bf16 the CPU emulates it, slower than float32. GPUs from Ampere on compute bf16.
  if (device.is_cuda()) return torch::kBFloat16;
  static const bool bf16 = cpu_has_bf16();
  return bf16 ? torch::kBFloat16 : torch::kFloat32;
}

std::string dtype_name(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat32: return "float32";
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    default: return c10::toString(type);
  }
}

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error(code::kDevice, "device \"" + name + "\" requested but this libtorch build has no CUDA or no GPU is visible");
    try {
      torch::Device d(name);
      if (d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count()))
        throw Error(code::kDevice, "device \"" + name + "\": only " + std::to_string(torch::cuda::device_count()) + " CUDA device(s)");
      return d;
    } catch (const c10::Error&) {
    }
  }
  throw Error(code::kInvalidArgument, "device \"" + name + "\" is not supported (accepted: cpu, cuda, cuda:N)");
}

}  // namespace ovam
