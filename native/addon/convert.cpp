#include "addon/convert.h"

#include <new>
#include <tuple>
#include <utility>

#include "util/errors.h"
#include "util/threads.h"

namespace ovam::addon {

namespace {
// The typed array over a tensor's bytes: `take` hands the tensor's memory to JS without a copy,
// where the runtime allows external buffers; otherwise the bytes are copied.
template <typename T, typename ArrayT>
Napi::Value array_of(Napi::Env env, const torch::Tensor& t, bool take) {
  const size_t count = size_t(t.numel()), bytes = count * sizeof(T);
  if (!take || bytes == 0) {
    auto array = ArrayT::New(env, count);
    if (bytes) std::memcpy(array.Data(), t.data_ptr<T>(), bytes);
    return array;
  }
  auto* owned = new torch::Tensor(t);
  Napi::MemoryManagement::AdjustExternalMemory(env, int64_t(bytes));
  auto buffer = Napi::Buffer<uint8_t>::NewOrCopy(env, static_cast<uint8_t*>(owned->data_ptr()), bytes, [bytes](Napi::Env env, uint8_t*, torch::Tensor* tensor) {
    delete tensor;
    Napi::MemoryManagement::AdjustExternalMemory(env, -int64_t(bytes));
  }, owned);
  return ArrayT::New(env, count, buffer.ArrayBuffer(), buffer.ByteOffset());
}
}  // namespace

Napi::Object tensor_to_js(Napi::Env env, const torch::Tensor& tensor, Lend lend) {
  auto t = tensor.detach().to(torch::kCPU);
  if (t.scalar_type() != torch::kUInt8 && t.scalar_type() != torch::kInt64 && t.scalar_type() != torch::kInt32)
    t = t.to(torch::kFloat32);
  t = t.contiguous();
  // A conversion above made new memory; otherwise the memory is taken only when the caller lends
  // it (reference counts cannot tell: a view keeps its base alive, in the core or not).
  const bool take = lend == Lend::kYes || !t.storage().is_alias_of(tensor.storage());
  Napi::Object out = Napi::Object::New(env);
  switch (t.scalar_type()) {
    case torch::kUInt8: out.Set("data", array_of<uint8_t, Napi::Uint8Array>(env, t, take)); break;
    case torch::kInt32: out.Set("data", array_of<int32_t, Napi::Int32Array>(env, t, take)); break;
    case torch::kInt64: out.Set("data", array_of<int64_t, Napi::BigInt64Array>(env, t, take)); break;
    default: out.Set("data", array_of<float, Napi::Float32Array>(env, t, take));
  }
  auto shape = Napi::Array::New(env, t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) shape.Set(uint32_t(i), Napi::Number::New(env, double(t.size(i))));
  out.Set("shape", shape);
  return out;
}

torch::Tensor tensor_from_js(const Napi::Value& value, const std::string& what) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) throw_js(env, code::kInvalidArgument, what + ": expected { data, shape }");
  auto o = value.As<Napi::Object>();
  auto data = o.Get("data");
  auto shape_v = o.Get("shape");
  if (!shape_v.IsArray()) throw_js(env, code::kInvalidArgument, what + ".shape: expected an array of sizes");
  auto shape_a = shape_v.As<Napi::Array>();
  std::vector<int64_t> shape;
  int64_t count = 1;
  for (uint32_t i = 0; i < shape_a.Length(); ++i) {
    auto s = shape_a.Get(i);
    if (!s.IsNumber() || s.As<Napi::Number>().DoubleValue() < 0)
      throw_js(env, code::kInvalidArgument, what + ".shape: sizes must be non-negative integers");
    shape.push_back(s.As<Napi::Number>().Int64Value());
    count *= shape.back();
  }
  if (!data.IsTypedArray()) throw_js(env, code::kInvalidArgument, what + ".data: expected a Float32Array or Uint8Array");
  auto typed = data.As<Napi::TypedArray>();
  torch::ScalarType type;
  switch (typed.TypedArrayType()) {
    case napi_float32_array: type = torch::kFloat32; break;
    case napi_uint8_array: type = torch::kUInt8; break;
    default: throw_js(env, code::kInvalidArgument, what + ".data: expected a Float32Array or Uint8Array");
  }
  if (int64_t(typed.ElementLength()) != count)
    throw_js(env, code::kInvalidArgument, what + ": data has " + std::to_string(typed.ElementLength()) +
                                             " values, shape needs " + std::to_string(count));
  auto bytes = static_cast<uint8_t*>(typed.ArrayBuffer().Data()) + typed.ByteOffset();
  return torch::from_blob(bytes, shape, torch::TensorOptions().dtype(type)).clone();
}

void require_finite(Napi::Env env, const torch::Tensor& tensor, const std::string& what) {
  if (!torch::isfinite(tensor).all().item<bool>())
    throw_js(env, code::kInvalidArgument, what + " holds NaN or infinite values; accepted: finite numbers");
}

Napi::Value bytes_to_js(Napi::Env env, std::string bytes) {
  // The buffer takes over the string's memory (no copy of what may be gigabytes of attention)
  // where the runtime allows external buffers, and copies it where it does not.
  // V8 is told of the memory, so that the garbage collector frees a written buffer soon.
  auto* owned = new std::string(std::move(bytes));
  const int64_t size = int64_t(owned->size());
  Napi::MemoryManagement::AdjustExternalMemory(env, size);
  return Napi::Buffer<char>::NewOrCopy(env, owned->data(), owned->size(), [size](Napi::Env env, char*, std::string* s) {
    delete s;
    Napi::MemoryManagement::AdjustExternalMemory(env, -size);
  }, owned);
}

