// Implementation of the native S3 engine (see s3_core.hpp). Plain C++17 + libcurl.
#include "s3_core.hpp"

#include <curl/curl.h>
#include <strings.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <random>
#include <stdexcept>
#include <unordered_set>

#include "checksum.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace awsio {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct GlobalInit {
  GlobalInit() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

void ensure_global_init() { static GlobalInit once; }

bool ieq_prefix(const char* line, size_t len, const char* name) {
  size_t n = std::strlen(name);
  if (len < n + 1 || line[n] != ':') return false;
  for (size_t i = 0; i < n; ++i) {
    if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
  }
  return true;
}

std::string header_value(const char* line, size_t len, size_t name_len) {
  size_t i = name_len + 1;
  while (i < len && (line[i] == ' ' || line[i] == '\t')) ++i;
  size_t j = len;
  while (j > i && (line[j - 1] == '\r' || line[j - 1] == '\n' || line[j - 1] == ' ')) --j;
  return std::string(line + i, j - i);
}

// libcurl failures worth another attempt: the network or the peer misbehaved, not our request.
bool retryable_curl_error(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WRITE_ERROR:  // body longer than Content-Length said: try again
      return true;
    default:
      return false;
  }
}

constexpr size_t kMaxErrorBody = 64 * 1024;

// "bytes first-last/total" ("*" for an unknown total; "bytes */total" in a 416). What is absent
// or malformed stays -1.
void parse_content_range(const std::string& v, int64_t* first, int64_t* last, int64_t* total) {
  *first = *last = *total = -1;
  if (v.compare(0, 6, "bytes ") != 0) return;
  const char* p = v.c_str() + 6;
  char* end = nullptr;
  if (*p == '*') {
    end = const_cast<char*>(p + 1);
  } else {
    long long a = std::strtoll(p, &end, 10);
    if (end == p || *end != '-' || a < 0) return;
    p = end + 1;
    long long b = std::strtoll(p, &end, 10);
    if (end == p || b < a) return;
    *first = a;
    *last = b;
  }
  if (*end != '/' || end[1] == '*') return;
  p = end + 1;
  long long n = std::strtoll(p, &end, 10);
  if (end == p || *end != 0 || n < 0) return;
  if (*last >= n) {  // "bytes 0-99/50" holds bytes the object does not have: not valid
    *first = *last = -1;
    return;
  }
  *total = n;
}

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

std::string uri_encode(const std::string& s, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& params) {
  std::vector<std::pair<std::string, std::string>> enc;
  enc.reserve(params.size());
  for (const auto& p : params) enc.emplace_back(uri_encode(p.first, false), uri_encode(p.second, false));
  std::sort(enc.begin(), enc.end());
  std::string out;
  for (const auto& p : enc) {
    if (!out.empty()) out.push_back('&');
    out += p.first;
    out.push_back('=');
    out += p.second;
  }
  return out;
}

std::string curl_version_string() { return curl_version(); }

std::string xml_field(const std::string& body, const std::string& tag) {
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  size_t a = body.find(open);
  if (a == std::string::npos) return "";
  a += open.size();
  size_t b = body.find(close, a);
  if (b == std::string::npos) return "";
  return body.substr(a, b - a);
}

// One HTTP request in flight, or a whole GET split into parts. A GET that may be large asks
// for its first part only; the reply's Content-Range gives the size, the whole body is allocated
// once, and the other parts are fetched by child transfers writing at their offsets (with
// If-Match on the first part's ETag, so every part comes from the same version of the object).
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
  int64_t total = -1;           // Content-Range: bytes cr_first-cr_last/total (-1: absent)
  int64_t cr_first = -1, cr_last = -1;
  std::string content_range;
  bool first_write = true;
  bool alloc_failed = false;
  bool no_total = false;        // a 206 to a split GET without "Content-Range: .../size"
  // The reply contradicts what was asked or is known: code, why, and the two values.
  std::string mismatch, mismatch_reason, expected, got;
  // The reply's full-object checksum (x-amz-checksum-*), and the body's, when it is checked.
  ChecksumAlgo sum_algo = ChecksumAlgo::None;
  std::string sum_value;
  bool sum_composite = false;   // x-amz-checksum-type: COMPOSITE (a checksum of part checksums)
  Checksum sum;
  Buffer body;
  char* dest = nullptr;         // where this response's bytes go
  size_t limit = 0;             // and how many it may write
  size_t charged = 0;           // bytes of the in-flight budget held for this body
  size_t want = 0;              // body size of this response (waiting for budget, or allocated)
  bool paused = false;          // waiting in Impl::paused for budget
  std::future<void> prefault;   // pages of `body` being faulted in; joined before body is let go
  size_t written = 0;
  std::string fallback;
  bool use_fallback = false;
  std::string error_body;
  std::string request_id, bucket_region, etag;
  int64_t last_modified = -1;
  char errbuf[CURL_ERROR_SIZE];
};

