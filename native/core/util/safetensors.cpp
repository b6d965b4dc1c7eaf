#include "util/safetensors.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "util/errors.h"
#include "util/input_file.h"
#include "util/json.h"

namespace ovam {

namespace {

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw Error(code::kSafetensors, file + ": " + what);
}

struct DtypeName {
  const char* name;
  torch::ScalarType type;
};
const DtypeName kDtypes[] = {
    {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16}, {"F64", torch::kFloat64},
    {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},     {"I8", torch::kInt8},
    {"U8", torch::kUInt8},    {"BOOL", torch::kBool},
};

}  // namespace

SafetensorsFile::~SafetensorsFile() {
  if (mapped_ && data_) munmap(const_cast<uint8_t*>(data_), size_);
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  uint64_t size = 0;
  const int fd = open_regular_file(path, std::numeric_limits<uint64_t>::max(), &size);
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(size);
  if (file->size_ > 0) {
    // Copy-on-write: parameters may view this memory, and an in-place write to one must not
    // fault on a read-only page (nor reach the file).
    void* mem = mmap(nullptr, file->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (mem == MAP_FAILED) fail(path, std::string("mmap failed: ") + std::strerror(errno));
    file->data_ = static_cast<const uint8_t*>(mem);
    file->mapped_ = true;
  } else {
    ::close(fd);
  }
  file->parse();
  return file;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::from_bytes(std::string bytes, const std::string& label) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = label;
  file->owned_ = std::move(bytes);
  file->data_ = reinterpret_cast<const uint8_t*>(file->owned_.data());
  file->size_ = file->owned_.size();
  file->parse();
  return file;
}

void SafetensorsFile::parse() {
  if (size_ < 8) fail(path_, "file is " + std::to_string(size_) + " bytes, shorter than the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data_[i];
  if (header_len > size_ - 8)
    fail(path_, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                    std::to_string(size_) + " bytes)");
  data_offset_ = 8 + header_len;
  const size_t data_size = size_ - data_offset_;
  Json header = Json::parse(data_ + 8, data_ + 8 + header_len, nullptr, false);
  if (header.is_discarded()) fail(path_, "header is not valid JSON");
  if (!header.is_object()) fail(path_, "header is not a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const Json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path_, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m)
        if (m.value().is_string()) metadata_[m.key()] = m.value().get<std::string>();
      continue;
    }
    const std::string where = "tensor \"" + name + "\": ";
    if (!v.is_object()) fail(path_, where + "entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) fail(path_, where + "missing dtype");
    if (!v.contains("shape") || !v["shape"].is_array()) fail(path_, where + "missing shape");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      fail(path_, where + "data_offsets must be [begin, end]");
    Entry e;
    e.name = name;
    const std::string dtype = v["dtype"].get<std::string>();
    auto d = std::find_if(std::begin(kDtypes), std::end(kDtypes), [&](const DtypeName& x) { return dtype == x.name; });
    if (d == std::end(kDtypes)) fail(path_, where + "unknown dtype \"" + dtype + "\" (accepted: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)");
    e.dtype = d->type;
    // Bounding the element count (and each size, which a zero elsewhere would not) keeps
    // count × element size within int64: no wrapped byte count can pass the size check below.
    constexpr uint64_t kMaxElements = uint64_t(1) << 59;
    uint64_t count = 1;
    for (const auto& s : v["shape"]) {
      if (!s.is_number_unsigned()) fail(path_, where + "shape entries must be non-negative integers");
      uint64_t dim = s.get<uint64_t>();
      if (dim > kMaxElements || (dim != 0 && count > kMaxElements / dim)) fail(path_, where + "shape is too large");
      count *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(path_, where + "data_offsets must be non-negative integers");
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    const std::string offsets = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "]";
    if (begin > end) fail(path_, where + offsets + ": end is before begin");
    if (end > data_size)
      fail(path_, where + offsets + " out of range of the " + std::to_string(data_size) + "-byte data section");
    const uint64_t bytes = count * torch::elementSize(e.dtype);
    if (end - begin != bytes)
      fail(path_, where + "holds " + std::to_string(end - begin) + " bytes, its dtype and shape need " +
                      std::to_string(bytes));
    e.begin = begin;
    e.end = end;
    index_[name] = entries_.size();
    entries_.push_back(std::move(e));
  }
  // Overlapping extents would alias two tensors' storage: reject them. Compared against the
  // furthest-reaching extent so far, not just the previous one (which may be short or empty).
  std::vector<const Entry*> sorted;
  for (const auto& e : entries_)
    if (e.end > e.begin) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  const Entry* reach = nullptr;
  for (const Entry* e : sorted) {
    if (reach && e->begin < reach->end)
      fail(path_, "tensors \"" + reach->name + "\" and \"" + e->name + "\" overlap");
    if (!reach || e->end > reach->end) reach = e;
  }
}

bool SafetensorsFile::contains(const std::string& name) const { return index_.count(name) > 0; }

const SafetensorsFile::Entry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error(code::kWeights, path_ + ": no tensor \"" + name + "\"");
  return entries_[it->second];
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const Entry& e = entry(name);
  const size_t element = torch::elementSize(e.dtype);
  void* ptr = const_cast<uint8_t*>(data_ + data_offset_ + e.begin);
  if (reinterpret_cast<uintptr_t>(ptr) % element != 0) {
    // Unaligned data (allowed by the format): copy it out rather than view misaligned memory.
    auto out = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype));
    std::memcpy(out.data_ptr(), ptr, e.end - e.begin);
    return out;
  }
  return torch::from_blob(ptr, e.shape, [keep = shared_from_this()](void*) {}, torch::TensorOptions().dtype(e.dtype));
}

std::string encode_safetensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> contiguous;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    auto c = t.detach().to(torch::kCPU).contiguous();
    auto d = std::find_if(std::begin(kDtypes), std::end(kDtypes), [&](const DtypeName& x) { return x.type == c.scalar_type(); });
    if (d == std::end(kDtypes)) throw Error(code::kInvalidArgument, "cannot save tensor \"" + name + "\" of dtype " + std::string(c.dtype().name()));
    const size_t bytes = c.numel() * c.element_size();
    header[name] = {{"dtype", d->name}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(c);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned for mmap views
  std::string out;
  out.reserve(8 + text.size() + offset);
  const uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  out += text;
  for (const auto& c : contiguous) out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  return out;
}

}  // namespace ovam
