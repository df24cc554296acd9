// Checksums of S3 bodies (see checksum.hpp). CRCs: table-driven slice-by-8 over the reflected
// polynomials, folded with carry-less multiplication (PCLMULQDQ) on x86-64 CPUs that have it
// (13+ GiB/s a core); CRC32 otherwise from zlib when built with it.
#include "checksum.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#if defined(AWSIO_HAVE_ZLIB)
#include <zlib.h>
#endif
#if defined(AWSIO_HAVE_OPENSSL)
#include <openssl/evp.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <wmmintrin.h>
#define AWSIO_X86 1
#endif

namespace awsio {

namespace {

// A reflected CRC of width 8*sizeof(T) over polynomial `poly` (reflected, x^width implicit).
// Slice-by-8 tables: t[0] is the byte-at-a-time table, t[k] advances a byte k more positions.
template <typename T>
struct Crc {
  T poly;
  std::array<std::array<T, 256>, 8> t;

  explicit Crc(T p) : poly(p) {
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
  T table_update(T crc, const unsigned char* p, size_t n) const {
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

#if defined(AWSIO_X86)
  // Folding with carry-less multiplication (the technique of Intel's "Fast CRC Computation for
  // Generic Polynomials Using PCLMULQDQ"): 128-bit blocks, in the register's reflected bit order
  // (bit i of a 64-bit half: x^(63-i)). A block X = H*x^64 + L (H: its low 64 bits) moves n bits
  // on as H*(x^(n+64) mod P) + L*(x^n mod P), which stays within 128 bits; the product of two
  // reflected halves comes out multiplied by x, hence the exponents less one.
  struct Fold {
    uint64_t lo, hi;
  };

  // x^e mod P as a reflected 64-bit half.
  uint64_t xpow(int e) const {
    constexpr int w = 8 * sizeof(T);
    T normal = 0, r = 1;  // bit d: x^d
    for (int i = 0; i < w; ++i) normal |= T(T((poly >> i) & 1) << (w - 1 - i));
    for (int i = 0; i < e; ++i) r = T(T(r << 1) ^ ((r >> (w - 1)) ? normal : 0));
    uint64_t reflected = 0;
    for (int d = 0; d < w; ++d) reflected |= uint64_t((r >> d) & 1) << (63 - d);
    return reflected;
  }

  Fold fold_by(int n) const { return {xpow(n + 63), xpow(n - 1)}; }

  __attribute__((target("pclmul,sse4.1"))) static __m128i fold(__m128i x, const Fold& k) {
    const __m128i kk = _mm_set_epi64x(int64_t(k.hi), int64_t(k.lo));
    return _mm_xor_si128(_mm_clmulepi64_si128(x, kk, 0x00), _mm_clmulepi64_si128(x, kk, 0x11));
  }

  static __m128i load(const unsigned char* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

  // Four lanes folded 512 bits at a time, then into one block, which the table finishes: the
  // block stands for the message so far with a zero register. n >= 64.
  __attribute__((target("pclmul,sse4.1"))) T clmul_update(T crc, const unsigned char* p, size_t n) const {
    const Fold k512 = fold512, k384 = fold384, k256 = fold256, k128 = fold128;
    __m128i x0 = _mm_xor_si128(load(p), _mm_cvtsi64_si128(int64_t(uint64_t(crc))));
    __m128i x1 = load(p + 16), x2 = load(p + 32), x3 = load(p + 48);
    for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
      x0 = _mm_xor_si128(fold(x0, k512), load(p));
      x1 = _mm_xor_si128(fold(x1, k512), load(p + 16));
      x2 = _mm_xor_si128(fold(x2, k512), load(p + 32));
      x3 = _mm_xor_si128(fold(x3, k512), load(p + 48));
    }
    __m128i x = _mm_xor_si128(_mm_xor_si128(fold(x0, k384), fold(x1, k256)), _mm_xor_si128(fold(x2, k128), x3));
    for (; n >= 16; p += 16, n -= 16) x = _mm_xor_si128(fold(x, k128), load(p));
    unsigned char last[16];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(last), x);
    return table_update(table_update(0, last, 16), p, n);
  }

  Fold fold512 = fold_by(512), fold384 = fold_by(384), fold256 = fold_by(256), fold128 = fold_by(128);
#endif

  T update(T crc, const unsigned char* p, size_t n) const {
#if defined(AWSIO_X86)
    static const bool pclmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    if (n >= 128 && pclmul) return clmul_update(crc, p, n);
#endif
    return table_update(crc, p, n);
  }
};

const Crc<uint64_t>& crc64nvme() {
  static const Crc<uint64_t> c(0x9a6c9329ac4bc9b5ULL);  // NVMe's polynomial, reflected
  return c;
}

#if defined(AWSIO_X86) || !defined(AWSIO_HAVE_ZLIB)
const Crc<uint32_t>& crc32_ieee() {
  static const Crc<uint32_t> c(0xedb88320u);  // zlib's, reflected
  return c;
}
#endif

const Crc<uint32_t>& crc32c() {
  static const Crc<uint32_t> c(0x82f63b78u);  // Castagnoli, reflected
  return c;
}

// CRC32: folded on x86 when the CPU can; else zlib's, when built with it.
uint32_t crc32_update(uint32_t crc, const unsigned char* p, size_t n) {
#if defined(AWSIO_HAVE_ZLIB)
#if defined(AWSIO_X86)
  static const bool pclmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  if (pclmul) return crc32_ieee().update(crc, p, n);
#endif
  uint32_t v = ~crc;  // zlib keeps the final value, not the register
  for (size_t step; n; p += step, n -= step) {  // zlib takes 32-bit lengths
    step = std::min<size_t>(n, size_t(1) << 30);
    v = uint32_t(::crc32(uLong(v), p, uInt(step)));
  }
  return ~v;
#else
  return crc32_ieee().update(crc, p, n);
#endif
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
  crc_ = algo == ChecksumAlgo::Crc64Nvme ? ~uint64_t(0) : 0xffffffffu;  // the register, inverted
}

void Checksum::update(const char* data, size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  switch (algo_) {
    case ChecksumAlgo::Crc32:
      crc_ = crc32_update(uint32_t(crc_), p, n);
      break;
    case ChecksumAlgo::Crc32c:
      crc_ = crc32c().update(uint32_t(crc_), p, n);
      break;
    case ChecksumAlgo::Crc64Nvme:
      crc_ = crc64nvme().update(crc_, p, n);
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
    case ChecksumAlgo::Crc32:
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
