// The native S3 reader's core: plain C++17 over the libcurl multi interface (no Python here).
//
// One S3Engine owns one CURLM handle (a pool of keep-alive connections) and is driven by the
// thread that calls wait(): transfers progress only inside wait(), so the engine creates no
// threads and a forked child that never calls it never touches the parent's sockets.
// Bodies are written into buffers obtained from a BufferAllocator once the response's
// Content-Length is known, so the Python binding can hand out the buffer as a `bytes` object
// without copying.
//
// The implementation, one concern a file: engine.cpp (the transfer loop: retries, split GETs,
// the in-flight budget, stalls), request.cpp (URLs, headers, SigV4 through libcurl),
// response.cpp (header parsing, reply checks, error Results), buffers.cpp (body memory,
// prefaulting); transfer.hpp holds the per-request state they share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rate_limiter.hpp"

namespace awsio {

// The engine's settings. Each is set from Python by its name (the second column, the same name
// as the S3Config field it comes from: awsio/s3/native_backend.py copies every S3Config field
// marked native=True), so a new setting is one line here and one field in S3Config.
//   X(type, member, default, python name)
#define AWSIO_ENGINE_OPTIONS(X)                                                                 \
  X(std::string, endpoint, "", "endpoint")     /* scheme://host[:port], no trailing slash */    \
  X(std::string, region, "us-east-1", "region")                                                 \
  X(bool, path_style, true, "path_style")                                                       \
  X(bool, unsigned_requests, false, "unsigned")                                                 \
  X(bool, verify, true, "verify")                                                               \
  X(std::string, ca_bundle, "", "ca_bundle")   /* empty: libcurl's default */                   \
  X(int, max_connections, 32, "max_connections")                                                \
  X(double, connect_timeout, 10.0, "connect_timeout")  /* seconds */                            \
  /* abort a transfer that receives nothing for this many seconds */                            \
  X(double, read_timeout, 60.0, "read_timeout")                                                 \
  X(int, max_attempts, 5, "max_attempts")                                                       \
  X(double, deadline_s, 0.0, "deadline")       /* per request, across retries; 0: none */       \
  X(double, backoff_base_s, 0.05, "backoff_base")                                               \
  X(double, backoff_cap_s, 5.0, "backoff_cap")                                                  \
  /* Bytes of response bodies held at once (being received, or finished and not yet returned  \
     by wait()). A response that would go over waits, paused, until enough is returned; a body \
     larger than the whole budget proceeds alone. 0: no limit. */                               \
  X(size_t, max_inflight_bytes, 0, "max_inflight_bytes")                                        \
  /* A GET to the end of an object, or of a range over twice this, asks for this much first;   \
     the reply tells the size and the rest is fetched in parts this big, in parallel. 0: one   \
     request. */                                                                                \
  X(size_t, part_size, size_t(8) << 20, "part_size")                                            \
  /* Check bodies against the full-object checksum S3 sends back to a GET of a whole object. */ \
  X(bool, verify_checksums, true, "verify_checksums")

struct EngineOptions {
#define AWSIO_OPTION_MEMBER(type, name, def, py) type name = def;
  AWSIO_ENGINE_OPTIONS(AWSIO_OPTION_MEMBER)
#undef AWSIO_OPTION_MEMBER
};

// Why a failed attempt was tried again (counted per result, see Tally).
enum class Cause { Throttle = 0, ServerError = 1, Reset = 2, Timeout = 3, Integrity = 4 };
constexpr int kCauses = 5;

// What one request cost: HTTP attempts (a split GET's parts and every retry included), retries
// by Cause, and the time to the first byte of the reply that was used (-1: none). An attempt
// counts once libcurl has started on it (connecting or sending), whatever its outcome, as the
// Python backend counts one when it sends it.
struct Tally {
  int requests = 0;
  int retries[kCauses] = {0, 0, 0, 0, 0};
  double ttfb_s = -1;
  void add(const Tally& o) {
    requests += o.requests;
    for (int i = 0; i < kCauses; ++i) retries[i] += o.retries[i];
  }
};

// Where response bodies go. alloc() may be called from inside libcurl callbacks on the
// thread running S3Engine::wait(); release() frees a buffer that will not be returned.
struct Buffer {
  void* handle = nullptr;  // owner token (a PyObject* in the binding)
  char* data = nullptr;    // the body, when it is one piece
  size_t size = 0;
  bool warm = false;       // memory already faulted in (a recycled buffer): no prefault needed
  // A body in pieces (RequestSpec::cuts): piece i is bytes [ends[i-1], ends[i]) of the body
  // (from 0 for the first), at pieces[i]; ends.back() == size. Empty: the body is `data`.
  std::vector<char*> pieces;
  std::vector<size_t> ends;
};

// Copy n bytes into `body` at offset `at` (at + n <= body.size), across pieces if it has them.
void write_body_at(Buffer& body, size_t at, const char* src, size_t n);

class BufferAllocator {
 public:
  virtual ~BufferAllocator() = default;
  virtual Buffer alloc(size_t size) = 0;
  // A body of `size` bytes in pieces ending at `ends` (ends.back() == size). An allocator that
  // has no use for pieces may return one piece (the caller then cuts it).
  virtual Buffer alloc_pieces(size_t size, const std::vector<size_t>& ends) {
    (void)ends;
    return alloc(size);
  }
  virtual void release(Buffer& buf) = 0;
};

// A heap allocator for C++ users and tests. (buffers.cpp)
class MallocAllocator : public BufferAllocator {
 public:
  Buffer alloc(size_t size) override;
  void release(Buffer& buf) override;
};

struct RequestSpec {
  int64_t tag = 0;       // caller's id, returned with the result
  std::string bucket;
  std::string key;
  int64_t start = 0;     // half-open range [start, end); end < 0: to the end of the object
  int64_t end = -1;
  // The object's size if the caller knows it (listing, HEAD), else -1. A reply that contradicts
  // it is retried, then reported as IntegrityError "SizeMismatch".
  int64_t size = -1;
  bool head = false;
  // A GET of a known range may ask for its body in pieces cut at these offsets into the range
  // (non-decreasing, each within it): the bytes are written straight into the pieces (a tar
  // range into its members, with no second copy). Honoured when the reply is exactly the range
  // (206); otherwise the body is one piece.
  std::vector<int64_t> cuts;
  // A request on the bucket with this query (canonical: sorted, URI-encoded; see
  // canonical_query), `key` empty: a listing. Its reply is one body: no range, no parts.
  std::string query;
  // The ETag the object must still have (If-Match, on every attempt and part): the requests of
  // one read stay on one version; a replaced object is a 412, not a mix of versions.
  std::string if_match;
  // A body the caller allocated for the reply it expects (the range's bytes, in pieces at `cuts`
  // when it has them), so that the transfer needs no allocation of its own (the binding's needs
  // the GIL, which a busy Python thread holds for milliseconds while every transfer waits).
  // Used when the reply is exactly that; the engine owns it from submit() on, holds it against
  // the in-flight budget from then, and releases it when it is not used.
  Buffer body;
};

// IntegrityError: the server answered, but the reply contradicted what was asked or is known
// (code "SizeMismatch", "RangeMismatch" or "ChecksumMismatch"; `expected`, `got` say how).
enum class ResultKind { Ok, HttpError, ConnectionError, IntegrityError, Cancelled };

struct Result {
  int64_t tag = 0;
  ResultKind kind = ResultKind::Ok;
  bool head = false;
  // Ok GET: the body is `body` if body.handle is set (allocated with the allocator), else
  // `fallback` (size was unknown in advance, e.g. chunked encoding).
  Buffer body;
  std::string fallback;
  bool has_fallback = false;
  // The server ignored our Range header and sent the whole object (200): the caller slices.
  bool whole_object = false;
  // Ok HEAD
  int64_t size = -1;
  std::string etag;
  int64_t last_modified = -1;  // POSIX seconds, -1 unknown
  // errors
  long status = 0;
  std::string code, message, request_id, region;
  std::string reason;  // libcurl's error text for connection errors; what an integrity check saw
  std::string expected, got;  // IntegrityError: the value known or asked for, and the reply's
  int attempts = 0;
  Tally tally;
  size_t charged = 0;  // bytes of the in-flight budget this result holds until wait() returns it
};

struct Credentials {
  std::string access_key, secret_key, token;
};

// S3 rules: encode every byte but unreserved A-Za-z0-9-._~ (and '/' when keep_slash). (request.cpp)
std::string uri_encode(const std::string& s, bool keep_slash);
// Sort query parameters by name then value, each URI-encoded (SigV4 canonical query string). (request.cpp)
std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& params);
// The libcurl version string the engine runs on. (engine.cpp)
std::string curl_version_string();
// Pull <Tag>value</Tag> out of an S3 XML error body ("" if absent). (response.cpp)
std::string xml_field(const std::string& body, const std::string& tag);

