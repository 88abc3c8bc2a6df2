#include "mambaseq/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "mambaseq/error.h"

// The file format is little-endian and we copy bytes straight into host integers/floats.
static_assert(std::endian::native == std::endian::little, "mambaseq IO assumes a little-endian host");

namespace mambaseq {

using json = nlohmann::json;

namespace {

// The reference library's limit; anything bigger is corruption, not a real header.
constexpr uint64_t kMaxHeader = 100'000'000;

// Names come from untrusted files; keep error messages on one printable line.
std::string printable(const std::string& s) {
  std::string r;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) r += fmt::format("\\x{:02x}", c);
    else r += static_cast<char>(c);
  }
  return r;
}

std::string errno_str(int e) { return std::strerror(e); }

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // tensor data need not be aligned inside the file
  return v;
}

template <typename T>
void store(std::vector<uint8_t>& out, size_t i, T v) {
  std::memcpy(out.data() + i * sizeof(T), &v, sizeof(T));
}

bool is_float(DType d) { return d == DType::F64 || d == DType::F32 || d == DType::F16 || d == DType::BF16; }

// Converts n elements of a float dtype to Out (float or double). Parallel because loading a
// multi-GB bf16 checkpoint is otherwise a long single-threaded loop.
template <typename Out>
void convert_float(DType dt, const uint8_t* src, int64_t n, Out* dst) {
  if (n == 0) return;
  if (dt == DType::F32 && std::is_same_v<Out, float>) {
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
    return;
  }
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    switch (dt) {
      case DType::F64: dst[i] = static_cast<Out>(load<double>(src + 8 * i)); break;
      case DType::F32: dst[i] = load<float>(src + 4 * i); break;
      case DType::F16: dst[i] = f16_to_f32(load<uint16_t>(src + 2 * i)); break;
      case DType::BF16: dst[i] = bf16_to_f32(load<uint16_t>(src + 2 * i)); break;
      default: break;  // callers check is_float first
    }
  }
}

// Write all bytes, retrying short writes and EINTR.
void write_all(int fd, const void* buf, size_t n, const std::string& path) {
  auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("cannot write {}: {}", path, errno_str(w < 0 ? errno : EIO));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Temp file + fsync + rename: readers see either the old file or the complete new one.
void write_atomic_with(const std::string& path, const std::function<void(int)>& body) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot write {}: cannot create {}: {}", path, tmp, errno_str(errno));
  try {
    body(fd);
    if (::fsync(fd) != 0) fail("cannot write {}: fsync failed: {}", path, errno_str(errno));
    int rc = ::close(fd);  // close can report deferred write errors (NFS, quotas)
    fd = -1;
    if (rc != 0) fail("cannot write {}: close failed: {}", path, errno_str(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      fail("cannot write {}: rename from {} failed: {}", path, tmp, errno_str(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable; best effort, some filesystems refuse directory fsync.
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace

// ---- dtypes ----------------------------------------------------------------------------

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

DType dtype_from_name(const std::string& s) {
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::I16,
                  DType::I8, DType::U8, DType::BOOL})
    if (s == dtype_name(d)) return d;
  fail("unsupported dtype '{}' (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)", printable(s));
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::I8: case DType::U8: case DType::BOOL: return 1;
  }
  return 0;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) {  // zero or subnormal: m · 2^-24, exact in fp32
    float v = std::ldexp(static_cast<float>(m), -24);
    return sign ? -v : v;
  }
  uint32_t bits = e == 31 ? (sign | 0x7f800000u | (m << 13))  // inf / nan (payload kept)
                          : (sign | ((e + 112) << 23) | (m << 13));  // rebias 15 -> 127
  return std::bit_cast<float>(bits);
}

float bf16_to_f32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint16_t f32_to_bf16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN;
  // rounding could otherwise carry a NaN's payload into inf.
  x += 0x7fffu + ((x >> 16) & 1);  // round to nearest, ties to even; overflow carries into inf
  return static_cast<uint16_t>(x >> 16);
}

uint16_t f32_to_f16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00 | ((ax >> 13) & 0x3ff);  // NaN, quiet
  if (ax >= 0x477ff000u) return sign | 0x7c00;  // >= 65520 (halfway past 65504, ties to even) -> inf
  if (ax < 0x38800000u) {                        // below 2^-14: f16 subnormal or zero
    int e = static_cast<int>(ax >> 23);
    if (e < 102) return sign;  // < 2^-25: rounds to zero
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    int shift = 126 - e;  // value / 2^-24 = m >> shift
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;  // may carry into the smallest normal: fine
    return sign | static_cast<uint16_t>(q);
  }
  uint32_t r = ax - 0x38000000u;  // rebias exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1);
  return sign | static_cast<uint16_t>(r >> 13);
}

