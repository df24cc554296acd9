// The transfer engine behind S3Engine (s3_core.hpp): the libcurl multi loop, retries with
// backoff and pacing, split GETs and their parts, receiving bodies within the in-flight budget,
// and stall detection. Requests are built by request.cpp, replies checked by response.cpp, body
// memory comes from buffers.cpp.
#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <random>
#include <stdexcept>
#include <unordered_set>

#include "buffers.hpp"
#include "request.hpp"
#include "response.hpp"
#include "s3_core.hpp"
#include "transfer.hpp"

namespace awsio {

namespace {

struct GlobalInit {
  GlobalInit() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

void ensure_global_init() { static GlobalInit once; }

Clock::duration after(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

long response_code(CURL* e) {
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

curl_off_t content_length(CURL* e) {
  curl_off_t cl = -1;
  curl_easy_getinfo(e, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
  return cl;
}

}  // namespace

std::string curl_version_string() { return curl_version(); }

struct S3Engine::Impl {
  EngineOptions opts;
  BufferAllocator* alloc;
  std::shared_ptr<RateLimiter> limiter;   // null: no pacing
  Endpoint endpoint;
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
  InflightBudget budget;                  // charged: bodies in transfers and in `done`
  uint64_t performs = 0;                  // curl_multi_perform calls so far
  std::mt19937_64 rng{std::random_device{}()};

  Impl(EngineOptions o, BufferAllocator* a, std::shared_ptr<RateLimiter> l)
      : opts(std::move(o)), alloc(a), limiter(std::move(l)), endpoint(opts), budget(opts.max_inflight_bytes) {
    ensure_global_init();
    multi = curl_multi_init();
    if (!multi) throw std::runtime_error("curl_multi_init failed");
    long n = opts.max_connections;
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, n);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, n);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, n);
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, long(CURLPIPE_NOTHING));
  }

  ~Impl() {
    cancel_all();
    for (CURL* e : idle_easy) curl_easy_cleanup(e);
    if (multi) curl_multi_cleanup(multi);
  }

  // ---------------------------------------------------------------- libcurl callbacks

  static size_t on_header(char* data, size_t size, size_t n, void* ud) {
    auto* t = static_cast<Transfer*>(ud);
    size_t len = size * n;
    t->last_data = Clock::now();
    t->reply.parse_line(data, len);
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
    if (seconds_since(t->last_data) > impl->opts.read_timeout) {
      t->stalled = true;
      return 1;  // CURLE_ABORTED_BY_CALLBACK
    }
    return 0;
  }

