// Replies: header lines, Content-Range, the checks a reply must pass (the same checks, in the
// same order and words, as awsio/s3/integrity.py), and what a failed attempt becomes (a Result,
// or the Cause of another attempt). Internal to the engine.
#pragma once

#include <curl/curl.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "checksum.hpp"
#include "s3_core.hpp"

namespace awsio {

struct Transfer;

// Bytes of an error reply's body kept (for its XML fields).
constexpr size_t kMaxErrorBody = 64 * 1024;

// What the headers of one reply said. A new status line ("HTTP/...", e.g. after a 100) starts over.
struct ReplyHeaders {
  std::string request_id, bucket_region, etag;
  int64_t last_modified = -1;   // POSIX seconds, -1 unknown
  std::string content_range;
  int64_t cr_first = -1, cr_last = -1;  // Content-Range: bytes cr_first-cr_last/total
  int64_t total = -1;                   // (-1: absent)
  // The reply's full-object checksum (x-amz-checksum-*): the cheapest of those sent.
  ChecksumAlgo sum_algo = ChecksumAlgo::None;
  std::string sum_value;
  bool sum_composite = false;   // x-amz-checksum-type: COMPOSITE (a checksum of part checksums)

  // One header line as libcurl hands it over (status line included, CRLF at the end).
  void parse_line(const char* line, size_t len);

 private:
  void note_checksum(std::string name, const std::string& value);
};

// Why an attempt's reply cannot be used: the first reason recorded wins.
struct Mismatch {
  std::string code;  // "SizeMismatch", "RangeMismatch", "ChecksumMismatch"; empty: none
  std::string reason, expected, got;

  bool any() const { return !code.empty(); }
  // Records the mismatch unless one is already recorded; returns false (the reply is not usable).
  bool record(const char* code, const char* why, const std::string& expected, const std::string& got);
};

// "bytes first-last/total" ("*" for an unknown total; "bytes */total" in a 416). What is absent
// or malformed stays -1.
void parse_content_range(const std::string& v, int64_t* first, int64_t* last, int64_t* total);

// libcurl failures worth another attempt: the network or the peer misbehaved, not our request.
bool retryable_curl_error(CURLcode rc);
// Why a reply with this (retryable) status is tried again.
Cause status_cause(long status);
// Why a transfer that failed (rc) is tried again.
Cause transfer_cause(const Transfer* t, CURLcode rc);

// Does a 200/206 reply to `t` agree with the range asked for and the object's known size
// (Content-Length `cl`, -1 if absent)? Checked once its headers are in. If not, records the
// mismatch and returns false.
bool check_reply(Transfer* t, long status, curl_off_t cl);
// Checks that need the whole reply of a GET (received without a transfer error): the headers of
// a reply without body bytes, the length of a body, its checksum, a 416 against the known size.
void check_complete(Transfer* t, long status, curl_off_t cl);
// Start checking the body against the server's full-object checksum, if the reply is the whole
// object and carries one (S3 sends none for ranges; one sent for a range is not believed).
void start_checksum(Transfer* t, long status, bool verify_checksums);
// The body size a 200/206 reply to `t` stands for: its Content-Length `len`, or for the first
// part of a split GET the whole requested range as clipped by the object's size.
size_t body_size(const Transfer* t, long status, int64_t len);

// The Result of an attempt that failed for good.
Result connection_error(const Transfer* t, long status, CURLcode rc);
Result integrity_error(const Transfer* t, long status);
Result http_error(const Transfer* t, long status);

}  // namespace awsio
