// pybind11 binding of the native S3 engine: the only file that sees Python headers.
//
// Response bodies are allocated as Python `bytes` objects (the GIL is taken briefly from the
// libcurl callback once Content-Length is known) and filled in place, so results reach Python
// without a copy; large ones come from a BufferPool of recycled bodies. Transfers run with the
// GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "buffers.hpp"
#include "checksum.hpp"
#include "jpeg.hpp"
#include "pixels.hpp"
#include "s3_core.hpp"

namespace py = pybind11;

namespace {

// Freed large bodies, kept for reuse. Fresh memory costs a page fault and the kernel zeroing
// each 4 KiB page on first write (0.3 s per GiB measured on a 2-core VM, half the client's CPU
// on large objects); a recycled buffer costs neither. The pool holds a reference to each bytes
// object it tracks; one whose only reference is the pool's (refcount 1) is free: the caller
// dropped it, and nobody else can see it (bytes have no weak references), so it is resized in
// place and handed out again. Capacities are rounded up to 8 classes per power of two so that
// bodies of similar sizes share buffers. Every access happens with the GIL held.
class BufferPool {
 public:
  static constexpr size_t kMinSize = size_t(1) << 20;  // smaller bodies: plain allocation

  explicit BufferPool(size_t limit) : limit_(limit) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  ~BufferPool() {
    if (!Py_IsInitialized()) return;  // interpreter gone: the objects went with it
    py::gil_scoped_acquire gil;
    for (auto& e : entries_) Py_DECREF(e.obj);
  }

  // Size class: round up to 1/8 of the highest power of two below n (<= 12.5 % slack).
  static size_t capacity_for(size_t n) {
    if (n == 0) return 0;
    size_t top = size_t(1) << (63 - __builtin_clzll(static_cast<unsigned long long>(n)));
    size_t step = std::max<size_t>(top / 8, 4096);
    return (n + step - 1) / step * step;
  }

  // A new reference to a bytes object of `size` bytes (contents undefined), or nullptr with a
  // Python error set. GIL held.
  PyObject* take(size_t size, bool* warm) {
    *warm = false;
    if (limit_ == 0 || size < kMinSize) return PyBytes_FromStringAndSize(nullptr, Py_ssize_t(size));
    const size_t cap = capacity_for(size);
    for (auto& e : entries_) {
      if (e.cap == cap && Py_REFCNT(e.obj) == 1) {
        auto* b = reinterpret_cast<PyBytesObject*>(e.obj);
        Py_SET_SIZE(b, Py_ssize_t(size));
        b->ob_sval[size] = '\0';
        b->ob_shash = -1;  // the cached hash belonged to the old contents
        *warm = true;
        reused_ += 1;
        Py_INCREF(e.obj);
        return e.obj;
      }
    }
    if (cap <= limit_ && bytes_ + cap > limit_) evict(bytes_ + cap - limit_);  // (else no use)
    if (bytes_ + cap > limit_) {  // everything tracked is in use: an untracked, exact-size body
      untracked_ += 1;
      return PyBytes_FromStringAndSize(nullptr, Py_ssize_t(size));
    }
    PyObject* obj = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(cap));
    if (!obj) return nullptr;
    auto* b = reinterpret_cast<PyBytesObject*>(obj);
    Py_SET_SIZE(b, Py_ssize_t(size));
    b->ob_sval[size] = '\0';
    entries_.push_back({obj, cap});
    bytes_ += cap;
    fresh_ += 1;
    Py_INCREF(obj);  // one reference for the pool, one for the caller
    return obj;
  }