  // ---------------------------------------------------------------- the in-flight budget

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
      if (!budget.fits(t->want)) break;
      budget.charge(&t->charged, t->want);
      t->paused = false;
      t->last_data = Clock::now();  // waiting for budget is not a stall
    }
    std::vector<Transfer*> go(paused.begin(), paused.begin() + i);
    paused.erase(paused.begin(), paused.begin() + i);
    // Unpausing may deliver the buffered data at once (write_body sees the charge and allocates).
    for (Transfer* t : go) curl_easy_pause(t->easy, CURLPAUSE_CONT);
  }

  // ---------------------------------------------------------------- receiving a body

  // Called once per response, at its first body byte. Returns 0 to go on, or the value the write
  // callback returns (pause, or 0 for a write error).
  size_t start_body(Transfer* t, bool* stop) {
    *stop = false;
    const long status = response_code(t->easy);
    const curl_off_t cl = content_length(t->easy);
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
    const int64_t len = cl >= 0 ? int64_t(cl) : status == 206 ? t->reply.cr_last - t->reply.cr_first + 1 : -1;
    if (t->parent || t->spawned) {  // a part, or a first part retried while its parts are out:
      t->first_write = false;       // exactly its bytes (checked above), at its place in the body
      t->dest = t->parent ? &t->parent->body : &t->body;
      t->dest_at = t->parent ? t->offset : 0;
      t->limit = t->parent ? t->part_len : t->spawn_from;
      return 0;
    }
    if (len < 0) {  // size unknown in advance (chunked): collected, then copied once
      t->first_write = false;
      t->use_fallback = true;
      start_checksum(t, status, opts.verify_checksums);
      return 0;
    }
    // A full first part and no object size (how many parts follow?), or no ETag to pin the
    // parts to one version: the whole range in one request instead.
    const bool no_total = t->split && status == 206 && t->reply.total < 0 && t->size < 0 &&
                          len >= t->range_end - t->range_start;
    size_t need = no_total ? 0 : body_size(t, status, len);
    if (no_total || (need > size_t(len) && t->reply.etag.empty())) {
      t->unsplit = true;
      *stop = true;
      t->first_write = false;
      return 0;
    }
    // pieces only for exactly the range asked (a 206, its size known); anything else is one piece
    static const std::vector<int64_t> kOnePiece;
    const bool exact = status == 206 && t->spec.end >= 0 && int64_t(need) == t->spec.end - t->spec.start;
    const std::vector<int64_t>& cuts = exact ? t->spec.cuts : kOnePiece;
    // the caller's body, made (and charged) at submit for exactly this reply; any other reply
    // (a whole object for a range, another size) gets a body of its own, and that one goes
    const bool prepared = t->prebody.handle && t->prebody.size == need && t->prebody.pieces.empty() == cuts.empty();
    if (!prepared) release_prebody(t);
    if (!prepared && t->charged == 0 && !budget.admits(need, !paused.empty())) {
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
    if (prepared) {
      budget.uncharge(&t->charged);  // (nothing: a prepared body is never paused for budget)
      t->charged = t->pre_charged;
      t->pre_charged = 0;
      t->body = std::move(t->prebody);
      t->prebody = Buffer{};
      prepare_body(&t->body, &t->prefault);
    } else if (t->charged == 0) {
      budget.charge(&t->charged, need);
    }
    if (!prepared && !allocate_body(alloc, need, cuts, &t->body, &t->prefault)) {
      t->alloc_failed = true;
      *stop = true;
      return 0;
    }
    t->dest = &t->body;
    t->dest_at = 0;
    t->limit = size_t(len);
    if (need > size_t(len)) {  // the rest comes in parts
      t->spawn_from = size_t(len);
      to_spawn.push_back(t);
    }
    start_checksum(t, status, opts.verify_checksums);
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
        t->mismatch.record("SizeMismatch", "the body is longer than its Content-Length or Content-Range",
                           std::to_string(t->limit), "more than " + std::to_string(t->limit));
        return 0;  // CURLE_WRITE_ERROR; retried
      }
      write_body_at(*t->dest, t->dest_at + t->written, data, len);
      t->written += len;
      t->sum.update(data, len);  // while the bytes are in cache
    } else if (t->use_fallback) {
      // A chunked body of a known size: never held past that size (a server that keeps sending).
      // (A chunked 206 has its Content-Range length as `limit` above.)
      if (t->size >= 0 && t->fallback.size() + len > size_t(t->size)) {
        t->mismatch.record("SizeMismatch", "the object's length differs from the known size",
                           std::to_string(t->size), "more than " + std::to_string(t->size));
        return 0;  // CURLE_WRITE_ERROR; retried
      }
      t->fallback.append(data, len);
      t->sum.update(data, len);
    } else if (t->error_body.size() < kMaxErrorBody) {
      t->error_body.append(data, std::min(len, kMaxErrorBody - t->error_body.size()));
    }
    return len;
  }

  // Forget this attempt's response. The body stays when parts are out writing into it; a first
  // part whose parts were not started yet starts over (its body is gone, so are they).
  void reset_attempt(Transfer* t) {
    if (!t->spawned) {
      join_prefault(t->prefault);
      if (t->body.handle) alloc->release(t->body);
      t->body = Buffer{};
      budget.uncharge(&t->charged);
      t->spawn_from = 0;
      to_spawn.erase(std::remove(to_spawn.begin(), to_spawn.end(), t), to_spawn.end());
    }
    forget_paused(t);
    t->want = 0;
    t->dest = nullptr;
    t->limit = 0;
    t->first_write = true;
    t->alloc_failed = false;
    t->unsplit = false;
    t->mismatch = Mismatch{};
    t->sum.start(ChecksumAlgo::None);
    t->written = 0;
    t->fallback.clear();
    t->use_fallback = false;
    t->error_body.clear();
    t->reply.request_id.clear();
    t->reply.bucket_region.clear();
    if (!t->spawned) t->reply.etag.clear();
    t->reply.last_modified = -1;
    t->errbuf[0] = 0;
  }

  // ---------------------------------------------------------------- easy handles

  CURL* take_easy() {
    if (!idle_easy.empty()) {
      CURL* e = idle_easy.back();
      idle_easy.pop_back();
      return e;
    }
    CURL* e = curl_easy_init();
    if (!e) throw std::runtime_error("curl_easy_init failed");
    configure_handle(e, opts);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, &Impl::on_progress);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Impl::on_header);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::on_write);
    return e;
  }

  void release_prebody(Transfer* t) {
    if (t->prebody.handle) alloc->release(t->prebody);
    t->prebody = Buffer{};
    budget.uncharge(&t->pre_charged);
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

  // Point the handle's callbacks at `t` and set this attempt's request options.
  void configure(Transfer* t) {
    CURL* e = t->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, static_cast<void*>(t));
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    std::string url = endpoint.url(t->spec.bucket, t->spec.key);
    if (!t->spec.query.empty()) url += "?" + t->spec.query;
    configure_request(t, url, opts, creds);
  }

  // ---------------------------------------------------------------- starting requests

  void start(Transfer* t) {
    if (limiter && !t->slot) {  // wait for the limiter's slot in `delayed` (a retry's timer)
      const double wait_s = limiter->reserve(&t->generation) - RateLimiter::now();
      if (wait_s > 0.0005) {
        t->slot = true;
        t->retry_at = Clock::now() + after(wait_s);
        delayed.push_back(t);
        return;
      }
    }
    t->slot = false;
    reset_attempt(t);
    t->attempts += 1;
    t->tally.requests += 1;
    t->started_at = performs;
    t->last_data = Clock::now();
    t->stalled = false;
    CURLMcode mc = curl_multi_add_handle(multi, t->easy);
    if (mc != CURLM_OK) throw std::runtime_error(curl_multi_strerror(mc));
    active.insert(t);
  }

  void submit(RequestSpec& spec) {
    auto* t = new Transfer();  // (if this throws, spec.body is still the caller's to release)
    try {
      t->spec = spec;
    } catch (...) {
      delete t;
      throw;
    }
    t->spec.body = Buffer{};
    // The caller's body is owned (and held against the budget) here from now on: see
    // release_prebody. Moves of a Buffer do not throw.
    t->prebody = std::move(spec.body);
    spec.body = Buffer{};
    if (t->prebody.handle) budget.charge(&t->pre_charged, t->prebody.size);
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
      release_prebody(t);
      delete t;
      return;
    }
    t->range_start = spec.start;
    t->range_end = spec.end;
    t->size = spec.size;
    t->if_match = spec.if_match;
    const int64_t part = int64_t(opts.part_size);
    // What is to be read, as far as known: a known size clips the range (and a small object
    // known to be small is one plain GET, which S3 answers with its checksum).
    const int64_t end = spec.size < 0 ? spec.end : spec.end < 0 ? spec.size : std::min(spec.end, spec.size);
    if (!spec.head && spec.query.empty() && part > 0 && (end < 0 || end - spec.start > 2 * part)) {
      t->split = true;  // the first part tells the size; the rest follows in parts
      t->range_end = spec.start + part;
    }
    try {
      t->easy = take_easy();
      configure(t);
      start(t);
    } catch (...) {
      give_back_easy(t);
      release_prebody(t);
      delete t;
      throw;
    }
  }

  // Start the parts of a split GET whose first part told the size.
  void spawn_parts(Transfer* p) {
    const size_t part = std::max<size_t>(opts.part_size, 1);
    const size_t size = p->body.size;
    p->spawned = true;
    p->if_match = p->reply.etag;  // a retry of the first part must read the version its parts read
    if (p->reply.total >= 0) p->size = p->reply.total;  // and agree with the size its first reply gave
    for (size_t off = p->spawn_from; off < size; off += part) {
      auto* c = new Transfer();
      c->spec = p->spec;
      c->owner = this;
      c->parent = p;
      c->offset = off;
      c->part_len = std::min(part, size - off);
      c->range_start = p->spec.start + int64_t(off);
      c->range_end = c->range_start + int64_t(c->part_len);
      c->if_match = p->reply.etag;
      c->size = p->size;
      c->first_start = Clock::now();
      c->errbuf[0] = 0;
      p->children.push_back(c);
      c->easy = take_easy();
      configure(c);
      start(c);
    }
  }

  // ---------------------------------------------------------------- retries

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
    t->retry_at = Clock::now() + after(delay);
    delayed.push_back(t);
    t->tally.retries[int(cause)] += 1;
    return true;
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

  // ---------------------------------------------------------------- finishing requests

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
    join_prefault(t->prefault);
    if (r.body.handle && t->charged) {
      r.charged = t->charged;  // held until wait() returns the result
      t->charged = 0;
    }
    budget.uncharge(&t->charged);
    if (t->body.handle) alloc->release(t->body);  // anything not moved into r
    release_prebody(t);
    delete t;
    done.push_back(std::move(r));
  }

  // A split GET is complete when its first part and every other part are in.
  void maybe_complete(Transfer* p) {
    if (!p->own_done || !p->children.empty() || (p->spawn_from && !p->spawned)) return;
    join_prefault(p->prefault);
    Result r;
    r.kind = ResultKind::Ok;
    r.body = p->body;
    p->body = Buffer{};
    finish(p, std::move(r));
  }

  void on_part_done(Transfer* c, CURLcode rc) {
    Transfer* p = c->parent;
    const long status = response_code(c->easy);
    if (rc == CURLE_OK) check_complete(c, status, content_length(c->easy));
    if (c->mismatch.any()) {
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
    const long status = response_code(t->easy);
    if (rc == CURLE_OK && !t->spec.head) {
      // No body byte came (an empty chunked 200): its checksum, if sent, is still checked.
      if (t->first_write && status == 200) start_checksum(t, status, opts.verify_checksums);
      check_complete(t, status, content_length(t->easy));
    }
    if (t->mismatch.any()) {
      if (maybe_retry(t, Cause::Integrity)) return;
      finish(t, integrity_error(t, status));
      return;
    }
    if (t->unsplit) {  // not a failed attempt: the same request, asked for in one piece
      curl_multi_remove_handle(multi, t->easy);
      active.erase(t);
      t->attempts -= 1;
      t->split = false;
      t->range_end = t->spec.end;
      configure(t);
      start(t);
      return;
    }
    Result r;
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
        r.size = content_length(t->easy);
        r.etag = t->reply.etag;
        r.last_modified = t->reply.last_modified;
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
        join_prefault(t->prefault);
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

  // ---------------------------------------------------------------- the loop

  std::vector<Result> wait(double timeout_s) {
    auto until = timeout_s < 0 ? Clock::time_point::max() : Clock::now() + after(timeout_s);
    for (;;) {
      promote_due_retries();
      resume_paused();
      int running = 0;
      curl_multi_perform(multi, &running);
      performs += 1;
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
        for (const Result& r : out) budget.give_back(r.charged);
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

  // Abort everything; returns what the aborted requests cost (see S3Engine::cancel_all).
  Result cancel_all() {
    Result cancelled;
    cancelled.kind = ResultKind::Cancelled;
    // An attempt libcurl never worked on (added since the last perform) did not go out.
    for (Transfer* t : active) {
      if (t->started_at == performs) t->tally.requests -= 1;
    }
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
      drop_children(p);  // their requests and retries go into the parent's tally
      cancelled.tally.add(p->tally);
      cancelled.attempts += p->attempts;
      detach(p);  // before the paused list is cleared: a paused handle is not reused
      join_prefault(p->prefault);
      if (p->body.handle) alloc->release(p->body);
      release_prebody(p);
      delete p;
    }
    active.clear();
    delayed.clear();
    waiting.clear();
    to_spawn.clear();
    for (Result& r : done) {
      cancelled.tally.add(r.tally);
      cancelled.attempts += r.attempts;
      if (r.body.handle) alloc->release(r.body);
    }
    done.clear();
    paused.clear();
    budget.clear();
    return cancelled;
  }
};

S3Engine::S3Engine(EngineOptions opts, BufferAllocator* allocator, std::shared_ptr<RateLimiter> limiter)
    : impl_(new Impl(std::move(opts), allocator, std::move(limiter))) {}

S3Engine::~S3Engine() = default;

void S3Engine::set_credentials(const Credentials& creds) { impl_->creds = creds; }

std::string S3Engine::object_url(const std::string& bucket, const std::string& key) const {
  return impl_->endpoint.url(bucket, key);
}

void S3Engine::submit(RequestSpec& spec) { impl_->submit(spec); }

std::vector<Result> S3Engine::wait(double timeout_s) { return impl_->wait(timeout_s); }

Result S3Engine::cancel_all() { return impl_->cancel_all(); }

void S3Engine::wakeup() {
  impl_->woken = true;
  curl_multi_wakeup(impl_->multi);
}

size_t S3Engine::pending() const {
  return impl_->active.size() + impl_->delayed.size() + impl_->waiting.size() + impl_->done.size();
}

size_t S3Engine::held_bytes() const { return impl_->budget.held(); }

size_t S3Engine::paused() const { return impl_->paused.size(); }

void S3Engine::abandon() { (void)impl_.release(); }

}  // namespace awsio