std::string get_string(const Napi::Object& o, const char* key, const std::string& fallback) {
  auto v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : fallback;
}
double get_number(const Napi::Object& o, const char* key, double fallback) {
  auto v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}
bool get_bool(const Napi::Object& o, const char* key, bool fallback) {
  auto v = o.Get(key);
  return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : fallback;
}

void throw_js(Napi::Env env, const std::string& code, const std::string& message) {
  auto error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  throw error;
}

void JobControl::report(double a, double b) {
  if (!progress) return;
  auto* values = new std::pair<double, double>(a, b);
  auto status = progress.NonBlockingCall(values, [](Napi::Env env, Napi::Function fn, std::pair<double, double>* v) {
    std::vector<napi_value> args{Napi::Number::New(env, v->first), Napi::Number::New(env, v->second)};
    delete v;
    // A throwing progress callback must not take the job down with it (the TS layer sees its
    // error itself and cancels the job).
    try {
      fn.Call(args);
    } catch (...) {
    }
  });
  if (status != napi_ok) delete values;
}

Napi::Object Job::queue_controlled(Napi::Env env, Napi::Value on_progress, ControlledWork work) {
  auto control = std::make_shared<JobControl>();
  auto* job = new Job(env, [control, work]() {
    struct Release {
      JobControl& c;
      ~Release() {
        if (c.progress) c.progress.Release();
      }
    } release{*control};
    return work(*control);
  });
  if (on_progress.IsFunction()) {
    // The finalizer runs on the JS thread after the last queued call was delivered.
    job->drain_->drained = false;
    control->progress = Napi::ThreadSafeFunction::New(env, on_progress.As<Napi::Function>(), "ovam-progress", 0, 1,
                                                      [drain = job->drain_](Napi::Env) {
                                                        drain->drained = true;
                                                        if (drain->then) std::exchange(drain->then, nullptr)();
                                                      });
  }
  auto promise = job->deferred_.Promise();
  job->Queue();
  auto handle = Napi::Object::New(env);
  handle.Set("promise", promise);
  handle.Set("cancel", Napi::Function::New(env, [control](const Napi::CallbackInfo& info) {
    control->cancel = true;
    return info.Env().Undefined();
  }));
  return handle;
}

Napi::Promise Job::queue(Napi::Env env, Work work) {
  auto* job = new Job(env, std::move(work));
  auto promise = job->deferred_.Promise();
  job->Queue();
  return promise;
}

void Job::settle(std::function<void()> then) {
  if (drain_->drained) then();
  else drain_->then = std::move(then);
}

namespace {
// A value kept alive until a later callback; any value (references hold only objects before
// Node-API 10, so it rides in an object).
std::function<Napi::Value()> hold(Napi::Env env, Napi::Value value) {
  auto holder = Napi::Object::New(env);
  holder.Set("value", value);
  auto ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(holder));
  return [ref]() { return ref->Value().Get("value"); };
}
}  // namespace

Job::Job(Napi::Env env, Work work) : Napi::AsyncWorker(env), work_(std::move(work)), deferred_(Napi::Promise::Deferred::New(env)) {}

namespace {
// The code and message of any exception: ours keep their code, libtorch's and the standard
// library's become kInternal.
std::pair<std::string, std::string> describe(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const ovam::Error& e) {
    return {e.code(), e.what()};
  } catch (const c10::Error& e) {
    return {code::kInternal, e.what_without_backtrace()};
  } catch (const std::bad_alloc&) {
    return {code::kInternal, "out of memory"};
  } catch (const std::exception& e) {
    return {code::kInternal, e.what()};
  } catch (...) {
    return {code::kInternal, "unknown native exception"};
  }
}
}  // namespace

void Job::Execute() {
  try {
    use_intra_op_threads();  // this pool thread's count may not be the process's (util/threads.h)
    done_ = work_();
    return;
  } catch (...) {
    std::tie(code_, message_) = describe(std::current_exception());
  }
  SetError(message_);
}

// Converting the result to JS runs on the main thread: an exception escaping here would
// terminate Node, so every one becomes the promise's rejection.
void Job::OnOK() {
  Napi::Env env = Env();
  try {
    auto value = hold(env, done_(env));
    settle([deferred = deferred_, value]() { deferred.Resolve(value()); });
    return;
  } catch (const Napi::Error& e) {
    auto error = hold(env, e.Value());
    settle([deferred = deferred_, error]() { deferred.Reject(error()); });
    return;
  } catch (...) {
    std::tie(code_, message_) = describe(std::current_exception());
  }
  reject();
}

void Job::OnError(const Napi::Error&) { reject(); }

void Job::reject() {
  settle([deferred = deferred_, code = code_, message = message_]() {
    Napi::Env env = deferred.Env();
    try {
      auto error = Napi::Error::New(env, message);
      error.Set("code", Napi::String::New(env, code));
      deferred.Reject(error.Value());
    } catch (const Napi::Error& e) {
      deferred.Reject(e.Value());
    }
  });
}

}  // namespace ovam::addon
