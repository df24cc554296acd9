// Pixel layout conversion for image transforms: H x W x 3 uint8 (PIL, libjpeg) to the 3 x H x W
// float32 a model takes, through a per-channel table (so the values are exactly the table's:
// whatever arithmetic built it, e.g. (v / 255 - mean) / std in float32), optionally mirrored
// left-right. One pass, no temporaries. Plain C++17.
#pragma once

#include <cstddef>
#include <cstdint>

namespace awsio::pixels {

// src: h rows of w*3 bytes, row_stride bytes apart; lut: 3 x 256 floats (channel-major);
// dst: 3 x h x w floats. flip: dst column x takes src column w-1-x.
void hwc_to_chw(const uint8_t* src, int h, int w, std::ptrdiff_t row_stride, const float* lut, bool flip,
                float* dst);

}  // namespace awsio::pixels
