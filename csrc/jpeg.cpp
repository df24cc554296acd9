// See jpeg.hpp. libjpeg reports fatal errors through error_exit, which must not return: it
// longjmps back to the one function that called setjmp (run_* below). Between the two there are
// only libjpeg's C frames, and that function keeps no C++ object of its own, so the jump skips
// no destructor; its caller cleans up and throws.
#include "jpeg.hpp"

#include <algorithm>
#include <cstring>

#ifdef AWSIO_HAVE_JPEG
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE

#include <jerror.h>
#include <jpeglib.h>
#endif

namespace awsio::jpeg {

// Only 1, 2, 4 and 8 eighths: libjpeg-turbo has SIMD IDCTs for those; the others (3, 5, 6, 7) use
// plain C and, with 2x2-subsampled chroma, a 6..14-point chroma IDCT: slower than 8/8 (measured:
// 7/8 of a 400x350 image 1.7 ms, 8/8 1.1 ms).
int choose_scale(int w, int h, int min_w, int min_h) {
  long long need = 1;
  if (min_w > 0 && w > 0) need = std::max(need, (8LL * min_w + w - 1) / w);
  if (min_h > 0 && h > 0) need = std::max(need, (8LL * min_h + h - 1) / h);
  int n = 1;
  while (n < need && n < 8) n *= 2;
  return n;
}

#ifndef AWSIO_HAVE_JPEG

bool available() { return false; }

Header read_header(const uint8_t*, size_t) { throw JpegUnsupported("awsio was built without libjpeg"); }

Decoded decode_crop(const uint8_t*, size_t, const CropRequest&) {
  throw JpegUnsupported("awsio was built without libjpeg");
}

#else

bool available() { return true; }

namespace {

struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings (level -1) are ignored, as PIL ignores them, except the end of the data before the
// image's end: that is a truncated file, an error. Trace messages (level >= 0) are dropped.
void emit_message(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
    std::snprintf(err->message, sizeof(err->message), "truncated JPEG: premature end of data");
    std::longjmp(err->jump, 1);
  }
  if (level == -1) cinfo->err->num_warnings++;
}

void output_message(j_common_ptr) {}  // never stderr

// One decompressor, destroyed on every path.
struct Decompressor {
  jpeg_decompress_struct cinfo{};
  ErrorManager err{};

  const uint8_t* data;
  size_t size;

