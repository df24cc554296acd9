// Replies (response.hpp): header parsing, Content-Range, S3 XML error fields, the integrity
// checks of awsio/s3/integrity.py, and the Results of failed attempts.
#include "response.hpp"

#include <strings.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>

#include "transfer.hpp"

namespace awsio {

namespace {

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

// Body bytes received so far by this attempt.
size_t received(const Transfer* t) { return t->use_fallback ? t->fallback.size() : t->written; }

// " of <Content-Length>" when the reply said, else "".
std::string of_content_length(const Transfer* t) {
  curl_off_t cl = -1;
  curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
  return cl >= 0 ? " of " + std::to_string(cl) : "";
}

}  // namespace

std::string xml_field(const std::string& body, const std::string& tag) {
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  size_t a = body.find(open);
  if (a == std::string::npos) return "";
  a += open.size();
  size_t b = body.find(close, a);
  if (b == std::string::npos) return "";
  return body.substr(a, b - a);
}

void ReplyHeaders::parse_line(const char* data, size_t len) {
  if (len >= 5 && std::strncmp(data, "HTTP/", 5) == 0) {  // a new response (e.g. after 100)
    *this = ReplyHeaders{};
  } else if (ieq_prefix(data, len, "x-amz-request-id")) {
    request_id = header_value(data, len, 16);
  } else if (ieq_prefix(data, len, "x-amz-bucket-region")) {
    bucket_region = header_value(data, len, 19);
  } else if (ieq_prefix(data, len, "etag")) {
    etag = header_value(data, len, 4);
  } else if (ieq_prefix(data, len, "last-modified")) {
    std::string v = header_value(data, len, 13);
    time_t when = curl_getdate(v.c_str(), nullptr);
    last_modified = when < 0 ? -1 : int64_t(when);
  } else if (ieq_prefix(data, len, "content-range")) {
    content_range = header_value(data, len, 13);
    parse_content_range(content_range, &cr_first, &cr_last, &total);
  } else if (len > 15 && strncasecmp(data, "x-amz-checksum-", 15) == 0) {
    const char* colon = static_cast<const char*>(std::memchr(data, ':', len));
    if (colon) note_checksum(std::string(data + 15, size_t(colon - data) - 15), header_value(data, len, size_t(colon - data)));
  }
}

// x-amz-checksum-<name>: value. Of several, the cheapest is kept; "<b64>-<N>" is a checksum of
// N parts' checksums, which the body cannot be checked against.
void ReplyHeaders::note_checksum(std::string name, const std::string& value) {
  for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (name == "type") {
    sum_composite = strcasecmp(value.c_str(), "COMPOSITE") == 0;
    return;
  }
  ChecksumAlgo algo = checksum_algo(name);
  size_t dash = value.rfind('-');
  bool of_parts = dash != std::string::npos && dash + 1 < value.size() &&
                  value.find_first_not_of("0123456789", dash + 1) == std::string::npos;
  if (algo == ChecksumAlgo::None || of_parts || value.empty()) return;
  if (sum_algo == ChecksumAlgo::None || int(algo) < int(sum_algo)) {
    sum_algo = algo;
    sum_value = value;
  }
}

bool Mismatch::record(const char* c, const char* why, const std::string& exp, const std::string& seen) {
  if (code.empty()) {
    code = c;
    reason = why;
    expected = exp;
    got = seen;
  }
  return false;
}

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

Cause status_cause(long status) { return status == 503 || status == 429 ? Cause::Throttle : Cause::ServerError; }

Cause transfer_cause(const Transfer* t, CURLcode rc) {
  return t->stalled || rc == CURLE_OPERATION_TIMEDOUT ? Cause::Timeout : Cause::Reset;
}

bool check_reply(Transfer* t, long status, curl_off_t cl) {
  using std::to_string;
  const ReplyHeaders& h = t->reply;
  const int64_t known = t->size;
  const std::string asked =
      "bytes " + to_string(t->range_start) + "-" + (t->range_end >= 0 ? to_string(t->range_end - 1) : "");
  if (status == 200) {
    if (t->parent || t->spawned) {  // the server ignored Range for a part: not a part
      return t->mismatch.record("RangeMismatch", "a 200 reply (the whole object) to a part's ranged GET", asked,
                                "200");
    }
    if (known >= 0 && cl >= 0 && int64_t(cl) != known) {
      return t->mismatch.record("SizeMismatch", "the object's length differs from the known size", to_string(known),
                                to_string(cl));
    }
    return true;
  }
  if (h.cr_first < 0) {
    return t->mismatch.record("RangeMismatch", "a 206 reply without a valid Content-Range", asked, h.content_range);
  }
  if (known >= 0 && h.total >= 0 && h.total != known) {
    return t->mismatch.record("SizeMismatch", "the object size in Content-Range differs from the known size",
                              to_string(known), to_string(h.total));
  }
  // [range_start, range_end) clipped by the size when known. Size unknown: exactly range_end,
  // but the first part of a split open-ended GET may end early (an object smaller than a part).
  const int64_t total = h.total >= 0 ? h.total : known;
  int64_t end = t->range_end;
  if (total >= 0) end = end < 0 ? total : std::min(end, total);
  const bool at_most = total < 0 && t->split && t->spec.end < 0;
  if (h.cr_first != t->range_start || (end >= 0 && (at_most ? h.cr_last + 1 > end : h.cr_last + 1 != end))) {
    return t->mismatch.record("RangeMismatch", "a 206 reply for another range than asked", asked, h.content_range);
  }
  const int64_t n = h.cr_last - h.cr_first + 1;
  if (cl >= 0 && int64_t(cl) != n) {
    return t->mismatch.record("SizeMismatch", "the body length differs from its Content-Range", to_string(n),
                              to_string(cl));
  }
  return true;
}

void check_complete(Transfer* t, long status, curl_off_t cl) {
  using std::to_string;
  const ReplyHeaders& h = t->reply;
  if (status == 200 || status == 206) {
    if (t->first_write && !check_reply(t, status, cl)) return;  // no body byte came: not checked yet
    const size_t got = received(t);
    // As long as the reply said, as far as it is known. A reply whose body never arrived (no
    // write callback: an empty chunked body) has no `dest`, but still owes its Content-Range, or
    // its Content-Length or the known size: a part that gave nothing must not leave its place in
    // the parent's body as it was (a recycled buffer: another sample's bytes).
    int64_t want = -1;
    if (t->dest) {
      want = int64_t(t->limit);
    } else if (status == 206) {
      want = h.cr_last - h.cr_first + 1;
    } else if (t->use_fallback || t->first_write) {
      want = !t->use_fallback && cl >= 0 ? int64_t(cl) : t->size;
    }
    if (want >= 0 && int64_t(got) != want) {
      t->mismatch.record("SizeMismatch",
                         status == 206 ? "the body length differs from its Content-Range"
                                       : "the object's length differs from the known size",
                         to_string(want), to_string(got));
    } else if (t->sum.algo() != ChecksumAlgo::None) {
      std::string body_sum = t->sum.base64();
      if (body_sum != h.sum_value) {
        const std::string name = checksum_name(t->sum.algo());
        const std::string why = "the body's " + name + " differs from x-amz-checksum-" + name;
        t->mismatch.record("ChecksumMismatch", why.c_str(), h.sum_value, body_sum);
      }
    }
  } else if (status == 416 && t->size > t->range_start) {  // "past the end" of a larger object
    t->mismatch.record("SizeMismatch", "a 416 reply (range past the end) for a range inside the known size",
                       to_string(t->size), h.total >= 0 ? to_string(h.total) : "416");
  }
}

void start_checksum(Transfer* t, long status, bool verify_checksums) {
  const ReplyHeaders& h = t->reply;
  const bool whole = status == 200 || (status == 206 && h.cr_first == 0 && h.cr_last + 1 == h.total);
  if (whole && !t->parent && !t->spawn_from && !h.sum_composite && verify_checksums) t->sum.start(h.sum_algo);
}

size_t body_size(const Transfer* t, long status, int64_t len) {
  const int64_t total = t->reply.total >= 0 ? t->reply.total : t->size;
  if (!t->split || status != 206 || total < 0) return size_t(len);
  int64_t end = t->spec.end < 0 ? total : std::min<int64_t>(t->spec.end, total);
  return end > t->spec.start ? size_t(end - t->spec.start) : size_t(len);
}

Result connection_error(const Transfer* t, long status, CURLcode rc) {
  Result r;
  r.kind = ResultKind::ConnectionError;
  r.status = status;
  r.reason = t->errbuf[0] ? std::string(t->errbuf) : std::string(curl_easy_strerror(rc));
  r.code = curl_easy_strerror(rc);
  if (t->alloc_failed) r.reason = "no memory for a body of " + std::to_string(t->want) + " bytes";
  if (rc == CURLE_ABORTED_BY_CALLBACK && t->stalled) {
    r.reason = "read timed out after " + std::to_string(received(t)) + of_content_length(t) + " body bytes";
    r.code = "ReadTimeout";
  }
  if (rc == CURLE_PARTIAL_FILE || (rc == CURLE_RECV_ERROR && !t->first_write)) {  // cut mid-body
    r.reason = "connection closed after " + std::to_string(received(t)) + of_content_length(t) + " body bytes" +
               (rc == CURLE_PARTIAL_FILE ? "" : " (" + r.reason + ")");
  }
  return r;
}

Result integrity_error(const Transfer* t, long status) {
  Result r;
  r.kind = ResultKind::IntegrityError;
  r.status = status;
  r.code = t->mismatch.code;
  r.reason = t->mismatch.reason;
  r.expected = t->mismatch.expected;
  r.got = t->mismatch.got;
  r.request_id = t->reply.request_id;
  r.attempts = t->attempts;
  return r;
}

Result http_error(const Transfer* t, long status) {
  const ReplyHeaders& h = t->reply;
  Result r;
  r.kind = ResultKind::HttpError;
  r.status = status;
  r.code = xml_field(t->error_body, "Code");
  r.message = xml_field(t->error_body, "Message");
  r.request_id = h.request_id.empty() ? xml_field(t->error_body, "RequestId") : h.request_id;
  r.region = h.bucket_region.empty() ? xml_field(t->error_body, "Region") : h.bucket_region;
  return r;
}

}  // namespace awsio
