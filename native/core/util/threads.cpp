#include "util/threads.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <thread>

namespace ovam {

namespace {
std::atomic<int> stored{0};
int cores() { return std::max(1, int(std::thread::hardware_concurrency())); }
}  // namespace

void set_intra_op_threads(int threads) {
  stored = threads > 0 ? threads : cores();
  at::set_num_threads(stored);
}

void use_intra_op_threads() {
  const int threads = stored > 0 ? stored.load() : cores();
  if (at::get_num_threads() != threads) at::set_num_threads(threads);
}

}  // namespace ovam
