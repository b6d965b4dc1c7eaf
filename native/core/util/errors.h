// Typed errors of the core. Every error carries a stable code that the Node layer maps to an
// error class, so callers never have to tell errors apart by message text.
#pragma once
#include <stdexcept>
#include <string>

namespace ovam {

namespace code {
inline constexpr const char* kInvalidArgument = "ERR_OVAM_INVALID_ARGUMENT";
inline constexpr const char* kConfig = "ERR_OVAM_CONFIG";          // a config value we do not implement
inline constexpr const char* kSafetensors = "ERR_OVAM_SAFETENSORS";  // malformed or truncated file
inline constexpr const char* kWeights = "ERR_OVAM_WEIGHTS";        // missing/extra/mis-shaped tensor
inline constexpr const char* kNotFound = "ERR_OVAM_NOT_FOUND";      // a file or folder that is not there
inline constexpr const char* kTokenizer = "ERR_OVAM_TOKENIZER";
inline constexpr const char* kDevice = "ERR_OVAM_DEVICE";          // device or dtype not available
inline constexpr const char* kAborted = "ERR_OVAM_ABORTED";
inline constexpr const char* kInternal = "ERR_OVAM_INTERNAL";      // a libtorch error we did not foresee
}  // namespace code

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message) : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

}  // namespace ovam
