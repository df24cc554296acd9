// Requests as they go out: the object's URL, the options of a libcurl handle, each attempt's
// headers and keys. libcurl signs every request itself (SigV4, CURLOPT_AWS_SIGV4). Internal to
// the engine; uri_encode and canonical_query are declared in s3_core.hpp.
#pragma once

#include <curl/curl.h>

#include <string>

#include "s3_core.hpp"

namespace awsio {

struct Transfer;

// Where the requests of one engine go: path-style (endpoint/bucket/key) or virtual-hosted
// (scheme://bucket.host/key) URLs.
class Endpoint {
 public:
  explicit Endpoint(const EngineOptions& opts);
  // The URL of an object, without query; the key URI-encoded with its '/' kept.
  std::string url(const std::string& bucket, const std::string& key) const;

 private:
  std::string endpoint_, scheme_, host_;  // scheme and host: the endpoint split, for virtual-hosted URLs
  bool path_style_;
};

// Options the same for every request (HTTP/1.1, TCP, TLS, connect timeout, SigV4 signing), set
// once per easy handle: handles are reused without curl_easy_reset, so a request pays only for
// its own options.
void configure_handle(CURL* e, const EngineOptions& opts);

// The options of one attempt of `t` on its handle: URL, method, headers (Range, If-Match,
// checksum mode, payload hash, session token) and keys. The header list is kept in t->headers
// (a retry's replaces the last).
void configure_request(Transfer* t, const std::string& url, const EngineOptions& opts, const Credentials& creds);

}  // namespace awsio
