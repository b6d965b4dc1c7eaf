// The thin N-API edge: tensors to and from { data, shape }, core errors to JS errors with a
// stable `code`, and one promise worker that runs a job off the JS thread.
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

namespace ovam::addon {

// { data: Float32Array | Uint8Array | …, shape: number[] } ↔ CPU tensor (a copy either way).
// kYes: the tensor is a job's fresh result that nothing in the core keeps, so JS may take its
// memory instead of a copy (copying tens of megabytes of maps on the JS thread stalls the event
// loop for as long as the page faults take). kNo (tensors the core keeps, such as a generation's
// image) copies, so that JS writes never reach the core's tensors.
enum class Lend { kNo, kYes };
Napi::Object tensor_to_js(Napi::Env env, const torch::Tensor& tensor, Lend lend = Lend::kNo);
torch::Tensor tensor_from_js(const Napi::Value& value, const std::string& what);

// A Node Buffer holding `bytes` (taken over, not copied, where the runtime allows).
Napi::Value bytes_to_js(Napi::Env env, std::string bytes);

// Throws ERR_OVAM_INVALID_ARGUMENT naming `what` when the tensor holds NaN or ±Infinity (the
// fused kernels' max and clamp would swallow them into plausible-looking maps).
void require_finite(Napi::Env env, const torch::Tensor& tensor, const std::string& what);

std::string get_string(const Napi::Object& o, const char* key, const std::string& fallback);
double get_number(const Napi::Object& o, const char* key, double fallback);
bool get_bool(const Napi::Object& o, const char* key, bool fallback);

// Throws a JS Error with `code` (our codes, or ERR_OVAM_INVALID_ARGUMENT for bad arguments).
[[noreturn]] void throw_js(Napi::Env env, const std::string& code, const std::string& message);

// What a long job can do while it runs: report progress to a JS callback (through a
// thread-safe function) and see whether JS asked to cancel.
class JobControl {
 public:
  std::atomic<bool> cancel{false};
  void report(double a, double b);
  Napi::ThreadSafeFunction progress;  // empty when no callback was given
};

// Runs `work` on the libuv pool; `done` turns its result into JS on the main thread.
// Exceptions from either (any type) reject the promise with a coded error. With a progress
// callback, the promise settles only once every progress call queued by the work was delivered
// (a thread-safe function's calls may otherwise arrive after the job's completion).
class Job : public Napi::AsyncWorker {
 public:
  using Work = std::function<std::function<Napi::Value(Napi::Env)>()>;
  static Napi::Promise queue(Napi::Env env, Work work);
  // The same with progress and cancellation: returns { promise, cancel() }.
  using ControlledWork = std::function<std::function<Napi::Value(Napi::Env)>(JobControl&)>;
  static Napi::Object queue_controlled(Napi::Env env, Napi::Value on_progress, ControlledWork work);

 private:
  Job(Napi::Env env, Work work);
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;
  void reject();  // with code_ and message_
  // Runs `settle` now, or when the progress calls are drained.
  void settle(std::function<void()> settle);
  struct Drain {
    bool drained = true;
    std::function<void()> then;
  };
  std::shared_ptr<Drain> drain_ = std::make_shared<Drain>();
  Work work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::string code_, message_;
  Napi::Promise::Deferred deferred_;
};

}  // namespace ovam::addon
