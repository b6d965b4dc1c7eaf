#include "util/huge_pages.h"

#include <c10/core/CPUAllocator.h>
#include <torch/version.h>

#include <cstdint>
#include <list>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

// libtorch 2.3 changed the Allocator interface (allocate() non-const, copy_data() added, since
// changed again); it is built against the interface of the libtorch this project tests (1.13).
#if defined(__linux__) && TORCH_VERSION_MAJOR == 1
#define OVAM_HUGE_PAGES
#include <sys/mman.h>
#endif
#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace ovam {
namespace {
// The free pages inside glibc's heaps, which a UNet step's smaller tensors leave behind (0.4–0.6 GiB
// after a 512² step; the decoder's large maps come from mmap and would not reuse them). Wherever
// glibc is, with or without the huge-page allocator.
void release_free_heap() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}
}  // namespace

#ifdef OVAM_HUGE_PAGES
namespace {

constexpr size_t kHugePage = size_t(2) << 20;
// glibc's largest mmap threshold: smaller blocks come from its heap, whose pages are reused.
constexpr size_t kLarge = size_t(32) << 20;

// The mappings this allocator made, by address, with their lengths (munmap needs them).
std::mutex mappings_mutex;
std::unordered_map<void*, size_t>& mappings() {
  static auto* m = new std::unordered_map<void*, size_t>();  // never destroyed: tensors may outlive statics
  return *m;
}

// Freed mappings kept for the next tensor of the same length, oldest first: a UNet step allocates
// the sizes the step before it freed, and a fresh mapping is faulted in again (with THP's direct
// compaction on this VM: an SD 1.5 256² step took 2.2–4.8 s on fresh mappings, 2.0–2.2 s under an
// allocator that keeps freed memory). At most kCachedBytes, since what it keeps adds to the peak
// (a 512² generation's in the benchmark, before the decoder ran channels-last: 5.67 GiB without,
// 5.99 with 256 MiB, 6.40 with 1 GiB); release_cached_pages() unmaps them.
constexpr size_t kCachedBytes = size_t(256) << 20;
std::list<std::pair<size_t, void*>>& cached() {
  static auto* c = new std::list<std::pair<size_t, void*>>();
  return *c;
}
size_t cached_bytes = 0;  // under mappings_mutex

void release(void* p) {
  if (reinterpret_cast<uintptr_t>(p) % kHugePage == 0) {
    std::vector<std::pair<size_t, void*>> unmap;
    bool ours = false;
    {
      std::lock_guard<std::mutex> lock(mappings_mutex);
      auto it = mappings().find(p);
      if (it != mappings().end()) {
        ours = true;
        const size_t length = it->second;
        mappings().erase(it);
        if (length > kCachedBytes) {
          unmap.emplace_back(length, p);
        } else {
          while (cached_bytes + length > kCachedBytes) {
            unmap.push_back(cached().front());
            cached_bytes -= cached().front().first;
            cached().pop_front();
          }
          cached().emplace_back(length, p);
          cached_bytes += length;
        }
      }
    }
    for (const auto& [length, mapping] : unmap) munmap(mapping, length);
    if (ours) return;
  }
  std::free(p);  // the other allocator's blocks (raw_deallocate), from posix_memalign
}

// A mapping of `n` bytes starting on a huge-page boundary (over-mapped, then trimmed at both ends).
void* map_huge(size_t n) {
  // Whole huge pages, so that tensors a few bytes apart share cached mappings.
  const size_t length = (n + kHugePage - 1) & ~(kHugePage - 1);
  {
    std::lock_guard<std::mutex> lock(mappings_mutex);
    for (auto it = cached().begin(); it != cached().end(); ++it) {
      if (it->first != length) continue;
      void* reused = it->second;
      cached_bytes -= length;
      cached().erase(it);
      mappings().emplace(reused, length);
      return reused;
    }
  }
  auto* raw = static_cast<char*>(mmap(nullptr, length + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (raw == MAP_FAILED) throw std::bad_alloc();
  auto* start = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + kHugePage - 1) & ~(kHugePage - 1));
  if (start > raw) munmap(raw, size_t(start - raw));
  if (const size_t tail = size_t(raw + length + kHugePage - (start + length)); tail > 0) munmap(start + length, tail);
  madvise(start, length, MADV_HUGEPAGE);  // advice only: without THP the pages are 4 KiB, as before
  std::lock_guard<std::mutex> lock(mappings_mutex);
  mappings().emplace(start, length);
  return start;
}

class HugePageAllocator final : public c10::Allocator {
 public:
  explicit HugePageAllocator(c10::Allocator* small) : small_(small) {}
  c10::DataPtr allocate(size_t n) const override {
    if (n < kLarge) return small_->allocate(n);
    void* p = map_huge(n);
    return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

 private:
  c10::Allocator* small_;
};

}  // namespace

void use_huge_page_allocator(bool on) {
  static std::once_flag once;
  static c10::Allocator* libtorch = nullptr;
  static HugePageAllocator* allocator = nullptr;  // never destroyed: libtorch holds it to the end
  std::call_once(once, [] {
#ifdef __GLIBC__
    // Fixed at what glibc's adaptive thresholds reach after the first large free, from the start.
    mallopt(M_MMAP_THRESHOLD, int(kLarge));
    mallopt(M_TRIM_THRESHOLD, int(2 * kLarge));
#endif
    libtorch = c10::GetCPUAllocator();
    allocator = new HugePageAllocator(libtorch);
  });
  c10::SetCPUAllocator(on ? static_cast<c10::Allocator*>(allocator) : libtorch, /*priority=*/1);
}

void release_cached_pages() {
  std::list<std::pair<size_t, void*>> unmap;
  {
    std::lock_guard<std::mutex> lock(mappings_mutex);
    unmap.swap(cached());
    cached_bytes = 0;
  }
  for (const auto& [length, mapping] : unmap) munmap(mapping, length);
  release_free_heap();
}
#else
void use_huge_page_allocator(bool) {}
void release_cached_pages() { release_free_heap(); }
#endif

}  // namespace ovam
