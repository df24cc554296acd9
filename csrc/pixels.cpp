// See pixels.hpp.
#include "pixels.hpp"

namespace awsio::pixels {

void hwc_to_chw(const uint8_t* src, int h, int w, std::ptrdiff_t row_stride, const float* lut, bool flip,
                float* dst) {
  const std::ptrdiff_t plane = static_cast<std::ptrdiff_t>(h) * w;
  const float *l0 = lut, *l1 = lut + 256, *l2 = lut + 512;
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = src + y * row_stride;
    float* d0 = dst + static_cast<std::ptrdiff_t>(y) * w;
    float* d1 = d0 + plane;
    float* d2 = d1 + plane;
    for (int x = 0; x < w; ++x) {
      const uint8_t* p = row + 3 * (flip ? w - 1 - x : x);
      d0[x] = l0[p[0]];
      d1[x] = l1[p[1]];
      d2[x] = l2[p[2]];
    }
  }
}

}  // namespace awsio::pixels
