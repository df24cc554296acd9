// pybind11 binding of the native S3 engine: the only file that sees Python headers.
//
// Response bodies are allocated as Python `bytes` objects (the GIL is taken briefly from the
// libcurl callback once Content-Length is known) and filled in place, so results reach Python
// without a copy. Transfers run with the GIL released.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>

#include "s3_core.hpp"

namespace py = pybind11;

namespace {

class PyBytesAllocator : public awsio::BufferAllocator {
 public:
  awsio::Buffer alloc(size_t size) override {
    py::gil_scoped_acquire gil;
    PyObject* obj = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(size));
    awsio::Buffer b;
    if (!obj) {
      PyErr_Clear();
      return b;
    }
    b.handle = obj;
    b.data = PyBytes_AS_STRING(obj);
    b.size = size;
    return b;
  }
  void release(awsio::Buffer& buf) override {
    if (buf.handle) {
      py::gil_scoped_acquire gil;
      Py_DECREF(static_cast<PyObject*>(buf.handle));
    }
    buf = awsio::Buffer{};
  }
};

class Client {
 public:
  Client(const std::string& endpoint, const std::string& region, bool path_style, bool unsigned_requests,
         bool verify, const std::string& ca_bundle, int max_connections, double connect_timeout_s,
         double read_timeout_s, int max_attempts, double deadline_s) {
    awsio::EngineOptions o;
    o.endpoint = endpoint;
    o.region = region;
    o.path_style = path_style;
    o.unsigned_requests = unsigned_requests;
    o.verify = verify;
    o.ca_bundle = ca_bundle;
    o.max_connections = max_connections;
    o.connect_timeout_ms = long(connect_timeout_s * 1000);
    o.read_timeout_s = long(read_timeout_s + 0.999);
    o.max_attempts = max_attempts;
    o.deadline_s = deadline_s;
    engine_.reset(new awsio::S3Engine(o, &alloc_));
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

  void set_credentials(const std::string& ak, const std::string& sk, const std::string& token) {
    auto lock = lock_holding_gil();
    engine_->set_credentials({ak, sk, token});
  }

  std::string object_url(const std::string& bucket, const std::string& key) {
    return engine_->object_url(bucket, key);
  }

  void submit(int64_t tag, const std::string& bucket, const std::string& key, int64_t start, int64_t end,
              bool head) {
    awsio::RequestSpec s;
    s.tag = tag;
    s.bucket = bucket;
    s.key = key;
    s.start = start;
    s.end = end;
    s.head = head;
    auto lock = lock_holding_gil();
    engine_->submit(s);
  }

  py::list wait(double timeout_s) {
    std::vector<awsio::Result> results;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      results = engine_->wait(timeout_s);
    }
    py::list out;
    for (auto& r : results) out.append(convert(r));
    return out;
  }

  void cancel_all() {
    auto lock = lock_holding_gil();
    engine_->cancel_all();
  }

  size_t pending() {
    auto lock = lock_holding_gil();
    return engine_->pending();
  }

  void abandon() {
    if (engine_) {
      engine_->abandon();
      (void)engine_.release();  // leaked on purpose: a forked child must not free the parent's handles
    }
  }

 private:
  static py::tuple convert(awsio::Result& r) {
    using K = awsio::ResultKind;
    if (r.kind == K::Ok && r.head) {
      py::object lm = r.last_modified < 0 ? py::object(py::none()) : py::object(py::int_(r.last_modified));
      py::object etag = r.etag.empty() ? py::object(py::none()) : py::object(py::str(r.etag));
      return py::make_tuple(r.tag, "head", py::make_tuple(r.size, etag, lm));
    }
    if (r.kind == K::Ok) {
      py::object data;
      if (r.body.handle) {
        data = py::reinterpret_steal<py::object>(static_cast<PyObject*>(r.body.handle));
        r.body = awsio::Buffer{};
      } else {
        data = py::bytes(r.fallback);
      }
      return py::make_tuple(r.tag, r.whole_object ? "whole" : "ok", data);
    }
    auto s = [](const std::string& v) { return v.empty() ? py::object(py::none()) : py::object(py::str(v)); };
    if (r.kind == K::HttpError) {
      return py::make_tuple(r.tag, "http",
                            py::make_tuple(r.status, s(r.code), s(r.message), s(r.request_id), s(r.region),
                                           r.attempts));
    }
    return py::make_tuple(r.tag, "conn",
                          py::make_tuple(r.status ? py::object(py::int_(r.status)) : py::object(py::none()),
                                         s(r.code), s(r.reason), r.attempts));
  }

  PyBytesAllocator alloc_;
  std::unique_ptr<awsio::S3Engine> engine_;
  std::mutex mu_;
};

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "awsio native S3 reader (libcurl multi interface)";
  m.attr("curl_version") = awsio::curl_version_string();
  py::class_<Client>(m, "Client")
      .def(py::init<const std::string&, const std::string&, bool, bool, bool, const std::string&, int, double,
                    double, int, double>(),
           py::arg("endpoint"), py::arg("region"), py::arg("path_style"), py::arg("unsigned"), py::arg("verify"),
           py::arg("ca_bundle"), py::arg("max_connections"), py::arg("connect_timeout"), py::arg("read_timeout"),
           py::arg("max_attempts"), py::arg("deadline"))
      .def("set_credentials", &Client::set_credentials)
      .def("object_url", &Client::object_url)
      .def("submit", &Client::submit, py::arg("tag"), py::arg("bucket"), py::arg("key"), py::arg("start") = 0,
           py::arg("end") = -1, py::arg("head") = false)
      .def("wait", &Client::wait, py::arg("timeout") = -1.0)
      .def("cancel_all", &Client::cancel_all)
      .def("pending", &Client::pending)
      .def("abandon", &Client::abandon);
  m.def("uri_encode", &awsio::uri_encode, py::arg("s"), py::arg("keep_slash") = true);
  m.def("canonical_query", &awsio::canonical_query, py::arg("params"));
  m.def("xml_field", &awsio::xml_field, py::arg("body"), py::arg("tag"));
}
