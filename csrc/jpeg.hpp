// JPEG decoding of a crop box at a reduced DCT scale (libjpeg's plain API, as libjpeg-turbo
// provides it): only the rows down to the box's bottom are entropy-decoded, only the box's
// columns (widened to whole iMCUs, then cut exactly) are dequantised, upsampled and converted,
// and the IDCT itself produces N/8 of the full size. Plain C++17, no Python; built only when CMake
// found libjpeg (AWSIO_HAVE_JPEG). Errors never abort nor print: libjpeg's fatal errors and a
// premature end of data become JpegError (its other warnings are ignored, as PIL does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace awsio::jpeg {

// Whether this build can decode JPEG at all (false: every call below throws JpegUnsupported).
bool available();

// The data is not a readable JPEG (not one at all, corrupt, truncated). what(): libjpeg's reason.
class JpegError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A valid JPEG this decoder does not handle (CMYK / YCCK colour), or no libjpeg in this build.
class JpegUnsupported : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Header {
  int width = 0, height = 0, components = 0;
  bool progressive = false;
};

Header read_header(const uint8_t* data, size_t size);

// The box (x, y, w, h) is in full-resolution pixels. The scale is N/8 with the smallest N of
// 1, 2, 4, 8 (the scales with SIMD IDCTs) for which the scaled box is still at least min_w x min_h (min 0: any; scale_num 1..8
// forces N). fast_idct: JDCT_IFAST (else JDCT_ISLOW, PIL's); fancy_upsampling false: chroma
// upsampled by replication (libjpeg's do_fancy_upsampling).
struct CropRequest {
  int x = 0, y = 0, w = 0, h = 0;
  int min_w = 0, min_h = 0;
  int scale_num = 0;
  bool fast_idct = false;
  bool fancy_upsampling = true;
};

// RGB rows of the scaled box: pixels [floor(x*N/8), ceil((x+w)*N/8)) across and likewise down,
// clipped to the scaled image. x0, y0: that region's origin in the scaled image.
struct Decoded {
  std::vector<uint8_t> pixels;  // height x width x 3
  int width = 0, height = 0;
  int x0 = 0, y0 = 0;
  int scale_num = 8;  // N of N/8
  int image_width = 0, image_height = 0;  // full resolution
};

// The N that CropRequest's rule picks for a w x h box.
int choose_scale(int w, int h, int min_w, int min_h);

// Throws JpegError, JpegUnsupported, or std::invalid_argument for a box outside the image.
Decoded decode_crop(const uint8_t* data, size_t size, const CropRequest& req);

}  // namespace awsio::jpeg