// ---- reader ----------------------------------------------------------------------------

SafeTensorsReader::SafeTensorsReader(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open safetensors file {}: {}", path, errno_str(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("cannot open safetensors file {}: not a regular file", path);
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    fail("{}: truncated safetensors file: {} bytes, but the header length alone takes 8", path, size_);
  }
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (p == MAP_FAILED) fail("cannot map safetensors file {}: {}", path, errno_str(err));
  base_ = static_cast<const uint8_t*>(p);
  try {
    parse_header();
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(base_), size_);  // the destructor won't run
    throw;
  }
}

SafeTensorsReader::~SafeTensorsReader() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

SafeTensorsReader::SafeTensorsReader(SafeTensorsReader&& o) noexcept
    : path_(std::move(o.path_)),
      base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      data_start_(o.data_start_),
      tensors_(std::move(o.tensors_)),
      metadata_(std::move(o.metadata_)) {}

SafeTensorsReader& SafeTensorsReader::operator=(SafeTensorsReader&& o) noexcept {
  if (this != &o) {
    if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
    path_ = std::move(o.path_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    data_start_ = o.data_start_;
    tensors_ = std::move(o.tensors_);
    metadata_ = std::move(o.metadata_);
  }
  return *this;
}

void SafeTensorsReader::parse_header() {
  const std::string& f = path_;
  const uint64_t n = load<uint64_t>(base_);
  MS_CHECK(n <= kMaxHeader, "{}: header length {} exceeds the 100 MB limit (corrupt or not a safetensors file)",
           f, n);
  MS_CHECK(n <= size_ - 8, "{}: truncated safetensors file: header length {} runs past the end of the file ({} bytes)",
           f, n, size_);
  data_start_ = 8 + n;
  const uint64_t data_size = size_ - data_start_;

  // nlohmann keeps the last of duplicate keys silently; a duplicated tensor name is corruption.
  std::string dup;
  std::set<std::string> seen;
  json h;
  try {
    const char* b = reinterpret_cast<const char*>(base_ + 8);
    h = json::parse(b, b + n, [&](int depth, json::parse_event_t ev, json& parsed) {
      if (depth == 1 && ev == json::parse_event_t::key && dup.empty() &&
          !seen.insert(parsed.get<std::string>()).second)
        dup = parsed.get<std::string>();
      return true;
    });
  } catch (const json::exception& e) {
    fail("{}: bad header JSON: {}", f, e.what());
  }
  MS_CHECK(h.is_object(), "{}: bad header: the JSON header is not an object (found {})", f, h.type_name());
  MS_CHECK(dup.empty(), "{}: bad header: tensor '{}' appears twice", f, printable(dup));

  for (auto& [name, v] : h.items()) {
    const std::string pn = printable(name);
    if (name == "__metadata__") {
      MS_CHECK(v.is_object(), "{}: __metadata__ must be an object of strings, found {}", f, v.type_name());
      for (auto& [k, s] : v.items()) {
        MS_CHECK(s.is_string(), "{}: __metadata__ value for '{}' must be a string, found {}", f, printable(k),
                 s.type_name());
        metadata_[k] = s.get<std::string>();
      }
      continue;
    }
    MS_CHECK(v.is_object(), "{}: header entry for tensor '{}' is not an object", f, pn);
    for (const char* key : {"dtype", "shape", "data_offsets"})
      MS_CHECK(v.contains(key), "{}: tensor '{}' is missing '{}' in the header", f, pn, key);

    TensorInfo t;
    t.name = name;
    const json& jd = v["dtype"];
    MS_CHECK(jd.is_string(), "{}: tensor '{}' has a non-string dtype", f, pn);
    try {
      t.dtype = dtype_from_name(jd.get<std::string>());
    } catch (const Error& e) {
      fail("{}: tensor '{}': {}", f, pn, e.what());
    }

    const json& js = v["shape"];
    MS_CHECK(js.is_array(), "{}: tensor '{}' has a shape that is not an array", f, pn);
    uint64_t numel = 1;
    for (const json& d : js) {
      MS_CHECK(d.is_number_integer(), "{}: tensor '{}' has a non-integer dimension {} in its shape", f, pn, d.dump());
      MS_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= uint64_t(INT64_MAX),
               "{}: tensor '{}' has a negative or huge dimension {} in its shape", f, pn, d.dump());
      uint64_t dim = d.get<uint64_t>();
      MS_CHECK(!__builtin_mul_overflow(numel, dim, &numel), "{}: tensor '{}' shape {} overflows", f, pn, js.dump());
      t.shape.push_back(static_cast<int64_t>(dim));
    }

    const json& jo = v["data_offsets"];
    MS_CHECK(jo.is_array() && jo.size() == 2 && jo[0].is_number_unsigned() && jo[1].is_number_unsigned(),
             "{}: tensor '{}' data_offsets must be 2 non-negative integers, found {}", f, pn, jo.dump());
    t.begin = jo[0].get<uint64_t>();
    t.end = jo[1].get<uint64_t>();
    MS_CHECK(t.begin <= t.end, "{}: tensor '{}' data_offsets [{}, {}] are decreasing", f, pn, t.begin, t.end);
    MS_CHECK(t.end <= data_size,
             "{}: tensor '{}' data_offsets [{}, {}] run past the end of the data section ({} bytes; file truncated?)",
             f, pn, t.begin, t.end, data_size);
    uint64_t bytes = 0;
    MS_CHECK(!__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &bytes) && bytes == t.end - t.begin,
             "{}: tensor '{}' has {} bytes in data_offsets, but shape {} of {} needs {}", f, pn, t.end - t.begin,
             shape_str(t.shape), dtype_name(t.dtype), numel * dtype_size(t.dtype));
    tensors_.emplace(name, std::move(t));
  }

  // Overlap check: sort by offset, each non-empty tensor must start at or after the previous end.
  std::vector<const TensorInfo*> order;
  for (auto& [_, t] : tensors_)
    if (t.end > t.begin) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < order.size(); ++i) {
    const TensorInfo &a = *order[i - 1], &b = *order[i];
    MS_CHECK(b.begin >= a.end, "{}: tensors '{}' [{}, {}) and '{}' [{}, {}) overlap in the data section", f,
             printable(a.name), a.begin, a.end, printable(b.name), b.begin, b.end);
  }
}

