// One request inside the native engine: the state the engine (engine.cpp), request building
// (request.cpp), reply checks (response.cpp) and body memory (buffers.cpp) share. Internal: only
// the engine's own files include it (it brings in libcurl's header).
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <string>
#include <vector>

#include "checksum.hpp"
#include "response.hpp"
#include "s3_core.hpp"

namespace awsio {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// One HTTP request in flight, or a whole GET split into parts. A GET that may be large asks
// for its first part only; the reply's Content-Range gives the size, the whole body is allocated
// once, and the other parts are fetched by child transfers writing at their offsets (with
// If-Match on the first part's ETag, so every part comes from the same version of the object;
// a first reply without ETag, or without the object size, is dropped and the GET read again
// in one request).
struct Transfer {
  RequestSpec spec;
  void* owner = nullptr;  // the S3Engine::Impl
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  int attempts = 0;
  Clock::time_point first_start;
  Clock::time_point last_data;  // when this attempt last received a byte (headers or body)
  bool stalled = false;         // aborted for no data during read_timeout
  Clock::time_point retry_at;
  Tally tally;                  // requests and retries so far (a parent's includes its parts')
  uint64_t started_at = 0;      // Impl::performs when this attempt was added to the multi handle
  int64_t generation = 0;       // RateLimiter pacing generation of this attempt
  bool slot = false;            // waiting in `delayed` for the slot the limiter gave it
  // What this request asks for: [range_start, range_end), range_end < 0 to the end.
  int64_t range_start = 0;
  int64_t range_end = -1;
  bool split = false;           // asks for the first part of a larger GET
  // A part: its bytes go to parent->body at `offset`, exactly part_len of them.
  Transfer* parent = nullptr;
  size_t offset = 0;
  size_t part_len = 0;
  std::string if_match;
  // A parent: its parts, their count, and whether its own first part is in.
  std::vector<Transfer*> children;
  size_t spawn_from = 0;        // body offset where the parts begin (0: nothing to spawn)
  bool spawned = false;         // parts exist: the body outlives retries of the first part
  bool own_done = false;
  // The object's size as known: the caller's (spec.size), or the total the first part of a split
  // GET gave (its parts and retries must agree). -1: unknown.
  int64_t size = -1;
  // per attempt
  ReplyHeaders reply;           // what the reply's headers said
  bool first_write = true;
  bool alloc_failed = false;
  bool unsplit = false;         // a 206 to a split GET without ETag or object size: to be read again in one request
  Mismatch mismatch;            // the reply contradicts what was asked or is known
  Checksum sum;                 // the body's, when it is checked against reply.sum_value
  Buffer body;
  Buffer prebody;               // the caller's body for the expected reply (RequestSpec::body), until used
  size_t pre_charged = 0;       // bytes of the in-flight budget held for prebody
  Buffer* dest = nullptr;       // the body this response's bytes go to (its own, or its parent's)
  size_t dest_at = 0;           // from this offset in it
  size_t limit = 0;             // and how many it may write
  size_t charged = 0;           // bytes of the in-flight budget held for this body
  size_t want = 0;              // body size of this response (waiting for budget, or allocated)
  bool paused = false;          // waiting in Impl::paused for budget
  std::future<void> prefault;   // pages of `body` being faulted in; joined before body is let go
  size_t written = 0;
  std::string fallback;
  bool use_fallback = false;
  std::string error_body;
  char errbuf[CURL_ERROR_SIZE];
};

}  // namespace awsio
