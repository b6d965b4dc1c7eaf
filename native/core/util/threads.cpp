#include "util/threads.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <thread>

namespace ovam {

namespace {
std::atomic<int> stored{0};
}  // namespace

int intra_op_threads(int threads) { return threads > 0 ? threads : std::max(1, int(std::thread::hardware_concurrency())); }

void set_intra_op_threads(int threads) {
  stored = intra_op_threads(threads);
  at::set_num_threads(stored);
}

void use_intra_op_threads() {
  const int threads = intra_op_threads(stored);
  if (at::get_num_threads() != threads) at::set_num_threads(threads);
}

}  // namespace ovam