std::vector<std::string> SafeTensorsReader::names() const {
  std::vector<std::string> r;
  r.reserve(tensors_.size());
  for (auto& [k, _] : tensors_) r.push_back(k);
  return r;
}

const TensorInfo& SafeTensorsReader::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    fail("tensor '{}' not found in {} ({} tensors)", printable(name), path_, tensors_.size());
  return it->second;
}

Tensor SafeTensorsReader::read_f32(const std::string& name) const {
  Tensor t(info(name).shape);
  read_f32_into(name, t);
  return t;
}

Tensor SafeTensorsReader::read_f32(const std::string& name, const Shape& expected) const {
  check_shape(name, expected);  // before allocating: the expected shape may be huge
  Tensor t(expected);
  read_f32_into(name, t);
  return t;
}

void SafeTensorsReader::check_shape(const std::string& name, const Shape& expected) const {
  const TensorInfo& t = info(name);
  MS_CHECK(t.shape == expected, "tensor '{}' in {} has shape {}, expected {}", printable(name), path_,
           shape_str(t.shape), shape_str(expected));
}

void SafeTensorsReader::read_f32_into(const std::string& name, Tensor& dst) const {
  check_shape(name, dst.shape());
  const TensorInfo& t = info(name);
  MS_CHECK(is_float(t.dtype), "tensor '{}' in {} has dtype {}, expected a floating-point dtype", printable(name),
           path_, dtype_name(t.dtype));
  convert_float(t.dtype, data(t), dst.numel(), dst.data());
}

std::vector<int64_t> SafeTensorsReader::read_i64(const std::string& name) const {
  const TensorInfo& t = info(name);
  MS_CHECK(!is_float(t.dtype), "tensor '{}' in {} has dtype {}, expected an integer dtype", printable(name), path_,
           dtype_name(t.dtype));
  const size_t n = (t.end - t.begin) / dtype_size(t.dtype);
  std::vector<int64_t> r(n);
  const uint8_t* p = data(t);
  for (size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::I64: r[i] = load<int64_t>(p + 8 * i); break;
      case DType::I32: r[i] = load<int32_t>(p + 4 * i); break;
      case DType::I16: r[i] = load<int16_t>(p + 2 * i); break;
      case DType::I8: r[i] = static_cast<int8_t>(p[i]); break;
      case DType::U8: r[i] = p[i]; break;
      case DType::BOOL: r[i] = p[i] != 0; break;
      default: break;
    }
  }
  return r;
}

