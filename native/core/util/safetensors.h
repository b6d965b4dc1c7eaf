// safetensors files: read through mmap (tensors are views into the mapping, no copy) and encoded
// to bytes (the Node layer writes them with its one atomic writer). Every malformed input gives kSafetensors naming the file and, where one is at fault,
// the tensor; nothing is read outside the mapping.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ovam {

class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  struct Entry {
    std::string name;
    torch::ScalarType dtype;
    std::vector<int64_t> shape;
    size_t begin, end;  // offsets into the data section
  };

  // Maps the file (a regular file only) and validates the header and every entry's extent.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  // Validates an in-memory buffer the same way (the tests feed malformed bytes through this).
  static std::shared_ptr<SafetensorsFile> from_bytes(std::string bytes, const std::string& label);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<Entry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;
  const Entry& entry(const std::string& name) const;
  // A CPU tensor viewing the mapping, in the file's dtype; it keeps the mapping alive.
  torch::Tensor tensor(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  void parse();

  std::string path_;
  const uint8_t* data_ = nullptr;  // whole file
  size_t size_ = 0;
  size_t data_offset_ = 0;  // start of the data section
  bool mapped_ = false;
  std::string owned_;  // backing store when built from bytes
  std::vector<Entry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// The bytes of a safetensors file holding `tensors` (any device; dtypes F32, F16, BF16, F64, I64,
// I32, I16, I8, U8, BOOL) with string metadata.
std::string encode_safetensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

}  // namespace ovam
