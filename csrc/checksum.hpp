// Full-object checksums as S3 sends them (x-amz-checksum-<name>: base64 of the big-endian value),
// computed piece by piece as a body arrives. Plain C++17; SHA-1/SHA-256 use OpenSSL's libcrypto,
// and CRC32 on CPUs without carry-less multiplication uses zlib, when the build found them
// (AWSIO_HAVE_OPENSSL, AWSIO_HAVE_ZLIB).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace awsio {

// In the order a reply carrying several is checked: cheapest first.
enum class ChecksumAlgo { None, Crc64Nvme, Crc32c, Crc32, Sha256, Sha1 };

// "crc32", "crc32c", "crc64nvme", "sha1", "sha256" -> the algorithm; None if unknown or not built.
ChecksumAlgo checksum_algo(const std::string& name);
const char* checksum_name(ChecksumAlgo algo);
// The names this build can verify.
std::vector<std::string> checksum_algorithms();

class Checksum {
 public:
  Checksum() = default;
  ~Checksum();
  Checksum(const Checksum&) = delete;
  Checksum& operator=(const Checksum&) = delete;

  void start(ChecksumAlgo algo);  // begin anew (None: off)
  void update(const char* data, size_t n);
  std::string base64();           // the value so far, as S3 writes it
  ChecksumAlgo algo() const { return algo_; }

 private:
  ChecksumAlgo algo_ = ChecksumAlgo::None;
  uint64_t crc_ = 0;
  void* md_ = nullptr;  // EVP_MD_CTX* for the SHAs
};

}  // namespace awsio