std::vector<double> SafeTensorsReader::read_f64(const std::string& name) const {
  const TensorInfo& t = info(name);
  MS_CHECK(is_float(t.dtype), "tensor '{}' in {} has dtype {}, expected a floating-point dtype", printable(name),
           path_, dtype_name(t.dtype));
  std::vector<double> r((t.end - t.begin) / dtype_size(t.dtype));
  convert_float(t.dtype, data(t), static_cast<int64_t>(r.size()), r.data());
  return r;
}

const void* SafeTensorsReader::raw(const std::string& name) const { return data(info(name)); }

// ---- writer ----------------------------------------------------------------------------

SafeTensorsWriter::Entry& SafeTensorsWriter::new_entry(const std::string& name, DType dtype, Shape shape) {
  MS_CHECK(!name.empty() && name != "__metadata__", "safetensors writer: invalid tensor name '{}'", printable(name));
  for (auto& e : entries_)
    MS_CHECK(e.name != name, "safetensors writer: duplicate tensor name '{}'", printable(name));
  for (auto d : shape)
    MS_CHECK(d >= 0, "safetensors writer: tensor '{}' has negative dimension in shape {}", printable(name),
             shape_str(shape));
  size_t n = static_cast<size_t>(shape_numel(shape));
  entries_.push_back({name, dtype, std::move(shape), std::vector<uint8_t>(n * dtype_size(dtype))});
  return entries_.back();
}

void SafeTensorsWriter::add(const std::string& name, const float* data, Shape shape, DType out) {
  MS_CHECK(is_float(out), "safetensors writer: tensor '{}': cannot store float data as {}", printable(name),
           dtype_name(out));
  Entry& e = new_entry(name, out, std::move(shape));
  const size_t n = e.bytes.size() / dtype_size(out);
  if (out == DType::F32) {
    if (n) std::memcpy(e.bytes.data(), data, n * 4);
    return;
  }
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (size_t i = 0; i < n; ++i) {
    if (out == DType::F64) store<double>(e.bytes, i, data[i]);
    else if (out == DType::F16) store<uint16_t>(e.bytes, i, f32_to_f16(data[i]));
    else store<uint16_t>(e.bytes, i, f32_to_bf16(data[i]));
  }
}

void SafeTensorsWriter::add_i64(const std::string& name, const int64_t* data, Shape shape) {
  Entry& e = new_entry(name, DType::I64, std::move(shape));
  if (!e.bytes.empty()) std::memcpy(e.bytes.data(), data, e.bytes.size());
}

void SafeTensorsWriter::add_f64(const std::string& name, const double* data, Shape shape, DType out) {
  // No F16/BF16 here: double -> float -> half would round twice.
  MS_CHECK(out == DType::F64 || out == DType::F32, "safetensors writer: tensor '{}': cannot store double data as {}",
           printable(name), dtype_name(out));
  Entry& e = new_entry(name, out, std::move(shape));
  const size_t n = e.bytes.size() / dtype_size(out);
  if (out == DType::F64) {
    if (n) std::memcpy(e.bytes.data(), data, n * 8);
  } else {
    for (size_t i = 0; i < n; ++i) store<float>(e.bytes, i, static_cast<float>(data[i]));
  }
}

void SafeTensorsWriter::set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

void SafeTensorsWriter::write(const std::string& path) const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) h["__metadata__"] = metadata_;
  uint64_t off = 0;
  for (auto& e : entries_) {
    nlohmann::ordered_json t;
    t["dtype"] = dtype_name(e.dtype);  // key order as the reference library writes it
    t["shape"] = e.shape;
    t["data_offsets"] = {off, off + e.bytes.size()};
    off += e.bytes.size();
    h[e.name] = std::move(t);
  }
  std::string header;
  try {
    header = h.dump();
  } catch (const nlohmann::json::exception& e) {  // e.g. a name that is not valid UTF-8
    fail("cannot write {}: cannot encode the header: {}", path, e.what());
  }
  // Pad so the data section starts 8-byte aligned, as the reference library does.
  header.append((8 - header.size() % 8) % 8, ' ');
  write_atomic_with(path, [&](int fd) {
    uint64_t n = header.size();
    write_all(fd, &n, 8, path);
    write_all(fd, header.data(), header.size(), path);
    for (auto& e : entries_) write_all(fd, e.bytes.data(), e.bytes.size(), path);
  });
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_atomic_with(path, [&](int fd) { write_all(fd, bytes.data(), bytes.size(), path); });
}

}  // namespace mambaseq
