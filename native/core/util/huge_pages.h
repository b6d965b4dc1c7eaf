// Large CPU tensors on transparent huge pages. Each tensor of 32 MiB or more (attention scores,
// feed-forward and decoder activations) used to come from a fresh mmap faulted in 4 KiB at a time,
// and on this project's VM a fault is dear: a 512² SD 1.5 UNet step spent a third of its time in
// the kernel and took 58 s; with these tensors mapped 2 MiB-aligned and madvised MADV_HUGEPAGE
// (512 times fewer faults) it took 14.6 s, and a 256² step 4.2–4.6 s instead of 10.6. Linux with
// THP "madvise" or "always", libtorch 1.x (huge_pages.cpp says why); elsewhere nothing changes.
#pragma once

namespace ovam {

// Makes it libtorch's CPU allocator (on = false: libtorch's own again, which the benchmark compares
// with). Smaller tensors always come from libtorch's own allocator.
void use_huge_page_allocator(bool on = true);

// Unmaps the freed large mappings kept for reuse (at most 256 MiB) and returns glibc's free heap
// pages to the system (on every glibc build): where a phase that allocates other sizes begins (a
// generation's VAE decode) and where one ends, so that they never add to a later peak.
void release_cached_pages();

}  // namespace ovam
