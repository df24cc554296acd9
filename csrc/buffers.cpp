// Memory of response bodies (buffers.hpp): the heap allocator, huge-page advice, prefaulting.
#include "buffers.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace awsio {

namespace {

// Large bodies are written once, front to back. With AWSIO_HUGEPAGES=1, ask for transparent
// huge pages: one fault per 2 MiB instead of 512. Off by default: when the kernel has to compact
// memory to find huge pages it costs more than it saves (measured on a 2-core VM).
void advise_large_buffer(char* data, size_t size) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kHuge = size_t(2) << 20;
  static const bool enabled = [] {
    const char* v = std::getenv("AWSIO_HUGEPAGES");
    return v != nullptr && v[0] == '1';  // opt-in: slower on VMs short of free huge pages
  }();
  if (!enabled || size < 2 * kHuge) return;
  uintptr_t a = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(uintptr_t(kHuge) - 1);
  uintptr_t b = (reinterpret_cast<uintptr_t>(data) + size) & ~(uintptr_t(kHuge) - 1);
  if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);
#else
  (void)data;
  (void)size;
#endif
}

// Fresh memory costs a page fault and the kernel zeroing each page on first write; for large
// bodies that is most of the client's CPU. A helper thread faults the pages in ahead of the
// transfer (MADV_POPULATE_WRITE only maps pages, it never writes data), so the zeroing runs on
// another core while this thread keeps receiving. AWSIO_PREFAULT=0 turns it off.
constexpr size_t kPrefaultMin = size_t(8) << 20;

bool prefault_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("AWSIO_PREFAULT");
    return !(v && v[0] == '0');
  }();
  return enabled;
}

void populate(char* data, size_t size) {
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  uintptr_t a = (reinterpret_cast<uintptr_t>(data) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + size) & ~(page - 1);
  const uintptr_t step = uintptr_t(4) << 20;
  for (; a < end; a += step) {
    if (madvise(reinterpret_cast<void*>(a), std::min(step, end - a), MADV_POPULATE_WRITE) != 0) return;
  }
#else
  (void)data;
  (void)size;
#endif
}

}  // namespace

Buffer MallocAllocator::alloc(size_t size) {
  Buffer b;
  b.data = static_cast<char*>(std::malloc(size ? size : 1));
  if (!b.data) throw std::bad_alloc();
  b.handle = b.data;
  b.size = size;
  return b;
}

void MallocAllocator::release(Buffer& buf) {
  std::free(buf.handle);
  buf = Buffer{};
}

void write_body_at(Buffer& body, size_t at, const char* src, size_t n) {
  if (body.pieces.empty()) {
    std::memcpy(body.data + at, src, n);
    return;
  }
  // the first piece that ends past `at` (empty pieces end where they start: passed over)
  size_t i = size_t(std::upper_bound(body.ends.begin(), body.ends.end(), at) - body.ends.begin());
  while (n > 0 && i < body.pieces.size()) {
    const size_t begin = i ? body.ends[i - 1] : 0;
    const size_t k = std::min(n, body.ends[i] - at);
    std::memcpy(body.pieces[i] + (at - begin), src, k);
    at += k;
    src += k;
    n -= k;
    ++i;
  }
}

Buffer new_body(BufferAllocator* alloc, size_t size, const std::vector<int64_t>& cuts) {
  try {
    if (cuts.empty()) return alloc->alloc(size);
    std::vector<size_t> ends(cuts.begin(), cuts.end());
    ends.push_back(size);
    return alloc->alloc_pieces(size, ends);
  } catch (...) {  // never let an exception cross libcurl's C frames
    return Buffer{};
  }
}

bool allocate_body(BufferAllocator* alloc, size_t size, const std::vector<int64_t>& cuts, Buffer* body,
                   std::future<void>* prefault) {
  *body = new_body(alloc, size, cuts);
  if (!body->handle) return false;
  prepare_body(body, prefault);
  return true;
}

void prepare_body(Buffer* body, std::future<void>* prefault) {
  if (!body->pieces.empty()) return;
  advise_large_buffer(body->data, body->size);
  if (!body->warm && body->size >= kPrefaultMin && prefault_enabled()) {
    char* d = body->data;
    size_t n = body->size;
    try {
      *prefault = std::async(std::launch::async, [d, n] { populate(d, n); });
    } catch (...) {  // no thread to spare: the transfer faults its own pages
    }
  }
}

void join_prefault(std::future<void>& prefault) {
  if (prefault.valid()) prefault.wait();
}

}  // namespace awsio
