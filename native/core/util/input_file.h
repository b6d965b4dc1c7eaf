// Opening input files without hanging or flooding memory: only regular files are accepted,
// checked by stat before the open (opening a FIFO blocks until a writer comes; a device can be
// read forever) and by fstat after a non-blocking open (the path may change in between).
#pragma once
#include <cstdint>
#include <string>

namespace ovam {

// A read-only descriptor of the regular file at `path` (the caller closes it); `size` gets its
// size. Errors: kNotFound when it is missing, kInvalidArgument when it is not a regular file or
// larger than `max_bytes`.
int open_regular_file(const std::string& path, uint64_t max_bytes, uint64_t* size);

// The whole regular file at `path`, at most `max_bytes` long.
std::string read_regular_file(const std::string& path, uint64_t max_bytes);

}  // namespace ovam
