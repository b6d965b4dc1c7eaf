// libtorch's intra-op thread count, process-wide. With OpenMP, at::set_num_threads sets the count
// of the calling thread only, and a thread that ran a parallel op before any was set keeps 1 in
// this build: a job landing on such a worker thread computed with one thread and (reductions split
// differently) gave results 5e-5 apart from the same seed. So the count is stored here and every
// job applies it on its own thread before it starts.
#pragma once

namespace ovam {

// `threads`, or the machine's cores when it is ≤ 0 (what every `threads` option means).
int intra_op_threads(int threads);
// Stores intra_op_threads(threads) as the process's count and applies it here.
void set_intra_op_threads(int threads);
// Applies the stored count (the machine's cores if none was set) on the calling thread.
void use_intra_op_threads();

}  // namespace ovam
