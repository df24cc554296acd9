// Requests (request.hpp): URI encoding, the canonical query, URLs, handle options and the
// headers of each attempt; libcurl computes the SigV4 signature over them.
#include "request.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "transfer.hpp"

namespace awsio {

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

Endpoint::Endpoint(const EngineOptions& opts) : endpoint_(opts.endpoint), path_style_(opts.path_style) {
  size_t p = endpoint_.find("://");
  scheme_ = p == std::string::npos ? "https" : endpoint_.substr(0, p);
  host_ = p == std::string::npos ? endpoint_ : endpoint_.substr(p + 3);
}

std::string Endpoint::url(const std::string& bucket, const std::string& key) const {
  std::string enc = uri_encode(key, true);
  if (path_style_) return endpoint_ + "/" + uri_encode(bucket, false) + "/" + enc;
  return scheme_ + "://" + bucket + "." + host_ + "/" + enc;
}

void configure_handle(CURL* e, const EngineOptions& opts) {
  curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);  // keys like "a/../b" are keys, not paths
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, long(CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "awsio-native/0.1");
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, long(opts.connect_timeout * 1000));
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, opts.verify ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, opts.verify ? 2L : 0L);
  if (!opts.ca_bundle.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, opts.ca_bundle.c_str());
  if (!opts.unsigned_requests) {
    std::string sig = "aws:amz:" + opts.region + ":s3";
    curl_easy_setopt(e, CURLOPT_AWS_SIGV4, sig.c_str());
  }
}

void configure_request(Transfer* t, const std::string& url, const EngineOptions& opts, const Credentials& creds) {
  CURL* e = t->easy;
  const RequestSpec& s = t->spec;
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
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
  if (!s.head && !t->parent && s.start == 0 && s.end < 0 && s.query.empty())
    h = curl_slist_append(h, "x-amz-checksum-mode: ENABLED");
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

}  // namespace awsio
