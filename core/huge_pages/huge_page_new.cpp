// The moesim and bench programs' operator new: blocks of 2 MiB and more advised onto
// transparent huge pages. Linked into those executables only (core/CMakeLists.txt).
//
// Why: a simulation of thousands of GPUs holds arrays of millions of flows (the fast network
// tier's records and path pool, the collectives' transfers) and reads them in no order; on
// 4 KiB pages nearly every such read misses the TLB. Linux's transparent huge pages run by
// default in "madvise" mode, so memory gets 2 MiB pages only where a program asks: this
// operator new asks for each block of at least kHugePageBytes, as glibc's own
// glibc.malloc.hugetlb=1 tunable would for every block (it can only be set in the environment
// before the program starts). Measured in bench/README.md ("Network tiers"): the 512- to
// 2,048-GPU all-to-alls run 20-25% faster, with the same results. Where the kernel has no huge
// pages the advice is ignored. Blocks stay malloc's, so the standard operator delete (free)
// is kept and nothing else changes.
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace {

constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;
constexpr std::uintptr_t kPageBytes = 4096;

void* allocate(std::size_t bytes) noexcept {
  void* p = std::malloc(bytes == 0 ? 1 : bytes);
  if (p != nullptr && bytes >= kHugePageBytes) {
    // The whole pages inside the block (madvise takes page-aligned ranges); advice only.
    const auto at = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t begin = (at + kPageBytes - 1) & ~(kPageBytes - 1);
    const std::uintptr_t end = (at + bytes) & ~(kPageBytes - 1);
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
  return p;
}

void* allocate_or_throw(std::size_t bytes) {
  for (;;) {
    if (void* p = allocate(bytes)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

}  // namespace

void* operator new(std::size_t bytes) {
  return allocate_or_throw(bytes);
}
void* operator new[](std::size_t bytes) {
  return allocate_or_throw(bytes);
}
void* operator new(std::size_t bytes, const std::nothrow_t&) noexcept {
  return allocate(bytes);
}
void* operator new[](std::size_t bytes, const std::nothrow_t&) noexcept {
  return allocate(bytes);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
