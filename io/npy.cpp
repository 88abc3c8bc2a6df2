#include "mambaseq/npy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mambaseq/error.h"

static_assert(std::endian::native == std::endian::little, "mambaseq IO assumes a little-endian host");

namespace mambaseq {

namespace {

std::string tmp_name(const std::string& path, const std::string& tag = "") {
  return path + ".tmp." + std::to_string(::getpid()) + tag;
}

int open_tmp(const std::string& path, const std::string& tmp) {
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot write {}: cannot create {}: {}", path, tmp, std::strerror(errno));
  return fd;
}

void pwrite_all(int fd, const void* buf, size_t n, uint64_t off, const std::string& path) {
  auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, std::min<size_t>(n, size_t{1} << 30), static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("cannot write {}: {}", path, std::strerror(w < 0 ? errno : EIO));
    p += w;
    off += static_cast<uint64_t>(w);
    n -= static_cast<size_t>(w);
  }
}

void pread_all(int fd, void* buf, size_t n, uint64_t off, const std::string& path) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fail("cannot read back {}: {}", path, r < 0 ? std::strerror(errno) : "short read");
    p += r;
    off += static_cast<uint64_t>(r);
    n -= static_cast<size_t>(r);
  }
}

// fsync, close and rename tmp over path; the directory entry is made durable best effort.
// On failure the temporary file is removed and the target is untouched.
void commit_fd(int& fd, const std::string& tmp, const std::string& path) {
  try {
    if (::fsync(fd) != 0) fail("cannot write {}: fsync failed: {}", path, std::strerror(errno));
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) fail("cannot write {}: close failed: {}", path, std::strerror(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      fail("cannot write {}: rename from {} failed: {}", path, tmp, std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    fd = -1;
    ::unlink(tmp.c_str());
    throw;
  }
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

// 128 bytes hold any 2-D shape; NumPy wants the data 64-byte aligned.
constexpr size_t kNpyHeader = 128;

std::string npy_header(int64_t rows, int64_t cols) {
  std::string dict = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", rows, cols);
  std::string h = "\x93NUMPY";
  h += '\x01';
  h += '\x00';
  const size_t hlen = kNpyHeader - 10;
  h += static_cast<char>(hlen & 0xff);
  h += static_cast<char>(hlen >> 8);
  MS_CHECK(dict.size() < hlen, "npy header for shape ({}, {}) does not fit", rows, cols);
  dict.append(hlen - 1 - dict.size(), ' ');
  return h + dict + '\n';
}

}  // namespace

// ---- .npy -------------------------------------------------------------------------------

NpyWriter::NpyWriter(const std::string& path, int64_t cols) : path_(path), tmp_(tmp_name(path)), cols_(cols) {
  MS_CHECK(cols > 0, "npy writer {}: columns must be positive, got {}", path, cols);
  fd_ = open_tmp(path, tmp_);
}

NpyWriter::~NpyWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void NpyWriter::write_rows(int64_t row, const float* data, int64_t n) {
  MS_CHECK(fd_ >= 0, "npy writer {}: already finished", path_);
  MS_CHECK(row >= 0 && n >= 0, "npy writer {}: bad row range {} + {}", path_, row, n);
  pwrite_all(fd_, data, static_cast<size_t>(n * cols_) * 4, kNpyHeader + static_cast<uint64_t>(row * cols_) * 4,
             path_);
}

void NpyWriter::finish(int64_t rows) {
  MS_CHECK(fd_ >= 0, "npy writer {}: already finished", path_);
  const std::string h = npy_header(rows, cols_);
  MS_CHECK(h.size() == kNpyHeader, "npy writer {}: header does not fit", path_);
  pwrite_all(fd_, h.data(), h.size(), 0, path_);
  const off_t size = static_cast<off_t>(kNpyHeader + static_cast<uint64_t>(rows * cols_) * 4);
  if (::ftruncate(fd_, size) != 0) fail("cannot write {}: {}", path_, std::strerror(errno));
  commit_fd(fd_, tmp_, path_);
}

NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MS_CHECK(in.good(), "cannot open {}", path);
  char pre[10];
  in.read(pre, 10);
  MS_CHECK(in.good() && std::memcmp(pre, "\x93NUMPY", 6) == 0, "{}: not a .npy file", path);
  size_t hlen = static_cast<unsigned char>(pre[8]) | (static_cast<size_t>(static_cast<unsigned char>(pre[9])) << 8);
  if (pre[6] != 1) {  // version 2/3: 4-byte header length
    char more[2];
    in.read(more, 2);
    hlen |= (static_cast<size_t>(static_cast<unsigned char>(more[0])) << 16) |
            (static_cast<size_t>(static_cast<unsigned char>(more[1])) << 24);
  }
  MS_CHECK(hlen < (1u << 20), "{}: implausible .npy header length {}", path, hlen);
  std::string h(hlen, '\0');
  in.read(h.data(), static_cast<std::streamsize>(hlen));
  MS_CHECK(in.good(), "{}: truncated .npy header", path);
  const bool f4 = h.find("'<f4'") != std::string::npos, f8 = h.find("'<f8'") != std::string::npos;
  MS_CHECK(f4 || f8, "{}: only little-endian float32/float64 .npy files are read", path);
  MS_CHECK(h.find("'fortran_order': False") != std::string::npos, "{}: Fortran-order .npy is not supported", path);
  const size_t a = h.find('(', h.find("'shape'")), b = h.find(')', a);
  MS_CHECK(a != std::string::npos && b != std::string::npos, "{}: no shape in the .npy header", path);
  NpyArray r;
  std::string dims = h.substr(a + 1, b - a - 1);
  size_t i = 0;
  while (i < dims.size()) {
    while (i < dims.size() && (dims[i] == ' ' || dims[i] == ',')) ++i;
    if (i >= dims.size()) break;
    size_t e = i;
    while (e < dims.size() && dims[e] >= '0' && dims[e] <= '9') ++e;
    MS_CHECK(e > i, "{}: bad shape '({})' in the .npy header", path, dims);
    r.shape.push_back(std::stoll(dims.substr(i, e - i)));
    i = e;
  }
  const int64_t n = shape_numel(r.shape);
  r.data.resize(n);
  if (f4) {
    in.read(reinterpret_cast<char*>(r.data.data()), static_cast<std::streamsize>(n * 4));
  } else {
    std::vector<double> d(n);
    in.read(reinterpret_cast<char*>(d.data()), static_cast<std::streamsize>(n * 8));
    for (int64_t k = 0; k < n; ++k) r.data[k] = static_cast<float>(d[k]);
  }
  MS_CHECK(in.good() || (n == 0), "{}: truncated .npy data ({} values expected)", path, n);
  return r;
}

// ---- streamed safetensors ---------------------------------------------------------------

namespace {
// Header space reserved in front of tensor 0's rows: 8-byte length + JSON padded with spaces.
constexpr uint64_t kStHeader = 65536;
}  // namespace

SafeTensorsStreamWriter::SafeTensorsStreamWriter(const std::string& path,
                                                 std::vector<std::pair<std::string, int64_t>> tensors)
    : path_(path), tmp_(tmp_name(path)), tensors_(std::move(tensors)) {
  MS_CHECK(!tensors_.empty(), "safetensors writer {}: no tensors", path);
  try {
    for (size_t k = 0; k < tensors_.size(); ++k) {
      MS_CHECK(tensors_[k].second > 0, "safetensors writer {}: tensor '{}' needs a positive column count", path,
               tensors_[k].first);
      std::string tag = ".";  // (not "." + to_string: GCC 12 warns falsely on that)
      tag += std::to_string(k);
      tmps_.push_back(k == 0 ? tmp_ : tmp_name(path, tag));
      fds_.push_back(open_tmp(path, tmps_.back()));
    }
  } catch (...) {
    cleanup();
    throw;
  }
}

SafeTensorsStreamWriter::~SafeTensorsStreamWriter() {
  if (!done_) cleanup();
}

void SafeTensorsStreamWriter::cleanup() {
  for (size_t k = 0; k < fds_.size(); ++k) {
    if (fds_[k] >= 0) ::close(fds_[k]);
    fds_[k] = -1;
    ::unlink(tmps_[k].c_str());
  }
}

void SafeTensorsStreamWriter::write_rows(size_t k, int64_t row, const float* data, int64_t n) {
  MS_CHECK(!done_ && k < tensors_.size(), "safetensors writer {}: bad tensor index {}", path_, k);
  const int64_t cols = tensors_[k].second;
  const uint64_t base = k == 0 ? kStHeader : 0;
  pwrite_all(fds_[k], data, static_cast<size_t>(n * cols) * 4, base + static_cast<uint64_t>(row * cols) * 4, path_);
}

void SafeTensorsStreamWriter::add_i64(const std::string& name, std::vector<int64_t> data) {
  i64_.emplace_back(name, std::move(data));
}

void SafeTensorsStreamWriter::set_metadata(const std::string& key, const std::string& value) {
  meta_.emplace_back(key, value);
}

void SafeTensorsStreamWriter::finish(const std::vector<int64_t>& rows) {
  MS_CHECK(!done_, "safetensors writer {}: already finished", path_);
  MS_CHECK(rows.size() == tensors_.size(), "safetensors writer {}: {} row counts for {} tensors", path_, rows.size(),
           tensors_.size());
  try {
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    if (!meta_.empty()) {
      h["__metadata__"] = nlohmann::ordered_json::object();
      for (auto& [k, v] : meta_) h["__metadata__"][k] = v;
    }
    uint64_t off = 0;
    std::vector<uint64_t> start;
    for (size_t k = 0; k < tensors_.size(); ++k) {
      const uint64_t bytes = static_cast<uint64_t>(rows[k] * tensors_[k].second) * 4;
      h[tensors_[k].first] = {{"dtype", "F32"}, {"shape", {rows[k], tensors_[k].second}}, {"data_offsets", {off, off + bytes}}};
      start.push_back(off);
      off += bytes;
    }
    for (auto& [name, v] : i64_) {
      const uint64_t bytes = v.size() * 8;
      h[name] = {{"dtype", "I64"}, {"shape", {v.size()}}, {"data_offsets", {off, off + bytes}}};
      off += bytes;
    }
    std::string json = h.dump();
    MS_CHECK(json.size() <= kStHeader - 8, "safetensors writer {}: header of {} bytes does not fit the {} reserved",
             path_, json.size(), kStHeader - 8);
    json.append(kStHeader - 8 - json.size(), ' ');
    const uint64_t n = json.size();
    pwrite_all(fds_[0], &n, 8, 0, path_);
    pwrite_all(fds_[0], json.data(), json.size(), 8, path_);
    // Side tensors and the small ones after tensor 0, contiguous: the reference loader
    // refuses gaps and trailing bytes.
    std::vector<char> buf(1 << 22);
    for (size_t k = 1; k < tensors_.size(); ++k) {
      uint64_t left = static_cast<uint64_t>(rows[k] * tensors_[k].second) * 4, src = 0,
               dst = kStHeader + start[k];
      while (left > 0) {
        const size_t m = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
        pread_all(fds_[k], buf.data(), m, src, path_);
        pwrite_all(fds_[0], buf.data(), m, dst, path_);
        src += m;
        dst += m;
        left -= m;
      }
    }
    uint64_t pos = kStHeader + static_cast<uint64_t>(0);
    for (size_t k = 0; k < tensors_.size(); ++k) pos += static_cast<uint64_t>(rows[k] * tensors_[k].second) * 4;
    for (auto& [name, v] : i64_) {
      pwrite_all(fds_[0], v.data(), v.size() * 8, pos, path_);
      pos += v.size() * 8;
    }
    if (::ftruncate(fds_[0], static_cast<off_t>(pos)) != 0) fail("cannot write {}: {}", path_, std::strerror(errno));
    commit_fd(fds_[0], tmp_, path_);
    done_ = true;
    for (size_t k = 1; k < fds_.size(); ++k) {
      ::close(fds_[k]);
      fds_[k] = -1;
      ::unlink(tmps_[k].c_str());
    }
  } catch (...) {
    cleanup();
    done_ = true;
    throw;
  }
}

// ---- atomic text output ----------------------------------------------------------------

AtomicOutput::AtomicOutput(const std::string& path) : path_(path) {
  if (path.empty() || path == "-") {
    f_ = stdout;
    is_stdout_ = true;
    return;
  }
  tmp_ = tmp_name(path);
  f_ = std::fopen(tmp_.c_str(), "wb");
  MS_CHECK(f_ != nullptr, "cannot write {}: cannot create {}: {}", path, tmp_, std::strerror(errno));
}

AtomicOutput::~AtomicOutput() {
  if (!is_stdout_ && f_) {
    std::fclose(f_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicOutput::write(const std::string& s) {
  MS_CHECK(f_ != nullptr, "output {}: already committed", path_);
  if (std::fwrite(s.data(), 1, s.size(), f_) != s.size()) fail("cannot write {}: {}", path_, std::strerror(errno));
}

void AtomicOutput::commit() {
  if (is_stdout_) {
    std::fflush(stdout);
    return;
  }
  MS_CHECK(f_ != nullptr, "output {}: already committed", path_);
  if (std::fflush(f_) != 0) fail("cannot write {}: {}", path_, std::strerror(errno));
  int fd = ::dup(fileno(f_));
  std::fclose(f_);
  f_ = nullptr;
  MS_CHECK(fd >= 0, "cannot write {}: {}", path_, std::strerror(errno));
  commit_fd(fd, tmp_, path_);
}

}  // namespace mambaseq
