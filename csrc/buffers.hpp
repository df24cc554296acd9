// Memory of response bodies: allocation from a BufferAllocator (MallocAllocator is declared in
// s3_core.hpp), huge-page advice, prefaulting large bodies on a helper thread, and the budget of
// body bytes held at once (EngineOptions::max_inflight_bytes). Internal to the engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <future>
#include <vector>

#include "s3_core.hpp"

namespace awsio {

// A body of `size` bytes from `alloc`, in pieces cut at `cuts` when that is not empty; an empty
// Buffer (no handle) if that failed (never throws: it runs inside libcurl's callbacks).
Buffer new_body(BufferAllocator* alloc, size_t size, const std::vector<int64_t>& cuts);
// new_body into *body; false if that failed. A large body
// in one piece that is not warm starts being faulted in on a helper thread (*prefault;
// join_prefault before the body is handed out or released).
bool allocate_body(BufferAllocator* alloc, size_t size, const std::vector<int64_t>& cuts, Buffer* body,
                   std::future<void>* prefault);
void join_prefault(std::future<void>& prefault);
// What allocate_body does to a body it allocated (huge-page advice, prefaulting), for a body
// allocated elsewhere (RequestSpec::body).
void prepare_body(Buffer* body, std::future<void>* prefault);

// Bytes of bodies held against a limit: being received, or finished and not yet returned.
class InflightBudget {
 public:
  explicit InflightBudget(size_t limit) : limit_(limit) {}
  // A body of n bytes may be received now: within budget, or nothing else held (a body larger
  // than the budget proceeds alone). `queued`: bodies already wait for budget (they go first).
  bool admits(size_t n, bool queued) const {
    if (limit_ == 0) return true;
    if (queued) return false;
    return fits(n);
  }
  // Within budget, or nothing else held.
  bool fits(size_t n) const { return held_ == 0 || held_ + n <= limit_; }
  // Hold n bytes for a body (*charged: what that body holds).
  void charge(size_t* charged, size_t n) {
    *charged = n;
    held_ += n;
  }
  // Give back what a body held.
  void uncharge(size_t* charged) {
    give_back(*charged);
    *charged = 0;
  }
  void give_back(size_t n) { held_ -= n < held_ ? n : held_; }
  void clear() { held_ = 0; }
  size_t held() const { return held_; }

 private:
  size_t limit_;
  size_t held_ = 0;
};

}  // namespace awsio
