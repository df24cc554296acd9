// Checksums of S3 bodies (see checksum.hpp). CRC32C and CRC64NVME: table-driven slice-by-8 over
// the reflected polynomials (CRC32C with the SSE4.2 crc32 instruction when the CPU has it).
#include "checksum.hpp"

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>

#if defined(AWSIO_HAVE_ZLIB)
#include <zlib.h>
#endif
#if defined(AWSIO_HAVE_OPENSSL)
#include <openssl/evp.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define AWSIO_X86_CRC32C 1
#endif

namespace awsio {

namespace {

// Slice-by-8 tables of a reflected CRC: t[0] is the byte-at-a-time table, t[k] advances a byte
// k more positions.
template <typename T>
struct CrcTables {
  std::array<std::array<T, 256>, 8> t;
  explicit CrcTables(T poly) {
    for (unsigned i = 0; i < 256; ++i) {
      T c = T(i);
      for (int b = 0; b < 8; ++b) c = (c & 1) ? T((c >> 1) ^ poly) : T(c >> 1);
      t[0][i] = c;
    }
    for (unsigned i = 0; i < 256; ++i) {
      for (int k = 1; k < 8; ++k) t[k][i] = T((t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff]);
    }
  }
  // `crc` is the running register (already inverted); little-endian loads.
  T update(T crc, const unsigned char* p, size_t n) const {
    for (; n >= 8; p += 8, n -= 8) {
      uint64_t v;
      std::memcpy(&v, p, 8);
      v ^= uint64_t(crc);
      crc = T(t[7][v & 0xff] ^ t[6][(v >> 8) & 0xff] ^ t[5][(v >> 16) & 0xff] ^ t[4][(v >> 24) & 0xff] ^
              t[3][(v >> 32) & 0xff] ^ t[2][(v >> 40) & 0xff] ^ t[1][(v >> 48) & 0xff] ^ t[0][v >> 56]);
    }
    for (; n; ++p, --n) crc = T((crc >> 8) ^ t[0][(crc ^ *p) & 0xff]);
    return crc;
  }
};

const CrcTables<uint64_t>& crc64nvme_tables() {
  static const CrcTables<uint64_t> t(0x9a6c9329ac4bc9b5ULL);  // NVMe's polynomial, reflected
  return t;
}

const CrcTables<uint32_t>& crc32c_tables() {
  static const CrcTables<uint32_t> t(0x82f63b78u);  // Castagnoli, reflected
  return t;
}

#if !defined(AWSIO_HAVE_ZLIB)
const CrcTables<uint32_t>& crc32_tables() {
  static const CrcTables<uint32_t> t(0xedb88320u);  // zlib's, reflected
  return t;
}
#endif

#if defined(AWSIO_X86_CRC32C)
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const unsigned char* p, size_t n) {
  uint64_t c = crc;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  uint32_t c32 = uint32_t(c);
  for (; n; ++p, --n) c32 = _mm_crc32_u8(c32, *p);
  return c32;
}

bool have_sse42() {
  static const bool yes = __builtin_cpu_supports("sse4.2");
  return yes;
}
#endif

uint32_t crc32c_update(uint32_t crc, const unsigned char* p, size_t n) {
#if defined(AWSIO_X86_CRC32C)
  if (have_sse42()) return crc32c_sse42(crc, p, n);
#endif
  return crc32c_tables().update(crc, p, n);
}

std::string base64_encode(const unsigned char* p, size_t n) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = uint32_t(p[i]) << 16;
    if (i + 1 < n) v |= uint32_t(p[i + 1]) << 8;
    if (i + 2 < n) v |= p[i + 2];
    out.push_back(abc[(v >> 18) & 63]);
    out.push_back(abc[(v >> 12) & 63]);
    out.push_back(i + 1 < n ? abc[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < n ? abc[v & 63] : '=');
  }
  return out;
}

std::string big_endian_base64(uint64_t v, int bytes) {
  unsigned char b[8];
  for (int i = 0; i < bytes; ++i) b[i] = static_cast<unsigned char>(v >> (8 * (bytes - 1 - i)));
  return base64_encode(b, size_t(bytes));
}

constexpr ChecksumAlgo kAll[] = {ChecksumAlgo::Crc64Nvme, ChecksumAlgo::Crc32c, ChecksumAlgo::Crc32,
                                 ChecksumAlgo::Sha256, ChecksumAlgo::Sha1};