  Decompressor(const uint8_t* data_, size_t size_) : data(data_), size(size_) {
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = error_exit;
    err.pub.emit_message = emit_message;
    err.pub.output_message = output_message;
    err.message[0] = '\0';
    cinfo.mem = nullptr;  // created in run_header (its failure longjmps too); destroying with none is a no-op
  }
  ~Decompressor() { jpeg_destroy_decompress(&cinfo); }
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;
};

// false: libjpeg failed, d->err.message says why.
bool run_header(Decompressor* d) {
  if (setjmp(d->err.jump)) return false;
  jpeg_create_decompress(&d->cinfo);
  jpeg_mem_src(&d->cinfo, d->data, static_cast<unsigned long>(d->size));  // empty data: error_exit
  jpeg_read_header(&d->cinfo, TRUE);
  return true;
}

struct Plan {
  int sx0, sx1, sy0, sy1;  // the scaled box, exclusive ends
};

// Decodes rows [sy0, sy1) of the scaled image, columns [sx0, sx1), into out->pixels (already
// sized). rows: row pointers' storage (caller-owned). false: libjpeg failed.
bool run_decode(Decompressor* d, const CropRequest* req, int n, Plan* plan, Decoded* out,
                std::vector<uint8_t>* scratch, std::vector<JSAMPROW>* rows) {
  if (setjmp(d->err.jump)) return false;
  jpeg_decompress_struct* c = &d->cinfo;
  c->out_color_space = JCS_RGB;
  c->scale_num = static_cast<unsigned int>(n);
  c->scale_denom = 8;
  c->dct_method = req->fast_idct ? JDCT_IFAST : JDCT_ISLOW;
  c->do_fancy_upsampling = req->fancy_upsampling ? TRUE : FALSE;
  jpeg_start_decompress(c);
  const int ow = static_cast<int>(c->output_width), oh = static_cast<int>(c->output_height);
  // floor / ceil of the box scaled by n/8, clipped to the scaled image
  plan->sx0 = static_cast<int>(static_cast<long long>(req->x) * n / 8);
  plan->sy0 = static_cast<int>(static_cast<long long>(req->y) * n / 8);
  plan->sx1 = std::min(ow, static_cast<int>((static_cast<long long>(req->x + req->w) * n + 7) / 8));
  plan->sy1 = std::min(oh, static_cast<int>((static_cast<long long>(req->y + req->h) * n + 7) / 8));
  const int width = plan->sx1 - plan->sx0, height = plan->sy1 - plan->sy0;
  out->width = width;
  out->height = height;
  out->x0 = plan->sx0;
  out->y0 = plan->sy0;
  out->pixels.resize(static_cast<size_t>(width) * height * 3);

  // One pixel more on each side where there is one: fancy upsampling reads its neighbours, and a
  // column on the edge of the decoded region would be upsampled as if on the image's edge.
  const int left = std::max(0, plan->sx0 - 1), right = std::min(ow, plan->sx1 + 1);
  JDIMENSION xoff = static_cast<JDIMENSION>(left), cw = static_cast<JDIMENSION>(right - left);
  if (right - left < ow) jpeg_crop_scanline(c, &xoff, &cw);  // widens to whole iMCUs
  else xoff = 0, cw = c->output_width;
  if (plan->sy0 > 0) jpeg_skip_scanlines(c, static_cast<JDIMENSION>(plan->sy0));
  const size_t skip = (static_cast<size_t>(plan->sx0) - xoff) * 3;
  const size_t row_bytes = static_cast<size_t>(width) * 3;
  const int batch = std::max(1, c->rec_outbuf_height);
  const bool direct = skip == 0 && static_cast<int>(cw) == width;
  if (!direct) scratch->resize(static_cast<size_t>(cw) * 3 * batch);
  rows->resize(batch);
  int done = 0;
  while (done < height) {
    const int want = std::min(batch, height - done);
    for (int i = 0; i < want; ++i) {
      (*rows)[i] = direct ? out->pixels.data() + (done + i) * row_bytes
                          : scratch->data() + static_cast<size_t>(i) * cw * 3;
    }
    const int got = static_cast<int>(jpeg_read_scanlines(c, rows->data(), static_cast<JDIMENSION>(want)));
    if (got <= 0) {
      std::snprintf(d->err.message, sizeof(d->err.message), "truncated JPEG: no more scanlines");
      return false;
    }
    if (!direct) {
      for (int i = 0; i < got; ++i) std::memcpy(out->pixels.data() + (done + i) * row_bytes, (*rows)[i] + skip, row_bytes);
    }
    done += got;
  }
  return true;  // the rows below the box are never decoded: ~Decompressor aborts
}

void check_colour(const jpeg_decompress_struct& c) {
  if (c.jpeg_color_space == JCS_CMYK || c.jpeg_color_space == JCS_YCCK) {
    throw JpegUnsupported("CMYK/YCCK JPEG: not converted to RGB by the native decoder");
  }
  if (c.num_components != 1 && c.num_components != 3) {
    throw JpegUnsupported("JPEG with " + std::to_string(c.num_components) + " components");
  }
}

}  // namespace

Header read_header(const uint8_t* data, size_t size) {
  Decompressor d(data, size);
  if (!run_header(&d)) throw JpegError(d.err.message);
  Header h;
  h.width = static_cast<int>(d.cinfo.image_width);
  h.height = static_cast<int>(d.cinfo.image_height);
  h.components = d.cinfo.num_components;
  h.progressive = d.cinfo.progressive_mode != 0;
  return h;
}

Decoded decode_crop(const uint8_t* data, size_t size, const CropRequest& req) {
  Decompressor d(data, size);
  if (!run_header(&d)) throw JpegError(d.err.message);
  check_colour(d.cinfo);
  const int iw = static_cast<int>(d.cinfo.image_width), ih = static_cast<int>(d.cinfo.image_height);
  if (req.w <= 0 || req.h <= 0 || req.x < 0 || req.y < 0 || req.x > iw - req.w || req.y > ih - req.h) {
    throw std::invalid_argument("crop box (" + std::to_string(req.x) + ", " + std::to_string(req.y) + ", " +
                                std::to_string(req.w) + ", " + std::to_string(req.h) + ") outside the " +
                                std::to_string(iw) + "x" + std::to_string(ih) + " image");
  }
  if (req.scale_num < 0 || req.scale_num > 8) throw std::invalid_argument("scale_num must be 0 (auto) or 1..8");
  const int n = req.scale_num ? req.scale_num : choose_scale(req.w, req.h, req.min_w, req.min_h);
  Decoded out;
  out.scale_num = n;
  out.image_width = iw;
  out.image_height = ih;
  Plan plan{};
  std::vector<uint8_t> scratch;
  std::vector<JSAMPROW> rows;
  if (!run_decode(&d, &req, n, &plan, &out, &scratch, &rows)) throw JpegError(d.err.message);
  return out;
}

#endif  // AWSIO_HAVE_JPEG

}  // namespace awsio::jpeg