class S3Engine {
 public:
  // `limiter` (may be null: no pacing) is shared with the other engines of the same client.
  S3Engine(EngineOptions opts, BufferAllocator* allocator, std::shared_ptr<RateLimiter> limiter = nullptr);
  ~S3Engine();
  S3Engine(const S3Engine&) = delete;
  S3Engine& operator=(const S3Engine&) = delete;

  void set_credentials(const Credentials& creds);
  // The URL a request goes to (path-style or virtual-hosted), without query.
  std::string object_url(const std::string& bucket, const std::string& key) const;

  // Takes spec.body (left empty); when this throws before taking it, it is still the caller's.
  void submit(RequestSpec& spec);
  // Drive transfers until at least one request finished (returns them) or timeout_s passed
  // (returns none). timeout_s < 0: wait as long as needed. Returns at once when idle.
  std::vector<Result> wait(double timeout_s);
  // Abort every pending request; their buffers are released. Returns what the aborted requests
  // cost, which no other Result reports: kind Cancelled, `tally` their attempts (those that went
  // out) and retries, `attempts` the same summed over requests; tag 0.
  Result cancel_all();
  // Make a wait() running in another thread (or the next one) return now, with what it has.
  // The only call that is safe while another thread is inside wait().
  void wakeup();
  size_t pending() const;
  // Bytes of bodies held against max_inflight_bytes, and transfers paused waiting for budget.
  size_t held_bytes() const;
  size_t paused() const;
  // Forget every handle without cleaning up (a forked child must not touch the parent's
  // connections: closing them would disturb the parent's TLS sessions).
  void abandon();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace awsio