bool built(ChecksumAlgo a) {
#if !defined(AWSIO_HAVE_OPENSSL)
  if (a == ChecksumAlgo::Sha1 || a == ChecksumAlgo::Sha256) return false;
#endif
  return a != ChecksumAlgo::None;
}

}  // namespace

const char* checksum_name(ChecksumAlgo algo) {
  switch (algo) {
    case ChecksumAlgo::Crc32: return "crc32";
    case ChecksumAlgo::Crc32c: return "crc32c";
    case ChecksumAlgo::Crc64Nvme: return "crc64nvme";
    case ChecksumAlgo::Sha1: return "sha1";
    case ChecksumAlgo::Sha256: return "sha256";
    default: return "";
  }
}

ChecksumAlgo checksum_algo(const std::string& name) {
  for (ChecksumAlgo a : kAll) {
    if (name == checksum_name(a)) return built(a) ? a : ChecksumAlgo::None;
  }
  return ChecksumAlgo::None;
}

std::vector<std::string> checksum_algorithms() {
  std::vector<std::string> out;
  for (ChecksumAlgo a : kAll) {
    if (built(a)) out.emplace_back(checksum_name(a));
  }
  return out;
}

Checksum::~Checksum() { start(ChecksumAlgo::None); }

void Checksum::start(ChecksumAlgo algo) {
#if defined(AWSIO_HAVE_OPENSSL)
  if (md_) {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(md_));
    md_ = nullptr;
  }
  if (algo == ChecksumAlgo::Sha1 || algo == ChecksumAlgo::Sha256) {
    auto* ctx = EVP_MD_CTX_new();
    const EVP_MD* md = algo == ChecksumAlgo::Sha1 ? EVP_sha1() : EVP_sha256();
    if (!ctx || EVP_DigestInit_ex(ctx, md, nullptr) != 1) {  // cannot check: do not pretend to
      EVP_MD_CTX_free(ctx);
      algo = ChecksumAlgo::None;
    } else {
      md_ = ctx;
    }
  }
#endif
  algo_ = algo;
  crc_ = algo == ChecksumAlgo::Crc32 ? 0 : ~uint64_t(0);
}

void Checksum::update(const char* data, size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  switch (algo_) {
    case ChecksumAlgo::Crc32:
#if defined(AWSIO_HAVE_ZLIB)
      for (size_t step; n; p += step, n -= step) {  // zlib takes 32-bit lengths
        step = std::min<size_t>(n, size_t(1) << 30);
        crc_ = crc32(uLong(crc_), p, uInt(step));
      }
#else
      crc_ = ~crc32_tables().update(~uint32_t(crc_), p, n) & 0xffffffffu;
#endif
      break;
    case ChecksumAlgo::Crc32c:
      crc_ = crc32c_update(uint32_t(crc_), p, n);
      break;
    case ChecksumAlgo::Crc64Nvme:
      crc_ = crc64nvme_tables().update(crc_, p, n);
      break;
    case ChecksumAlgo::Sha1:
    case ChecksumAlgo::Sha256:
#if defined(AWSIO_HAVE_OPENSSL)
      EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(md_), p, n);
#endif
      break;
    default:
      break;
  }
}

std::string Checksum::base64() {
  switch (algo_) {
    case ChecksumAlgo::Crc32: return big_endian_base64(crc_, 4);
    case ChecksumAlgo::Crc32c: return big_endian_base64(~uint32_t(crc_), 4);
    case ChecksumAlgo::Crc64Nvme: return big_endian_base64(~crc_, 8);
    case ChecksumAlgo::Sha1:
    case ChecksumAlgo::Sha256: {
#if defined(AWSIO_HAVE_OPENSSL)
      unsigned char digest[EVP_MAX_MD_SIZE];
      unsigned int len = 0;
      EVP_MD_CTX* copy = EVP_MD_CTX_new();  // finalise a copy: the running one stays usable
      if (copy && EVP_MD_CTX_copy_ex(copy, static_cast<EVP_MD_CTX*>(md_)) == 1 &&
          EVP_DigestFinal_ex(copy, digest, &len) == 1) {
        EVP_MD_CTX_free(copy);
        return base64_encode(digest, len);
      }
      EVP_MD_CTX_free(copy);
#endif
      return "";
    }
    default:
      return "";
  }
}

}  // namespace awsio