  // Drop free buffers (oldest first) until at least `need` bytes are released or none is free.
  void evict(size_t need) {
    size_t freed = 0;
    for (auto it = entries_.begin(); it != entries_.end() && freed < need;) {
      if (Py_REFCNT(it->obj) == 1) {
        freed += it->cap;
        bytes_ -= it->cap;
        Py_DECREF(it->obj);
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void clear() {
    py::gil_scoped_acquire gil;
    evict(SIZE_MAX);
  }

  py::dict stats() const {
    size_t free_bytes = 0, free_count = 0;
    for (const auto& e : entries_) {
      if (Py_REFCNT(e.obj) == 1) {
        free_bytes += e.cap;
        free_count += 1;
      }
    }
    py::dict d;
    d["limit"] = limit_;
    d["buffers"] = entries_.size();
    d["bytes"] = bytes_;
    d["free_buffers"] = free_count;
    d["free_bytes"] = free_bytes;
    d["fresh"] = fresh_;
    d["reused"] = reused_;
    d["untracked"] = untracked_;
    return d;
  }

 private:
  struct Entry {
    PyObject* obj;
    size_t cap;
  };
  size_t limit_;
  std::vector<Entry> entries_;
  size_t bytes_ = 0;
  size_t fresh_ = 0, reused_ = 0, untracked_ = 0;
};

class PyBytesAllocator : public awsio::BufferAllocator {
 public:
  explicit PyBytesAllocator(std::shared_ptr<BufferPool> pool) : pool_(std::move(pool)) {}

  awsio::Buffer alloc(size_t size) override {
    py::gil_scoped_acquire gil;
    bool warm = false;
    PyObject* obj = pool_ ? pool_->take(size, &warm) : PyBytes_FromStringAndSize(nullptr, Py_ssize_t(size));
    awsio::Buffer b;
    if (!obj) {
      PyErr_Clear();
      return b;
    }
    b.handle = obj;
    b.data = PyBytes_AS_STRING(obj);
    b.size = size;
    b.warm = warm;
    return b;
  }
  // A tuple of bytes objects, one per piece (small and many: plain allocations, no pool). The
  // tuple is not tracked by the garbage collector: gc.get_objects() must not hand Python pieces
  // the engine is still writing into without the GIL (a tuple of bytes holds no cycle).
  awsio::Buffer alloc_pieces(size_t size, const std::vector<size_t>& ends) override {
    awsio::Buffer b;
    b.pieces.reserve(ends.size());  // (may throw: before anything needs freeing)
    b.ends = ends;
    py::gil_scoped_acquire gil;
    PyObject* tuple = PyTuple_New(Py_ssize_t(ends.size()));
    if (!tuple) {
      PyErr_Clear();
      return awsio::Buffer{};
    }
    PyObject_GC_UnTrack(tuple);
    size_t begin = 0;
    for (size_t i = 0; i < ends.size(); ++i) {
      PyObject* piece = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(ends[i] - begin));
      if (!piece) {
        PyErr_Clear();
        Py_DECREF(tuple);
        return awsio::Buffer{};
      }
      PyTuple_SET_ITEM(tuple, Py_ssize_t(i), piece);  // steals the reference
      b.pieces.push_back(PyBytes_AS_STRING(piece));
      begin = ends[i];
    }
    b.handle = tuple;
    b.size = size;
    return b;
  }
  void release(awsio::Buffer& buf) override {
    if (buf.handle) {
      py::gil_scoped_acquire gil;
      Py_DECREF(static_cast<PyObject*>(buf.handle));  // a pooled buffer becomes free again
    }
    buf = awsio::Buffer{};
  }

 private:
  std::shared_ptr<BufferPool> pool_;
};

// One finished request as Python sees it. kind: "ok" (data: the body), "whole" (data: the whole
// object although a range was asked: the caller cuts the range), "head" (size, etag,
// last_modified), or an error: "http" (status, code, message, request_id, region), "integrity"
// (status, code, reason, request_id, expected, got), "conn" (status, code, reason), or
// "cancelled" (Client.cancel_all: what the cancelled requests cost together). Every result:
// attempts, requests (HTTP attempts, parts included), retries (by awsio::Cause), ttfb (seconds).
struct PyResult {
  int64_t tag = 0;
  std::string kind;
  py::object data = py::none(), size = py::none(), etag = py::none(), last_modified = py::none();
  py::object status = py::none(), code = py::none(), message = py::none(), request_id = py::none();
  py::object region = py::none(), reason = py::none(), expected = py::none(), got = py::none();
  int attempts = 0, requests = 0;
  py::object retries = py::tuple(), ttfb = py::none();
};

class Client {
 public:
  Client(const awsio::EngineOptions& options, std::shared_ptr<BufferPool> pool,
         std::shared_ptr<awsio::RateLimiter> limiter)
      : alloc_(std::move(pool)) {
    engine_.reset(new awsio::S3Engine(options, &alloc_, std::move(limiter)));
  }

  ~Client() {
    if (engine_) engine_.reset();
  }

  // A thread inside wait() holds mu_ and may need the GIL (to allocate a body); so a caller
  // holding the GIL that finds mu_ taken drops the GIL while it waits for mu_, never blocking on
  // mu_ with the GIL held. The usual case (mu_ free) costs no GIL round trip.
  std::unique_lock<std::mutex> lock_holding_gil() {
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    if (!lock.owns_lock()) {
      py::gil_scoped_release nogil;
      lock.lock();
    }
    return lock;
  }

  // The engine, or RuntimeError once abandon() let it go (a forked child's client: its handles
  // are the parent's; using it dereferenced the null engine).
  awsio::S3Engine& engine() {
    if (!engine_) throw std::runtime_error("this native client was abandoned (it belongs to the parent process)");
    return *engine_;
  }

  void set_credentials(const std::string& ak, const std::string& sk, const std::string& token) {
    auto lock = lock_holding_gil();
    engine().set_credentials({ak, sk, token});
  }

  std::string object_url(const std::string& bucket, const std::string& key) {
    return engine().object_url(bucket, key);
  }

  void submit(int64_t tag, const std::string& bucket, const std::string& key, int64_t start, int64_t end,
              bool head, int64_t size, std::vector<int64_t> cuts, const std::string& query,
              const std::string& if_match, bool allocate) {
    if (!cuts.empty()) {
      if (head || end < 0) throw py::value_error("cuts need a GET of a range with an end");
      int64_t last = 0;
      for (int64_t c : cuts) {
        if (c < last || c > end - start)
          throw py::value_error("cuts must be non-decreasing offsets within the range");
        last = c;
      }
    }
    if (!query.empty() && (head || start != 0 || end >= 0 || !cuts.empty() || !key.empty()))
      throw py::value_error("a query goes with a plain GET of the bucket (no key, range or cuts)");
    awsio::RequestSpec s;
    s.cuts = std::move(cuts);
    s.query = query;
    s.if_match = if_match;
    s.tag = tag;
    s.bucket = bucket;
    s.key = key;
    s.start = start;
    s.end = end;
    s.size = size;
    s.head = head;
    engine();  // (raises for an abandoned client, before anything is allocated)
    if (allocate) s.body = expected_body(s);
    auto lock = lock_holding_gil();
    try {
      engine().submit(s);  // takes s.body
    } catch (...) {
      if (s.body.handle) alloc_.release(s.body);  // not taken: still ours
      throw;
    }
  }

  std::vector<PyResult> wait(double timeout_s) {
    std::vector<awsio::Result> results;
    engine();  // (raises, with the GIL held, for an abandoned client)
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      results = engine_->wait(timeout_s);
    }
    std::vector<PyResult> out;
    out.reserve(results.size());
    for (auto& r : results) out.push_back(convert(r));
    return out;
  }

  PyResult cancel_all() {
    awsio::Result r;
    {
      auto lock = lock_holding_gil();
      r = engine().cancel_all();
    }
    return convert(r);
  }

  // No lock: the one call made while another thread is inside wait() (which holds mu_).
  void wakeup() {
    if (engine_) engine_->wakeup();
  }

  size_t pending() {
    auto lock = lock_holding_gil();
    return engine().pending();
  }

  py::tuple budget() {
    auto lock = lock_holding_gil();
    return py::make_tuple(engine().held_bytes(), engine().paused());
  }

  void abandon() {
    if (engine_) {
      engine_->abandon();
      (void)engine_.release();  // leaked on purpose: a forked child must not free the parent's handles
    }
  }

 private:
  // submit(allocate=True): the body of the reply a GET of an object of known size expects (its
  // range, or the whole object), allocated now, while this thread holds the GIL anyway,
  // instead of by the engine at the reply's first byte, where taking the GIL from a busy Python
  // thread stalls every transfer (RequestSpec::body). Nothing when the size is unknown or there
  // is none. The engine holds it against its in-flight budget from submit on (bodies of unknown
  // size wait for budget behind it); the caller bounds what it submits (get_many does).
  awsio::Buffer expected_body(const awsio::RequestSpec& s) {
    if (s.head || !s.query.empty() || s.size < 0) return {};  // (a range's end may be past the object)
    const int64_t end = s.end < 0 ? s.size : std::min(s.end, s.size);
    if (end <= s.start) return {};
    return awsio::new_body(&alloc_, size_t(end - s.start), s.cuts);  // (empty if that failed)
  }

  static PyResult convert(awsio::Result& r) {
    using K = awsio::ResultKind;
    // Text from the server (error XML, headers, libcurl's messages quoting a reply) need not be
    // UTF-8: decoded with U+FFFD for what is not, never raising (a UnicodeDecodeError here was
    // raised instead of the typed error, and lost the other results of the batch with it).
    auto s = [](const std::string& v) {
      if (v.empty()) return py::object(py::none());
      PyObject* u = PyUnicode_DecodeUTF8(v.data(), Py_ssize_t(v.size()), "replace");
      if (!u) throw py::error_already_set();  // (only out of memory)
      return py::reinterpret_steal<py::object>(u);
    };
    PyResult out;
    out.tag = r.tag;
    out.attempts = r.attempts;
    out.requests = r.tally.requests;
    py::tuple retries(awsio::kCauses);
    for (int i = 0; i < awsio::kCauses; ++i) retries[i] = py::int_(r.tally.retries[i]);
    out.retries = retries;
    out.ttfb = r.tally.ttfb_s < 0 ? py::object(py::none()) : py::object(py::float_(r.tally.ttfb_s));
    out.status = r.status ? py::object(py::int_(r.status)) : py::object(py::none());
    if (r.kind == K::Ok && r.head) {
      out.kind = "head";
      out.size = py::int_(r.size);
      out.etag = s(r.etag);
      out.last_modified = r.last_modified < 0 ? py::object(py::none()) : py::object(py::int_(r.last_modified));
      return out;
    }
    if (r.kind == K::Ok) {
      out.kind = r.whole_object ? "whole" : "ok";
      if (r.body.handle) {
        out.data = py::reinterpret_steal<py::object>(static_cast<PyObject*>(r.body.handle));
        r.body = awsio::Buffer{};
      } else {
        out.data = py::bytes(r.fallback);
      }
      return out;
    }
    if (r.kind == K::Cancelled) {
      out.kind = "cancelled";
      return out;
    }
    out.kind = r.kind == K::HttpError ? "http" : r.kind == K::IntegrityError ? "integrity" : "conn";
    out.code = s(r.code);
    out.message = s(r.message);
    out.request_id = s(r.request_id);
    out.region = s(r.region);
    out.reason = s(r.reason);
    out.expected = s(r.expected);
    out.got = s(r.got);
    return out;
  }

  PyBytesAllocator alloc_;
  std::unique_ptr<awsio::S3Engine> engine_;
  std::mutex mu_;
};

// `data`'s checksum as S3 writes it, fed in pieces of `piece` bytes (0: at once), as a body is.
std::string checksum(const std::string& name, const py::bytes& data, size_t piece) {
  awsio::ChecksumAlgo algo = awsio::checksum_algo(name);
  if (algo == awsio::ChecksumAlgo::None) throw py::value_error("checksum not available in this build: " + name);
  std::string_view v = data;
  awsio::Checksum sum;
  sum.start(algo);
  if (piece == 0) piece = v.size() + 1;
  for (size_t i = 0; i < v.size(); i += piece) sum.update(v.data() + i, std::min(piece, v.size() - i));
  return sum.base64();
}

// JPEG bytes -> (width, height, components, progressive).
py::tuple jpeg_header(const py::buffer& data) {
  py::buffer_info b = data.request();
  awsio::jpeg::Header h;
  {
    py::gil_scoped_release nogil;
    h = awsio::jpeg::read_header(static_cast<const uint8_t*>(b.ptr), static_cast<size_t>(b.size * b.itemsize));
  }
  return py::make_tuple(h.width, h.height, h.components, h.progressive);
}

// The RGB pixels of a crop box decoded at N/8 scale (see jpeg.hpp) as a height x width x 3 uint8
// array that owns the decoded vector (no copy), with (x0, y0, N): the array's origin in the scaled
// image and the scale's numerator.
py::tuple jpeg_decode_crop(const py::buffer& data, int x, int y, int w, int h, int min_w, int min_h, int scale_num,
                           bool fast_idct, bool fancy_upsampling) {
  py::buffer_info b = data.request();
  awsio::jpeg::CropRequest req;
  req.x = x, req.y = y, req.w = w, req.h = h, req.min_w = min_w, req.min_h = min_h;
  req.scale_num = scale_num, req.fast_idct = fast_idct, req.fancy_upsampling = fancy_upsampling;
  auto* out = new awsio::jpeg::Decoded();
  py::capsule owner(out, [](void* p) { delete static_cast<awsio::jpeg::Decoded*>(p); });
  {
    py::gil_scoped_release nogil;
    *out = awsio::jpeg::decode_crop(static_cast<const uint8_t*>(b.ptr), static_cast<size_t>(b.size * b.itemsize), req);
  }
  py::array_t<uint8_t> pixels({out->height, out->width, 3}, out->pixels.data(), owner);
  return py::make_tuple(pixels, out->x0, out->y0, out->scale_num);
}

// H x W x 3 uint8 -> 3 x H x W float32 through a 3 x 256 table, mirrored when flip.
py::array_t<float> hwc_to_chw(const py::array_t<uint8_t, py::array::c_style | py::array::forcecast>& pixels,
                              const py::array_t<float, py::array::c_style | py::array::forcecast>& lut, bool flip) {
  if (pixels.ndim() != 3 || pixels.shape(2) != 3) throw py::value_error("pixels must be H x W x 3");
  if (lut.ndim() != 2 || lut.shape(0) != 3 || lut.shape(1) != 256) throw py::value_error("lut must be 3 x 256");
  const auto h = static_cast<int>(pixels.shape(0)), w = static_cast<int>(pixels.shape(1));
  py::array_t<float> out({py::ssize_t(3), py::ssize_t(h), py::ssize_t(w)});
  const uint8_t* src = pixels.data();
  const float* table = lut.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    awsio::pixels::hwc_to_chw(src, h, w, static_cast<std::ptrdiff_t>(w) * 3, table, flip, dst);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "awsio native S3 reader (libcurl multi interface)";
  m.attr("curl_version") = awsio::curl_version_string();
  py::class_<BufferPool, std::shared_ptr<BufferPool>>(m, "BufferPool")
      .def(py::init<size_t>(), py::arg("limit"))
      .def("stats", &BufferPool::stats)
      .def("clear", &BufferPool::clear)
      .def_readonly_static("min_size", &BufferPool::kMinSize)
      .def_static("capacity_for", &BufferPool::capacity_for, py::arg("size"));
  py::class_<awsio::EngineOptions> options(m, "Options");
  options.def(py::init<>());
#define AWSIO_OPTION_BINDING(type, name, def, py) options.def_readwrite(py, &awsio::EngineOptions::name);
  AWSIO_ENGINE_OPTIONS(AWSIO_OPTION_BINDING)
#undef AWSIO_OPTION_BINDING
  py::class_<awsio::RateLimiter, std::shared_ptr<awsio::RateLimiter>>(m, "RateLimiter")
      .def(py::init<>())
      .def_property_readonly("rate", [](awsio::RateLimiter& l) {
        double r = l.rate();
        return r < 0 ? py::object(py::none()) : py::object(py::float_(r));
      });
  py::class_<PyResult> result(m, "Result");
#define AWSIO_RESULT_FIELD(name) result.def_readonly(#name, &PyResult::name);
  AWSIO_RESULT_FIELD(tag) AWSIO_RESULT_FIELD(kind) AWSIO_RESULT_FIELD(data) AWSIO_RESULT_FIELD(size)
  AWSIO_RESULT_FIELD(etag) AWSIO_RESULT_FIELD(last_modified) AWSIO_RESULT_FIELD(status) AWSIO_RESULT_FIELD(code)
  AWSIO_RESULT_FIELD(message) AWSIO_RESULT_FIELD(request_id) AWSIO_RESULT_FIELD(region)
  AWSIO_RESULT_FIELD(reason) AWSIO_RESULT_FIELD(expected) AWSIO_RESULT_FIELD(got) AWSIO_RESULT_FIELD(attempts)
  AWSIO_RESULT_FIELD(requests) AWSIO_RESULT_FIELD(retries) AWSIO_RESULT_FIELD(ttfb)
#undef AWSIO_RESULT_FIELD
  result.def("__repr__", [](const PyResult& r) {
    return "<Result " + std::to_string(r.tag) + " " + r.kind + ">";  // never the body or a URL
  });
  py::class_<Client>(m, "Client")
      .def(py::init<const awsio::EngineOptions&, std::shared_ptr<BufferPool>, std::shared_ptr<awsio::RateLimiter>>(),
           py::arg("options"), py::arg("pool") = std::shared_ptr<BufferPool>(),
           py::arg("limiter") = std::shared_ptr<awsio::RateLimiter>())
      .def("set_credentials", &Client::set_credentials)
      .def("object_url", &Client::object_url)
      .def("submit", &Client::submit, py::arg("tag"), py::arg("bucket"), py::arg("key"), py::arg("start") = 0,
           py::arg("end") = -1, py::arg("head") = false, py::arg("size") = -1,
           py::arg("cuts") = std::vector<int64_t>(), py::arg("query") = std::string(),
           py::arg("if_match") = std::string(), py::arg("allocate") = false)
      .def("wait", &Client::wait, py::arg("timeout") = -1.0)
      .def("cancel_all", &Client::cancel_all)
      .def("wakeup", &Client::wakeup)
      .def("pending", &Client::pending)
      .def("budget", &Client::budget)
      .def("abandon", &Client::abandon);
  m.def("uri_encode", &awsio::uri_encode, py::arg("s"), py::arg("keep_slash") = true);
  m.def("canonical_query", &awsio::canonical_query, py::arg("params"));
  m.def("xml_field", &awsio::xml_field, py::arg("body"), py::arg("tag"));
  m.def("checksum", &checksum, py::arg("algorithm"), py::arg("data"), py::arg("piece") = 0);
  m.def("checksum_algorithms", &awsio::checksum_algorithms);
  // JPEG: corrupt or truncated data raises RuntimeError, an unsupported one (CMYK, or a build
  // without libjpeg: HAVE_JPEG false) NotImplementedError, a box outside the image ValueError.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const awsio::jpeg::JpegUnsupported& e) {
      PyErr_SetString(PyExc_NotImplementedError, e.what());
    }
  });
  m.attr("HAVE_JPEG") = awsio::jpeg::available();
  m.def("jpeg_header", &jpeg_header, py::arg("data"));
  m.def("jpeg_decode_crop", &jpeg_decode_crop, py::arg("data"), py::arg("x"), py::arg("y"), py::arg("w"),
        py::arg("h"), py::arg("min_w") = 0, py::arg("min_h") = 0, py::arg("scale_num") = 0,
        py::arg("fast_idct") = false, py::arg("fancy_upsampling") = true);
  m.def("hwc_to_chw", &hwc_to_chw, py::arg("pixels"), py::arg("lut"), py::arg("flip") = false);
}