struct S3Engine::Impl {
  EngineOptions opts;
  BufferAllocator* alloc;
  std::shared_ptr<RateLimiter> limiter;   // null: no pacing
  CURLM* multi = nullptr;
  std::atomic<bool> woken{false};  // set by wakeup(), from any thread
  Credentials creds;
  std::vector<CURL*> idle_easy;
  std::unordered_set<Transfer*> active;   // added to the multi handle
  std::unordered_set<Transfer*> waiting;  // parents whose first part is in, waiting for parts
  std::deque<Transfer*> delayed;          // waiting for a retry timer
  std::vector<Transfer*> to_spawn;        // parents whose parts are to be started
  std::vector<Result> done;               // finished, not yet returned
  std::vector<Transfer*> paused;          // headers in, body waiting for budget (in `active` too)
  size_t held = 0;                        // budget charged: bodies in transfers and in `done`
  std::mt19937_64 rng{std::random_device{}()};
  std::string scheme, host;               // split endpoint for virtual-hosted URLs

  Impl(EngineOptions o, BufferAllocator* a, std::shared_ptr<RateLimiter> l)
      : opts(std::move(o)), alloc(a), limiter(std::move(l)) {
    ensure_global_init();
    multi = curl_multi_init();
    if (!multi) throw std::runtime_error("curl_multi_init failed");
    long n = opts.max_connections;
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, n);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, n);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, n);
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, long(CURLPIPE_NOTHING));
    size_t p = opts.endpoint.find("://");
    scheme = p == std::string::npos ? "https" : opts.endpoint.substr(0, p);
    host = p == std::string::npos ? opts.endpoint : opts.endpoint.substr(p + 3);
  }

  ~Impl() {
    cancel_all();
    for (CURL* e : idle_easy) curl_easy_cleanup(e);
    if (multi) curl_multi_cleanup(multi);
  }

  std::string url_for(const std::string& bucket, const std::string& key) const {
    std::string enc = uri_encode(key, true);
    if (opts.path_style) return opts.endpoint + "/" + uri_encode(bucket, false) + "/" + enc;
    return scheme + "://" + bucket + "." + host + "/" + enc;
  }

  static size_t on_header(char* data, size_t size, size_t n, void* ud) {
    auto* t = static_cast<Transfer*>(ud);
    size_t len = size * n;
    t->last_data = Clock::now();
    if (len >= 5 && std::strncmp(data, "HTTP/", 5) == 0) {  // a new response (e.g. after 100)
      t->request_id.clear();
      t->bucket_region.clear();
      t->etag.clear();
      t->last_modified = -1;
      t->total = t->cr_first = t->cr_last = -1;
      t->content_range.clear();
      t->sum_algo = ChecksumAlgo::None;
      t->sum_value.clear();
      t->sum_composite = false;
    } else if (ieq_prefix(data, len, "x-amz-request-id")) {
      t->request_id = header_value(data, len, 16);
    } else if (ieq_prefix(data, len, "x-amz-bucket-region")) {
      t->bucket_region = header_value(data, len, 19);
    } else if (ieq_prefix(data, len, "etag")) {
      t->etag = header_value(data, len, 4);
    } else if (ieq_prefix(data, len, "last-modified")) {
      std::string v = header_value(data, len, 13);
      time_t when = curl_getdate(v.c_str(), nullptr);
      t->last_modified = when < 0 ? -1 : int64_t(when);
    } else if (ieq_prefix(data, len, "content-range")) {
      t->content_range = header_value(data, len, 13);
      parse_content_range(t->content_range, &t->cr_first, &t->cr_last, &t->total);
    } else if (len > 15 && strncasecmp(data, "x-amz-checksum-", 15) == 0) {
      const char* colon = static_cast<const char*>(std::memchr(data, ':', len));
      if (colon) note_checksum(t, std::string(data + 15, size_t(colon - data) - 15), header_value(data, len, size_t(colon - data)));
    }
    return len;
  }

  // x-amz-checksum-<name>: value. Of several, the cheapest is kept; "<b64>-<N>" is a checksum of
  // N parts' checksums, which the body cannot be checked against.
  static void note_checksum(Transfer* t, std::string name, const std::string& value) {
    for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (name == "type") {
      t->sum_composite = strcasecmp(value.c_str(), "COMPOSITE") == 0;
      return;
    }
    ChecksumAlgo algo = checksum_algo(name);
    size_t dash = value.rfind('-');
    bool of_parts = dash != std::string::npos && dash + 1 < value.size() &&
                    value.find_first_not_of("0123456789", dash + 1) == std::string::npos;
    if (algo == ChecksumAlgo::None || of_parts || value.empty()) return;
    if (t->sum_algo == ChecksumAlgo::None || int(algo) < int(t->sum_algo)) {
      t->sum_algo = algo;
      t->sum_value = value;
    }
  }

  // Check the body against the server's full-object checksum: only a reply that is the whole
  // object (S3 sends none for ranges; a server that sends the object's for a range is not believed).
  void start_checksum(Transfer* t, long status) const {
    const bool whole = status == 200 || (status == 206 && t->cr_first == 0 && t->cr_last + 1 == t->total);
    if (whole && !t->parent && !t->spawn_from && !t->sum_composite && opts.verify_checksums) {
      t->sum.start(t->sum_algo);
    }
  }

  // A body of n bytes may be received now: within budget, or nothing else held (a body larger
  // than the budget proceeds alone). Paused responses go first, in request order.
  bool admissible(size_t n) const {
    if (opts.max_inflight_bytes == 0) return true;
    if (!paused.empty()) return false;
    return held == 0 || held + n <= opts.max_inflight_bytes;
  }

  void charge(Transfer* t, size_t n) {
    t->charged = n;
    held += n;
  }

  void uncharge(Transfer* t) {
    held -= std::min(held, t->charged);
    t->charged = 0;
  }

  void forget_paused(Transfer* t) {
    if (!t->paused) return;
    paused.erase(std::remove(paused.begin(), paused.end(), t), paused.end());
    t->paused = false;
  }

  // Resume paused responses, oldest request first, while the budget allows.
  void resume_paused() {
    if (paused.empty()) return;
    std::sort(paused.begin(), paused.end(),
              [](const Transfer* a, const Transfer* b) { return a->spec.tag < b->spec.tag; });
    size_t i = 0;
    for (; i < paused.size(); ++i) {
      Transfer* t = paused[i];
      if (held != 0 && held + t->want > opts.max_inflight_bytes) break;
      charge(t, t->want);
      t->paused = false;
      t->last_data = Clock::now();  // waiting for budget is not a stall
    }
    std::vector<Transfer*> go(paused.begin(), paused.begin() + i);
    paused.erase(paused.begin(), paused.begin() + i);
    // Unpausing may deliver the buffered data at once (write_body sees the charge and allocates).
    for (Transfer* t : go) curl_easy_pause(t->easy, CURLPAUSE_CONT);
  }

  // The body size a 200/206 reply to `t` stands for: its Content-Length, or for the first part
  // of a split GET the whole requested range as clipped by the object's size.
  size_t body_size(const Transfer* t, long status, int64_t len) const {
    const int64_t total = t->total >= 0 ? t->total : t->size;
    if (!t->split || status != 206 || total < 0) return size_t(len);
    int64_t end = t->spec.end < 0 ? total : std::min<int64_t>(t->spec.end, total);
    return end > t->spec.start ? size_t(end - t->spec.start) : size_t(len);
  }

  // Record why this attempt's reply cannot be used (the first reason wins); returns false.
  static bool mismatch(Transfer* t, const char* code, const char* why, const std::string& expected,
                       const std::string& got) {
    if (t->mismatch.empty()) {
      t->mismatch = code;
      t->mismatch_reason = why;
      t->expected = expected;
      t->got = got;
    }
    return false;
  }

  // Does a 200/206 reply to `t` agree with the range asked for and the object's known size?
  // Checked once its headers are in. If not, records the mismatch and returns false. The same
  // checks, in the same order and words, as awsio/s3/integrity.py (the Python backend's).
  static bool check_reply(Transfer* t, long status, curl_off_t cl) {
    using std::to_string;
    const int64_t known = t->size;
    const std::string asked =
        "bytes " + to_string(t->range_start) + "-" + (t->range_end >= 0 ? to_string(t->range_end - 1) : "");
    if (status == 200) {
      if (t->parent || t->spawned) {  // the server ignored Range for a part: not a part
        return mismatch(t, "RangeMismatch", "a 200 reply (the whole object) to a part's ranged GET", asked,
                        "200");
      }
      if (known >= 0 && cl >= 0 && int64_t(cl) != known) {
        return mismatch(t, "SizeMismatch", "the object's length differs from the known size", to_string(known),
                        to_string(cl));
      }
      return true;
    }
    if (t->cr_first < 0) {
      return mismatch(t, "RangeMismatch", "a 206 reply without a valid Content-Range", asked, t->content_range);
    }
    if (known >= 0 && t->total >= 0 && t->total != known) {
      return mismatch(t, "SizeMismatch", "the object size in Content-Range differs from the known size",
                      to_string(known), to_string(t->total));
    }
    // [range_start, range_end) clipped by the size when known; unknown: at most range_end.
    const int64_t total = t->total >= 0 ? t->total : known;
    int64_t end = t->range_end;
    if (total >= 0) end = end < 0 ? total : std::min(end, total);
    const bool exact = total >= 0;
    if (t->cr_first != t->range_start ||
        (end >= 0 && (exact ? t->cr_last + 1 != end : t->cr_last + 1 > end))) {
      return mismatch(t, "RangeMismatch", "a 206 reply for another range than asked", asked, t->content_range);
    }
    const int64_t n = t->cr_last - t->cr_first + 1;
    if (cl >= 0 && int64_t(cl) != n) {
      return mismatch(t, "SizeMismatch", "the body length differs from its Content-Range", to_string(n),
                      to_string(cl));
    }
    return true;
  }

  // Allocate the body of a 200/206 reply; false (write error) if that failed.
  bool allocate_body(Transfer* t, size_t size) {
    try {
      t->body = alloc->alloc(size);
    } catch (...) {  // never let an exception cross libcurl's C frames
      t->body = Buffer{};
    }
    if (!t->body.handle) return false;
    advise_large_buffer(t->body.data, t->body.size);
    if (!t->body.warm && t->body.size >= kPrefaultMin && prefault_enabled()) {
      char* d = t->body.data;
      size_t n = t->body.size;
      try {
        t->prefault = std::async(std::launch::async, [d, n] { populate(d, n); });
      } catch (...) {  // no thread to spare: the transfer faults its own pages
      }
    }
    return true;
  }

  // Called once per response, at its first body byte. Returns 0 to go on, or the value the write
  // callback returns (pause, or 0 for a write error).
  size_t start_body(Transfer* t, bool* stop) {
    *stop = false;
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t cl = -1;
    curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (status != 200 && status != 206) {  // an error body
      t->first_write = false;
      return 0;
    }
    if (!check_reply(t, status, cl)) {  // not what was asked for: retried, then reported
      t->first_write = false;
      *stop = true;
      return 0;
    }
    // The body's length: Content-Length, or for a chunked 206 its Content-Range (checked above).
    const int64_t len = cl >= 0 ? int64_t(cl) : status == 206 ? t->cr_last - t->cr_first + 1 : -1;
    if (t->parent || t->spawned) {  // a part, or a first part retried while its parts are out:
      t->first_write = false;       // exactly its bytes (checked above), at its place in the body
      t->dest = t->parent ? t->parent->body.data + t->offset : t->body.data;
      t->limit = t->parent ? t->part_len : t->spawn_from;
      return 0;
    }
    if (len < 0) {  // size unknown in advance (chunked): collected, then copied once
      t->first_write = false;
      t->use_fallback = true;
      start_checksum(t, status);
      return 0;
    }
    if (t->split && status == 206 && t->total < 0 && t->size < 0 &&
        len >= t->range_end - t->range_start) {  // a full part, and no size: how much more?
      t->no_total = true;
      *stop = true;
      t->first_write = false;
      return 0;
    }
    size_t need = body_size(t, status, len);
    if (t->charged == 0 && !admissible(need)) {
      // Over budget: leave the body in the socket (libcurl delivers this data again on resume)
      // until results are returned. resume_paused() charges it first.
      t->want = need;
      if (!t->paused) {
        t->paused = true;
        paused.push_back(t);
      }
      *stop = true;
      return CURL_WRITEFUNC_PAUSE;
    }
    t->first_write = false;
    t->want = need;
    if (t->charged == 0) charge(t, need);
    if (!allocate_body(t, need)) {
      t->alloc_failed = true;
      *stop = true;
      return 0;
    }
    t->dest = t->body.data;
    t->limit = size_t(len);
    if (need > size_t(len)) {  // the rest comes in parts
      t->spawn_from = size_t(len);
      to_spawn.push_back(t);
    }
    start_checksum(t, status);
    return 0;
  }

  size_t write_body(Transfer* t, const char* data, size_t len) {
    t->last_data = Clock::now();
    if (t->first_write) {
      bool stop = false;
      size_t rv = start_body(t, &stop);
      if (stop) return rv;
    }
    if (t->dest) {
      if (t->written + len > t->limit) {  // more than Content-Length / Content-Range said
        mismatch(t, "SizeMismatch", "the body is longer than its Content-Length or Content-Range",
                 std::to_string(t->limit), "more than " + std::to_string(t->limit));
        return 0;  // CURLE_WRITE_ERROR; retried
      }
      std::memcpy(t->dest + t->written, data, len);
      t->written += len;
      t->sum.update(data, len);  // while the bytes are in cache
    } else if (t->use_fallback) {
      t->fallback.append(data, len);
      t->sum.update(data, len);
    } else if (t->error_body.size() < kMaxErrorBody) {
      t->error_body.append(data, std::min(len, kMaxErrorBody - t->error_body.size()));
    }
    return len;
  }

  static size_t on_write(char* data, size_t size, size_t n, void* ud) {
    auto* t = static_cast<Transfer*>(ud);
    return static_cast<Impl*>(t->owner)->write_body(t, data, size * n);
  }

  // libcurl's own low-speed check averages over several seconds, so a stall right after a burst
  // of data went unnoticed for longer than read_timeout; this aborts exactly at read_timeout.
  static int on_progress(void* ud, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* t = static_cast<Transfer*>(ud);
    if (t == nullptr || t->paused) return 0;
    auto* impl = static_cast<Impl*>(t->owner);
    double idle = std::chrono::duration<double>(Clock::now() - t->last_data).count();
    if (idle > impl->opts.read_timeout) {
      t->stalled = true;
      return 1;  // CURLE_ABORTED_BY_CALLBACK
    }
    return 0;
  }

  static void join_prefault(Transfer* t) {
    if (t->prefault.valid()) t->prefault.wait();
  }

  // Forget this attempt's response. The body stays when parts are out writing into it; a first
  // part whose parts were not started yet starts over (its body is gone, so are they).
  void reset_attempt(Transfer* t) {
    if (!t->spawned) {
      join_prefault(t);
      if (t->body.handle) alloc->release(t->body);
      t->body = Buffer{};
      uncharge(t);
      t->spawn_from = 0;
      to_spawn.erase(std::remove(to_spawn.begin(), to_spawn.end(), t), to_spawn.end());
    }
    forget_paused(t);
    t->want = 0;
    t->dest = nullptr;
    t->limit = 0;
    t->first_write = true;
    t->alloc_failed = false;
    t->no_total = false;
    t->mismatch.clear();
    t->sum.start(ChecksumAlgo::None);
    t->written = 0;
    t->fallback.clear();
    t->use_fallback = false;
    t->error_body.clear();
    t->request_id.clear();
    t->bucket_region.clear();
    if (!t->spawned) t->etag.clear();
    t->last_modified = -1;
    t->errbuf[0] = 0;
  }

  CURL* take_easy() {
    if (!idle_easy.empty()) {
      CURL* e = idle_easy.back();
      idle_easy.pop_back();
      return e;
    }
    CURL* e = curl_easy_init();
    if (!e) throw std::runtime_error("curl_easy_init failed");
    configure_static(e);
    return e;
  }

  // Options the same for every request, set once per easy handle: handles are reused without
  // curl_easy_reset, so a request pays only for its own options (URL, headers, callbacks' data).
  void configure_static(CURL* e) {
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);  // keys like "a/../b" are keys, not paths
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, long(CURL_HTTP_VERSION_1_1));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "awsio-native/0.1");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, long(opts.connect_timeout * 1000));
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, &Impl::on_progress);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, opts.verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, opts.verify ? 2L : 0L);
    if (!opts.ca_bundle.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, opts.ca_bundle.c_str());
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Impl::on_header);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::on_write);
    if (!opts.unsigned_requests) {
      std::string sig = "aws:amz:" + opts.region + ":s3";
      curl_easy_setopt(e, CURLOPT_AWS_SIGV4, sig.c_str());
    }
  }

  void give_back_easy(Transfer* t) {
    if (t->easy && t->paused) {  // paused mid-response: its buffered state is not worth trusting
      forget_paused(t);
      curl_easy_cleanup(t->easy);
      t->easy = nullptr;
    }
    if (t->easy) {
      // Drop pointers into `t` (about to be freed); the rest is set again by the next request.
      curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
      curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, static_cast<char*>(nullptr));
      curl_easy_setopt(t->easy, CURLOPT_PRIVATE, static_cast<void*>(nullptr));
      curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, static_cast<void*>(nullptr));
      curl_easy_setopt(t->easy, CURLOPT_XFERINFODATA, static_cast<void*>(nullptr));
      curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, static_cast<void*>(nullptr));
      idle_easy.push_back(t->easy);
      t->easy = nullptr;
    }
    if (t->headers) {
      curl_slist_free_all(t->headers);
      t->headers = nullptr;
    }
  }

  void configure(Transfer* t) {
    CURL* e = t->easy;
    const RequestSpec& s = t->spec;
    std::string url = url_for(s.bucket, s.key);
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_PRIVATE, static_cast<void*>(t));
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    if (s.head) {
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);  // clears NOBODY left by a HEAD on this handle
    }

    curl_slist* h = nullptr;
    if (!s.head && (t->range_start > 0 || t->range_end >= 0)) {
      std::string range = "Range: bytes=" + std::to_string(t->range_start) + "-";
      if (t->range_end >= 0) range += std::to_string(t->range_end - 1);
      h = curl_slist_append(h, range.c_str());
    }
    if (!t->if_match.empty()) h = curl_slist_append(h, ("If-Match: " + t->if_match).c_str());
    // A GET of a whole object asks for its stored checksum (S3 sends none for a range).
    if (!s.head && !t->parent && s.start == 0 && s.end < 0) h = curl_slist_append(h, "x-amz-checksum-mode: ENABLED");
    if (!opts.unsigned_requests) {
      // Always declare the payload hash: S3 requires the header on signed requests.
      h = curl_slist_append(h, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
      if (!creds.token.empty()) h = curl_slist_append(h, ("x-amz-security-token: " + creds.token).c_str());
      curl_easy_setopt(e, CURLOPT_USERNAME, creds.access_key.c_str());
      curl_easy_setopt(e, CURLOPT_PASSWORD, creds.secret_key.c_str());
    }
    // No "Expect:" override: libcurl 7.88 would sign the empty header and S3 would reject it.
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (t->headers) curl_slist_free_all(t->headers);  // a retry's: replaced
    t->headers = h;
  }

  void start(Transfer* t) {
    if (limiter && !t->slot) {  // wait for the limiter's slot in `delayed` (a retry's timer)
      const double wait_s = limiter->reserve(&t->generation) - RateLimiter::now();
      if (wait_s > 0.0005) {
        t->slot = true;
        t->retry_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(wait_s));
        delayed.push_back(t);
        return;
      }
    }
    t->slot = false;
    reset_attempt(t);
    t->attempts += 1;
    t->tally.requests += 1;
    t->last_data = Clock::now();
    t->stalled = false;
    CURLMcode mc = curl_multi_add_handle(multi, t->easy);
    if (mc != CURLM_OK) throw std::runtime_error(curl_multi_strerror(mc));
    active.insert(t);
  }

  void submit(const RequestSpec& spec) {
    auto* t = new Transfer();
    t->spec = spec;
    t->owner = this;
    t->first_start = Clock::now();
    t->errbuf[0] = 0;
    if (!spec.head && spec.end >= 0 && spec.end <= spec.start) {
      // Empty range: nothing to fetch.
      Result r;
      r.tag = spec.tag;
      r.body = alloc->alloc(0);
      r.attempts = 0;
      done.push_back(std::move(r));
      delete t;
      return;
    }
    t->range_start = spec.start;
    t->range_end = spec.end;
    t->size = spec.size;
    const int64_t part = int64_t(opts.part_size);
    // What is to be read, as far as known: a known size clips the range (and a small object
    // known to be small is one plain GET, which S3 answers with its checksum).
    const int64_t end = spec.size < 0 ? spec.end : spec.end < 0 ? spec.size : std::min(spec.end, spec.size);
    if (!spec.head && part > 0 && (end < 0 || end - spec.start > 2 * part)) {
      t->split = true;  // the first part tells the size; the rest follows in parts
      t->range_end = spec.start + part;
    }
    try {
      t->easy = take_easy();
      configure(t);
      start(t);
    } catch (...) {
      give_back_easy(t);
      delete t;
      throw;
    }
  }

  // Start the parts of a split GET whose first part told the size.
  void spawn_parts(Transfer* p) {
    const size_t part = std::max<size_t>(opts.part_size, 1);
    const size_t size = p->body.size;
    p->spawned = true;
    p->if_match = p->etag;  // a retry of the first part must read the version its parts read
    if (p->total >= 0) p->size = p->total;  // and agree with the size its first reply gave
    for (size_t off = p->spawn_from; off < size; off += part) {
      auto* c = new Transfer();
      c->spec = p->spec;
      c->owner = this;
      c->parent = p;
      c->offset = off;
      c->part_len = std::min(part, size - off);
      c->range_start = p->spec.start + int64_t(off);
      c->range_end = c->range_start + int64_t(c->part_len);
      c->if_match = p->etag;
      c->size = p->size;
      c->first_start = Clock::now();
      c->errbuf[0] = 0;
      p->children.push_back(c);
      c->easy = take_easy();
      configure(c);
      start(c);
    }
  }

  double backoff(int attempt) {
    double cap = std::min(opts.backoff_cap_s, opts.backoff_base_s * double(1u << std::min(attempt, 20)));
    std::uniform_real_distribution<double> d(0.0, cap);
    return d(rng);
  }

  // Either schedules another attempt (true) or lets the caller report the failure (false).
  bool maybe_retry(Transfer* t, Cause cause) {
    if (cause == Cause::Throttle && limiter) limiter->throttled(t->generation);
    if (t->attempts >= opts.max_attempts) return false;
    double delay = backoff(t->attempts - 1);
    if (opts.deadline_s > 0 && seconds_since(t->first_start) + delay > opts.deadline_s) return false;
    curl_multi_remove_handle(multi, t->easy);
    active.erase(t);
    if (t->paused) {  // never seen in practice (a paused transfer reads nothing), but be exact
      give_back_easy(t);
      t->easy = take_easy();
    }
    reset_attempt(t);  // (promote_due_retries configures it again when it is due)
    t->retry_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(delay));
    delayed.push_back(t);
    t->tally.retries[int(cause)] += 1;
    return true;
  }

  // Take `t` out of the multi handle and the bookkeeping; its easy handle goes back to the pool.
  void detach(Transfer* t) {
    if (t->easy && active.count(t)) curl_multi_remove_handle(multi, t->easy);
    active.erase(t);
    waiting.erase(t);
    delayed.erase(std::remove(delayed.begin(), delayed.end(), t), delayed.end());
    give_back_easy(t);
  }

  // Drop a parent's parts (finished or failed parent).
  void drop_children(Transfer* p) {
    for (Transfer* c : p->children) {
      p->tally.add(c->tally);
      detach(c);
      delete c;
    }
    p->children.clear();
  }

  void finish(Transfer* t, Result&& r) {
    drop_children(t);
    detach(t);
    to_spawn.erase(std::remove(to_spawn.begin(), to_spawn.end(), t), to_spawn.end());
    r.tag = t->spec.tag;
    r.head = t->spec.head;
    r.attempts = std::max(r.attempts, t->attempts);  // a part's own count when a part failed
    r.tally = t->tally;
    if (limiter && r.kind == ResultKind::Ok) limiter->succeeded();
    join_prefault(t);
    if (r.body.handle && t->charged) {
      r.charged = t->charged;  // held until wait() returns the result
      t->charged = 0;
    }
    uncharge(t);
    if (t->body.handle) alloc->release(t->body);  // anything not moved into r
    delete t;
    done.push_back(std::move(r));
  }

  static Result connection_error(Transfer* t, long status, CURLcode rc) {
    Result r;
    r.kind = ResultKind::ConnectionError;
    r.status = status;
    r.reason = t->errbuf[0] ? std::string(t->errbuf) : std::string(curl_easy_strerror(rc));
    r.code = curl_easy_strerror(rc);
    if (t->alloc_failed) r.reason = "no memory for a body of " + std::to_string(t->want) + " bytes";
    if (rc == CURLE_ABORTED_BY_CALLBACK && t->stalled) {
      curl_off_t cl = -1;
      curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
      size_t got = t->use_fallback ? t->fallback.size() : t->written;
      std::string of = cl >= 0 ? " of " + std::to_string(cl) : "";
      r.reason = "read timed out after " + std::to_string(got) + of + " body bytes";
      r.code = "ReadTimeout";
    }
    if (rc == CURLE_PARTIAL_FILE || (rc == CURLE_RECV_ERROR && !t->first_write)) {  // cut mid-body
      curl_off_t cl = -1;
      curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
      size_t got = t->use_fallback ? t->fallback.size() : t->written;
      std::string of = cl >= 0 ? " of " + std::to_string(cl) : "";
      r.reason = "connection closed after " + std::to_string(got) + of + " body bytes" +
                 (rc == CURLE_PARTIAL_FILE ? "" : " (" + r.reason + ")");
    }
    return r;
  }

  static Result integrity_error(Transfer* t, long status) {
    Result r;
    r.kind = ResultKind::IntegrityError;
    r.status = status;
    r.code = t->mismatch;
    r.reason = t->mismatch_reason;
    r.expected = t->expected;
    r.got = t->got;
    r.request_id = t->request_id;
    r.attempts = t->attempts;
    return r;
  }

  Result http_error(Transfer* t, long status) const {
    Result r;
    r.kind = ResultKind::HttpError;
    r.status = status;
    r.code = xml_field(t->error_body, "Code");
    r.message = xml_field(t->error_body, "Message");
    r.request_id = t->request_id.empty() ? xml_field(t->error_body, "RequestId") : t->request_id;
    r.region = t->bucket_region.empty() ? xml_field(t->error_body, "Region") : t->bucket_region;
    return r;
  }

  // A split GET is complete when its first part and every other part are in.
  void maybe_complete(Transfer* p) {
    if (!p->own_done || !p->children.empty() || (p->spawn_from && !p->spawned)) return;
    join_prefault(p);
    Result r;
    r.kind = ResultKind::Ok;
    r.body = p->body;
    p->body = Buffer{};
    finish(p, std::move(r));
  }

  // Checks that need the whole reply of a GET (received without a transfer error): the headers of
  // a reply without body bytes, the length of a body, a 416 against the known size.
  void check_complete(Transfer* t, long status) {
    using std::to_string;
    if (status == 200 || status == 206) {
      curl_off_t cl = -1;
      curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
      if (t->first_write && !check_reply(t, status, cl)) return;  // no body byte came: not checked yet
      const size_t got = t->use_fallback ? t->fallback.size() : t->written;
      int64_t want = t->dest ? int64_t(t->limit) : -1;  // a chunked body: as long as known
      if (t->use_fallback) want = status == 206 ? t->cr_last - t->cr_first + 1 : t->size;
      if (want >= 0 && int64_t(got) != want) {
        mismatch(t, "SizeMismatch",
                 status == 206 ? "the body length differs from its Content-Range"
                               : "the object's length differs from the known size",
                 to_string(want), to_string(got));
      } else if (t->sum.algo() != ChecksumAlgo::None) {
        std::string body_sum = t->sum.base64();
        if (body_sum != t->sum_value) {
          const std::string name = checksum_name(t->sum.algo());
          const std::string why = "the body's " + name + " differs from x-amz-checksum-" + name;
          mismatch(t, "ChecksumMismatch", why.c_str(), t->sum_value, body_sum);
        }
      }
    } else if (status == 416 && t->size > t->range_start) {  // "past the end" of a larger object
      mismatch(t, "SizeMismatch", "a 416 reply (range past the end) for a range inside the known size",
               to_string(t->size), t->total >= 0 ? to_string(t->total) : "416");
    }
  }

  static Cause status_cause(long status) {
    return status == 503 || status == 429 ? Cause::Throttle : Cause::ServerError;
  }

  static Cause transfer_cause(const Transfer* t, CURLcode rc) {
    return t->stalled || rc == CURLE_OPERATION_TIMEDOUT ? Cause::Timeout : Cause::Reset;
  }

  void on_part_done(Transfer* c, CURLcode rc) {
    Transfer* p = c->parent;
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK) check_complete(c, status);
    if (!c->mismatch.empty()) {
      if (maybe_retry(c, Cause::Integrity)) return;
      finish(p, integrity_error(c, status));  // a part failed for good: so does the GET
      return;
    }
    if (rc == CURLE_OK && status == 206) {
      p->tally.add(c->tally);
      detach(c);
      p->children.erase(std::remove(p->children.begin(), p->children.end(), c), p->children.end());
      delete c;
      maybe_complete(p);
      return;
    }
    if (rc != CURLE_OK) {
      if ((retryable_curl_error(rc) || c->stalled) && maybe_retry(c, transfer_cause(c, rc))) return;
      Result r = connection_error(c, status, rc);
      r.attempts = c->attempts;
      finish(p, std::move(r));  // a part failed for good: so does the GET
      return;
    }
    if ((status >= 500 || status == 429) && maybe_retry(c, status_cause(status))) return;
    Result r = http_error(c, status);  // e.g. 412: the object changed between parts
    r.attempts = c->attempts;
    finish(p, std::move(r));  // a part failed for good: so does the GET
  }

  void on_done(Transfer* t, CURLcode rc) {
    if (t->parent) {
      on_part_done(t, rc);
      return;
    }
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK && !t->spec.head) check_complete(t, status);
    if (!t->mismatch.empty()) {
      if (maybe_retry(t, Cause::Integrity)) return;
      finish(t, integrity_error(t, status));
      return;
    }
    Result r;
    if (t->no_total) {
      r.kind = ResultKind::ConnectionError;
      r.reason = "the reply to a ranged GET gave no object size (Content-Range)";
      r.code = "NoContentRange";
      finish(t, std::move(r));
      return;
    }
    if (rc != CURLE_OK) {
      if ((retryable_curl_error(rc) || t->stalled) && maybe_retry(t, transfer_cause(t, rc))) return;
      finish(t, connection_error(t, status, rc));
      return;
    }
    if (status == 200 || status == 206 || (status == 416 && !t->spec.head)) {
      curl_off_t ttfb_us = -1;
      curl_easy_getinfo(t->easy, CURLINFO_STARTTRANSFER_TIME_T, &ttfb_us);
      t->tally.ttfb_s = ttfb_us < 0 ? -1.0 : double(ttfb_us) / 1e6;
      r.kind = ResultKind::Ok;
      r.whole_object = status == 200 && !t->spec.head && (t->spec.start > 0 || t->spec.end >= 0);
      if (t->spec.head) {
        curl_off_t cl = -1;
        curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        r.size = cl;
        r.etag = t->etag;
        r.last_modified = t->last_modified;
      } else if (status == 416) {
        r.body = alloc->alloc(0);  // range starting past the end: clipped to nothing
      } else if (t->dest) {
        if (t->spawn_from) {  // first part of a split GET: the rest may still be coming
          detach(t);
          t->own_done = true;
          waiting.insert(t);
          maybe_complete(t);
          return;
        }
        join_prefault(t);
        r.body = t->body;
        t->body = Buffer{};
      } else if (t->use_fallback) {
        r.has_fallback = true;
        r.fallback = std::move(t->fallback);
      } else {
        r.body = alloc->alloc(0);  // empty object: no write callback happened
      }
      finish(t, std::move(r));
      return;
    }
    bool retry_status = status >= 500 || status == 429;
    if (retry_status && maybe_retry(t, status_cause(status))) return;
    finish(t, http_error(t, status));
  }

  void promote_due_retries() {
    auto now = Clock::now();
    for (auto it = delayed.begin(); it != delayed.end();) {
      Transfer* t = *it;
      if (t->retry_at <= now) {
        it = delayed.erase(it);
        configure(t);  // signed now: the credentials may have been renewed while it waited
        start(t);
      } else {
        ++it;
      }
    }
  }

  std::vector<Result> wait(double timeout_s) {
    auto until = timeout_s < 0 ? Clock::time_point::max()
                               : Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                    std::chrono::duration<double>(timeout_s));
    for (;;) {
      promote_due_retries();
      resume_paused();
      int running = 0;
      curl_multi_perform(multi, &running);
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
        if (msg->msg != CURLMSG_DONE) continue;
        Transfer* t = nullptr;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
        if (t && active.count(t)) on_done(t, msg->data.result);
      }
      if (!to_spawn.empty()) {
        std::vector<Transfer*> spawn;
        spawn.swap(to_spawn);
        for (Transfer* p : spawn) {
          spawn_parts(p);
          maybe_complete(p);  // only if every part is somehow in already
        }
        continue;  // get the parts going before waiting
      }
      if (!done.empty()) {
        std::vector<Result> out;
        out.swap(done);
        for (const Result& r : out) held -= std::min(held, r.charged);
        return out;
      }
      if (active.empty() && delayed.empty()) return {};
      auto now = Clock::now();
      if (now >= until) return {};
      long ms = 1000;
      if (until != Clock::time_point::max())
        ms = std::min<long>(ms, long(std::chrono::duration<double, std::milli>(until - now).count()) + 1);
      for (Transfer* t : delayed) {
        long d = long(std::chrono::duration<double, std::milli>(t->retry_at - now).count()) + 1;
        ms = std::min(ms, std::max(0L, d));
      }
      curl_multi_poll(multi, nullptr, 0, int(ms), nullptr);
      if (woken.exchange(false)) return {};
    }
  }

  void cancel_all() {
    // Parents own the bodies; parts only write into them. Drop parts first.
    std::vector<Transfer*> all(active.begin(), active.end());
    all.insert(all.end(), delayed.begin(), delayed.end());
    all.insert(all.end(), waiting.begin(), waiting.end());
    std::vector<Transfer*> parents;
    for (Transfer* t : all) {
      if (t->parent) continue;
      parents.push_back(t);
    }
    for (Transfer* p : parents) {
      drop_children(p);
      detach(p);  // before the paused list is cleared: a paused handle is not reused
      join_prefault(p);
      if (p->body.handle) alloc->release(p->body);
      delete p;
    }
    active.clear();
    delayed.clear();
    waiting.clear();
    to_spawn.clear();
    for (Result& r : done) {
      if (r.body.handle) alloc->release(r.body);
    }
    done.clear();
    paused.clear();
    held = 0;
  }
};

S3Engine::S3Engine(EngineOptions opts, BufferAllocator* allocator, std::shared_ptr<RateLimiter> limiter)
    : impl_(new Impl(std::move(opts), allocator, std::move(limiter))) {}

S3Engine::~S3Engine() = default;

void S3Engine::set_credentials(const Credentials& creds) { impl_->creds = creds; }

std::string S3Engine::object_url(const std::string& bucket, const std::string& key) const {
  return impl_->url_for(bucket, key);
}

void S3Engine::submit(const RequestSpec& spec) { impl_->submit(spec); }

std::vector<Result> S3Engine::wait(double timeout_s) { return impl_->wait(timeout_s); }

void S3Engine::cancel_all() { impl_->cancel_all(); }

void S3Engine::wakeup() {
  impl_->woken = true;
  curl_multi_wakeup(impl_->multi);
}

size_t S3Engine::pending() const {
  return impl_->active.size() + impl_->delayed.size() + impl_->waiting.size() + impl_->done.size();
}

size_t S3Engine::held_bytes() const { return impl_->held; }

size_t S3Engine::paused() const { return impl_->paused.size(); }

void S3Engine::abandon() { (void)impl_.release(); }

}  // namespace awsio
