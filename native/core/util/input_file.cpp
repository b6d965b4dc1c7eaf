#include "util/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/errors.h"

namespace ovam {

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

void check(const std::string& path, const struct stat& st, uint64_t max_bytes) {
  if (!S_ISREG(st.st_mode))
    throw Error(code::kInvalidArgument, path + " is " + kind_of(st.st_mode) + "; accepted: a regular file");
  if (uint64_t(st.st_size) > max_bytes)
    throw Error(code::kInvalidArgument, path + " is " + std::to_string(st.st_size) + " bytes; accepted: at most " +
                                            std::to_string(max_bytes) + " bytes");
}

[[noreturn]] void fail_open(const std::string& path) {
  const int e = errno;
  throw Error(e == ENOENT || e == ENOTDIR ? code::kNotFound : code::kInvalidArgument,
              "cannot open " + path + ": " + std::strerror(e));
}

}  // namespace

int open_regular_file(const std::string& path, uint64_t max_bytes, uint64_t* size) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail_open(path);
  check(path, st, max_bytes);
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) fail_open(path);
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail_open(path);
  }
  try {
    check(path, st, max_bytes);
  } catch (...) {
    ::close(fd);
    throw;
  }
  *size = uint64_t(st.st_size);
  return fd;
}

std::string read_regular_file(const std::string& path, uint64_t max_bytes) {
  uint64_t size = 0;
  const int fd = open_regular_file(path, max_bytes, &size);
  // One byte more than the stat said, so a file that grew since is refused rather than cut.
  std::string bytes(size + 1, '\0');
  size_t length = 0;
  while (length < bytes.size()) {
    const ssize_t n = ::read(fd, &bytes[length], bytes.size() - length);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      throw Error(code::kInvalidArgument, "cannot read " + path + ": " + std::strerror(e));
    }
    if (n == 0) break;
    length += size_t(n);
  }
  ::close(fd);
  if (length > size) throw Error(code::kInvalidArgument, path + " grew while being read; accepted: a file nobody is writing");
  bytes.resize(length);
  return bytes;
}

}  // namespace ovam
