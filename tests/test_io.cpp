// IO layer: safetensors reader/writer, f16/bf16 conversion, config.json read/write.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <sstream>

#include "mambaseq/error.h"
#include "mambaseq/hf_config.h"
#include "mambaseq/safetensors.h"

using namespace mambaseq;
namespace fs = std::filesystem;

namespace {

const std::string kData = MAMBASEQ_TEST_DATA;

std::string tmp_path(const std::string& name) {
  return (fs::path(::testing::TempDir()) / ("mambaseq_io_" + std::to_string(::getpid()) + "_" + name)).string();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string u64le(uint64_t n) { return std::string(reinterpret_cast<const char*>(&n), 8); }

// A safetensors file from a literal header and data section.
std::string st_file(const std::string& header, const std::string& data = "") {
  return u64le(header.size()) + header + data;
}

// Runs f, which must throw mambaseq::Error; returns its message.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected mambaseq::Error, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected an Error, nothing was thrown";
  return "";
}

// The message must be one line and contain every phrase.
void expect_error(const std::function<void()>& f, std::initializer_list<std::string> phrases) {
  std::string msg = error_of(f);
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  for (auto& p : phrases) EXPECT_NE(msg.find(p), std::string::npos) << "missing '" << p << "' in: " << msg;
}

// Writes a malformed safetensors file and checks that opening it fails naming the file.
void expect_bad_file(const std::string& name, const std::string& bytes, std::initializer_list<std::string> phrases) {
  SCOPED_TRACE(name);
  std::string p = tmp_path(name + ".safetensors");
  write_bytes(p, bytes);
  expect_error([&] { SafeTensorsReader r(p); }, {p});
  expect_error([&] { SafeTensorsReader r(p); }, phrases);
  fs::remove(p);
}

uint32_t fbits(float f) { return std::bit_cast<uint32_t>(f); }
float ffrom(uint32_t b) { return std::bit_cast<float>(b); }

}  // namespace

// ---- dtypes and conversions --------------------------------------------------------------

TEST(SafeTensorsDType, NamesAndSizes) {
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::I16, DType::I8,
                  DType::U8, DType::BOOL})
    EXPECT_EQ(dtype_from_name(dtype_name(d)), d);
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::BOOL), 1u);
  expect_error([] { dtype_from_name("F8_E4M3"); }, {"unsupported dtype", "F8_E4M3"});
}

TEST(SafeTensorsDType, F16KnownBits) {
  struct Case { float f; uint16_t h; };
  const Case cases[] = {
      {1.0f, 0x3c00}, {-2.0f, 0xc000}, {0.0f, 0x0000}, {-0.0f, 0x8000}, {65504.0f, 0x7bff},
      {65519.0f, 0x7bff},                        // below the halfway point to 65536
      {65520.0f, 0x7c00},                        // halfway, ties to even (inf)
      {1e6f, 0x7c00}, {-1e6f, 0xfc00},           // overflow -> inf
      {1.0f / 3.0f, 0x3555},
      {ffrom(0x3f801000), 0x3c00},               // 1 + 2^-11: tie, to even
      {ffrom(0x3f803000), 0x3c02},               // 1 + 3*2^-11: tie, to even (up)
      {ffrom(0x3f801001), 0x3c01},               // just above the tie
      {std::ldexp(1.0f, -14), 0x0400},           // smallest normal
      {std::ldexp(1.0f, -24), 0x0001},           // smallest subnormal
      {std::ldexp(1.0f, -25), 0x0000},           // tie between 0 and 2^-24 -> 0
      {std::ldexp(1.5f, -25), 0x0001},
      {std::ldexp(3.0f, -25), 0x0002},           // 1.5 * 2^-24: tie -> even 2
      {std::ldexp(1023.0f, -24), 0x03ff},        // largest subnormal
      {std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25), 0x0400},  // tie -> even: rounds up into normal
      {1e-8f, 0x0000}, {-1e-8f, 0x8000}, {ffrom(0x00000001), 0x0000},
      {std::numeric_limits<float>::infinity(), 0x7c00}, {-std::numeric_limits<float>::infinity(), 0xfc00},
  };
  for (auto& c : cases) {
    EXPECT_EQ(f32_to_f16(c.f), c.h) << std::hexfloat << c.f;
    // values that f16 represents exactly convert back bit for bit (sign of zero included)
    if (f16_to_f32(c.h) == c.f) {
      EXPECT_EQ(fbits(f16_to_f32(c.h)), fbits(c.f));
    }
  }
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_EQ(fbits(f16_to_f32(0x8000)), 0x80000000u);
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7c00)) && f16_to_f32(0x7c00) > 0);
  EXPECT_TRUE(std::isinf(f16_to_f32(0xfc00)) && f16_to_f32(0xfc00) < 0);
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7c01)));  // signalling payload stays NaN
  uint16_t qn = f32_to_f16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(qn & 0x7c00, 0x7c00);
  EXPECT_NE(qn & 0x03ff, 0);
  EXPECT_NE(f32_to_f16(ffrom(0x7f800001)) & 0x03ff, 0);  // tiny-payload NaN must not become inf
}

TEST(SafeTensorsDType, BF16KnownBits) {
  struct Case { uint32_t f; uint16_t b; };
  const Case cases[] = {
      {0x3f800000, 0x3f80},  // 1
      {0x3f808000, 0x3f80},  // tie -> even (down)
      {0x3f818000, 0x3f82},  // tie -> even (up)
      {0x3f808001, 0x3f81},  // above the tie
      {0x3f807fff, 0x3f80},  // below the tie
      {0xc0490fdb, 0xc049},  // -pi
      {0x7f7fffff, 0x7f80},  // FLT_MAX rounds to inf
      {0x7f800000, 0x7f80}, {0xff800000, 0xff80},
      {0x00000001, 0x0000},  // subnormal rounds to zero
      {0x00018000, 0x0002},  // subnormal tie -> even
      {0x80000000, 0x8000},
  };
  for (auto& c : cases) EXPECT_EQ(f32_to_bf16(ffrom(c.f)), c.b) << std::hex << c.f;
  EXPECT_EQ(fbits(bf16_to_f32(0x0001)), 0x00010000u);  // bf16 subnormal
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(0x7fc0)));
  uint16_t n = f32_to_bf16(ffrom(0x7f800001));  // NaN whose payload lives only in the low bits
  EXPECT_EQ(n & 0x7f80, 0x7f80);
  EXPECT_NE(n & 0x007f, 0);
}

TEST(SafeTensorsDType, HalfRoundTripsExhaustive) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
    } else {
      ASSERT_EQ(f32_to_f16(f), h) << std::hex << h;
    }
    float b = bf16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(b)) {
      ASSERT_EQ(f32_to_bf16(b), h) << std::hex << h;
    }
  }
}

#if defined(__FLT16_MAX__)
// The compiler's _Float16 conversion is IEEE round-to-nearest-even: an independent oracle.
TEST(SafeTensorsDType, F16MatchesCompilerFloat16) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = bits(rng);
    if (i % 2) u = (u & 0x87ffffffu) | 0x30000000u;  // half the samples in the f16 range
    float f = ffrom(u);
    if (std::isnan(f)) continue;
    _Float16 r = static_cast<_Float16>(f);
    uint16_t want;
    std::memcpy(&want, &r, 2);
    ASSERT_EQ(f32_to_f16(f), want) << std::hex << u;
  }
}
#endif

// ---- safetensors round trip ---------------------------------------------------------------

TEST(SafeTensors, RoundTripEveryDtype) {
  const std::string p = tmp_path("roundtrip.safetensors");
  const std::vector<float> v = {1.0f, -2.5f, 1.0f / 3.0f, 65504.0f, std::ldexp(1.0f, -24), ffrom(0x3f808000)};
  const std::vector<double> d = {0.1, -1e300, 3.0, 1.0 / 3.0};
  const std::vector<int64_t> ids = {0, -1, INT64_MAX, INT64_MIN, 42, 7};
  SafeTensorsWriter w;
  w.add("f32", v.data(), {2, 3});
  w.add("f16", v.data(), {2, 3}, DType::F16);
  w.add("bf16", v.data(), {6}, DType::BF16);
  w.add("f64_from_f32", v.data(), {3, 2}, DType::F64);
  w.add_f64("f64", d.data(), {2, 2});
  w.add_f64("f32_from_f64", d.data(), {4}, DType::F32);
  w.add_i64("ids", ids.data(), {6});
  w.add("empty", nullptr, {0, 5});
  w.add("scalar", v.data() + 1, {});
  w.set_metadata("format", "pt");
  w.set_metadata("note", "héllo");
  w.write(p);

  SafeTensorsReader r(p);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"bf16", "empty", "f16", "f32", "f32_from_f64", "f64",
                                                 "f64_from_f32", "ids", "scalar"}));
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.metadata().at("note"), "héllo");
  EXPECT_TRUE(r.has("f16"));
  EXPECT_FALSE(r.has("nope"));

  // F32 and F64 are exact.
  Tensor t = r.read_f32("f32", {2, 3});
  for (int i = 0; i < 6; ++i) EXPECT_EQ(fbits(t[i]), fbits(v[i]));
  EXPECT_EQ(r.read_f64("f64"), d);
  auto d2 = r.read_f64("f64_from_f32");
  for (int i = 0; i < 6; ++i) EXPECT_EQ(d2[i], double(v[i]));
  auto d3 = r.read_f64("f32_from_f64");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(d3[i], double(float(d[i])));
  EXPECT_EQ(r.read_i64("ids"), ids);

  // F16/BF16: stored bits are the RNE patterns, and read back as those values.
  const uint16_t h_want[] = {0x3c00, 0xc100, 0x3555, 0x7bff, 0x0001, 0x3c04};
  const uint16_t b_want[] = {0x3f80, 0xc020, 0x3eab, 0x4780, 0x3380, 0x3f80};
  uint16_t got[6];
  std::memcpy(got, r.raw("f16"), 12);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(got[i], h_want[i]) << i;
  std::memcpy(got, r.raw("bf16"), 12);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(got[i], b_want[i]) << i;
  Tensor h = r.read_f32("f16");
  Tensor b = r.read_f32("bf16", {6});
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(h[i], f16_to_f32(h_want[i]));
    EXPECT_EQ(b[i], bf16_to_f32(b_want[i]));
  }
  EXPECT_EQ(r.read_f64("f16")[2], double(f16_to_f32(0x3555)));

  const TensorInfo& e = r.info("empty");
  EXPECT_EQ(e.shape, (Shape{0, 5}));
  EXPECT_EQ(e.begin, e.end);
  EXPECT_EQ(r.read_f32("empty").numel(), 0);
  EXPECT_EQ(r.info("scalar").shape, Shape{});
  EXPECT_EQ(r.read_f32("scalar", {})[0], -2.5f);

  // Layout: header padded with spaces to a multiple of 8, offsets contiguous in insertion order.
  std::string bytes = read_bytes(p);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  uint64_t off = 0;
  for (const char* name : {"f32", "f16", "bf16", "f64_from_f32", "f64", "f32_from_f64", "ids", "empty", "scalar"}) {
    EXPECT_EQ(r.info(name).begin, off) << name;
    off = r.info(name).end;
  }
  EXPECT_EQ(8 + n + off, bytes.size());
  EXPECT_EQ(bytes.substr(8, n).find("\"__metadata__\""), 1u);  // first, as the reference writes it

  // read_f32_into reuses the destination and checks its shape.
  Tensor into({2, 3});
  float* before = into.data();
  r.read_f32_into("f16", into);
  EXPECT_EQ(into.data(), before);
  EXPECT_EQ(into[0], 1.0f);

  // The reader is movable; the mapping follows it.
  SafeTensorsReader moved = std::move(r);
  EXPECT_EQ(moved.read_f32("f32")[1], -2.5f);
  fs::remove(p);
}

TEST(SafeTensors, ReadsEveryIntegerDtype) {
  // Hand-built: the writer only emits I64, but checkpoints carry the others.
  std::string data;
  auto put = [&](const void* p, size_t n) { data.append(static_cast<const char*>(p), n); };
  int32_t i32[] = {-5, 2147483647};
  int16_t i16[] = {-32768, 7};
  int8_t i8[] = {-128, 127};
  uint8_t u8[] = {255, 0};
  uint8_t bl[] = {1, 0};
  put(i32, 8); put(i16, 4); put(i8, 2); put(u8, 2); put(bl, 2);
  std::string h = R"({"a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"I16","shape":[2],"data_offsets":[8,12]},)"
                  R"("c":{"dtype":"I8","shape":[2],"data_offsets":[12,14]},)"
                  R"("d":{"dtype":"U8","shape":[2],"data_offsets":[14,16]},)"
                  R"("e":{"dtype":"BOOL","shape":[2],"data_offsets":[16,18]}})";
  std::string p = tmp_path("ints.safetensors");
  write_bytes(p, st_file(h, data));
  SafeTensorsReader r(p);
  EXPECT_EQ(r.read_i64("a"), (std::vector<int64_t>{-5, 2147483647}));
  EXPECT_EQ(r.read_i64("b"), (std::vector<int64_t>{-32768, 7}));
  EXPECT_EQ(r.read_i64("c"), (std::vector<int64_t>{-128, 127}));
  EXPECT_EQ(r.read_i64("d"), (std::vector<int64_t>{255, 0}));
  EXPECT_EQ(r.read_i64("e"), (std::vector<int64_t>{1, 0}));
  expect_error([&] { r.read_f32("a"); }, {p, "'a'", "I32", "floating-point"});
  expect_error([&] { r.read_f64("e"); }, {p, "'e'", "BOOL"});
  fs::remove(p);
}

// ---- the Hugging Face fixture --------------------------------------------------------------

TEST(SafeTensors, HfTinyModel) {
  const std::string p = kData + "/hf-tiny/model.safetensors";
  SafeTensorsReader r(p);
  ModelConfig cfg = read_model_config(kData + "/hf-tiny/config.json");
  const auto& m = cfg.mamba;
  const int64_t D = m.d_model, Di = m.d_inner(), N = m.d_state, R = m.dt_rank_value(), K = m.d_conv;
  std::map<std::string, Shape> want = {{"backbone.embeddings.weight", {m.vocab_padded(), D}},
                                       {"backbone.norm_f.weight", {D}}};
  for (int i = 0; i < m.n_layer; ++i) {
    std::string l = "backbone.layers." + std::to_string(i) + ".";
    want[l + "norm.weight"] = {D};
    want[l + "mixer.in_proj.weight"] = {2 * Di, D};
    want[l + "mixer.conv1d.weight"] = {Di, 1, K};
    want[l + "mixer.conv1d.bias"] = {Di};
    want[l + "mixer.x_proj.weight"] = {R + 2 * N, Di};
    want[l + "mixer.dt_proj.weight"] = {Di, R};
    want[l + "mixer.dt_proj.bias"] = {Di};
    want[l + "mixer.A_log"] = {Di, N};
    want[l + "mixer.D"] = {Di};
    want[l + "mixer.out_proj.weight"] = {D, Di};
  }
  std::vector<std::string> want_names;
  for (auto& [k, _] : want) want_names.push_back(k);
  EXPECT_EQ(r.names(), want_names);  // 22 tensors; tied, so no lm_head.weight
  EXPECT_FALSE(r.has("lm_head.weight"));
  EXPECT_EQ(r.metadata().at("format"), "pt");
  int64_t total = 0;
  for (auto& [name, shape] : want) {
    EXPECT_EQ(r.info(name).shape, shape) << name;
    EXPECT_EQ(r.info(name).dtype, DType::F32) << name;
    Tensor t = r.read_f32(name, shape);
    EXPECT_EQ(std::memcmp(t.data(), r.raw(name), t.bytes()), 0) << name;
    total += t.numel();
  }
  EXPECT_EQ(total, count_parameters(cfg));
  // A_log is initialised near log(n+1): a plausibility check that the bytes are the weights.
  Tensor a = r.read_f32("backbone.layers.0.mixer.A_log");
  EXPECT_NEAR(a[15], std::log(16.0), 0.5);
  expect_error([&] { r.read_f32("backbone.embeddings.weight", {37, 49}); },
               {"tensor 'backbone.embeddings.weight' in " + p + " has shape [37, 48], expected [37, 49]"});
  expect_error([&] { r.info("backbone.embedding.weight"); }, {"'backbone.embedding.weight' not found in " + p});
}

// Writing the fixture's tensors back in name order reproduces the reference library's bytes.
TEST(SafeTensors, WriterMatchesReferenceLibraryBytes) {
  const std::string p = kData + "/hf-tiny/model.safetensors";
  SafeTensorsReader r(p);
  SafeTensorsWriter w;
  for (auto& name : r.names()) {
    Tensor t = r.read_f32(name);
    w.add(name, t.data(), t.shape());
  }
  for (auto& [k, v] : r.metadata()) w.set_metadata(k, v);
  const std::string out = tmp_path("rewritten.safetensors");
  w.write(out);
  EXPECT_TRUE(read_bytes(out) == read_bytes(p));
  fs::remove(out);
}

TEST(SafeTensors, HfTinyReference) {
  const std::string p = kData + "/hf-tiny/reference.safetensors";
  SafeTensorsReader r(p);
  EXPECT_EQ(r.info("input_ids").dtype, DType::I64);
  EXPECT_EQ(r.info("input_ids").shape, (Shape{2, 33}));
  auto ids = r.read_i64("input_ids");
  ASSERT_EQ(ids.size(), 66u);
  for (auto id : ids) EXPECT_TRUE(id >= 0 && id < 37) << id;
  // The fixture stores logits/loss/loss_weights as F32 (despite its README), the rest as F64.
  EXPECT_EQ(r.info("logits").shape, (Shape{2, 33, 37}));
  EXPECT_EQ(r.read_f64("logits").size(), 2u * 33 * 37);
  EXPECT_EQ(r.info("last_hidden_state").dtype, DType::F64);
  EXPECT_EQ(r.info("last_hidden_state").shape, (Shape{2, 33, 48}));
  auto hs = r.read_f64("last_hidden_state");
  Tensor hf = r.read_f32("last_hidden_state", {2, 33, 48});
  for (size_t i = 0; i < hs.size(); ++i) ASSERT_EQ(hf[i], static_cast<float>(hs[i]));
  EXPECT_EQ(r.info("grad.backbone.embeddings.weight").dtype, DType::F64);
  EXPECT_EQ(r.info("grad.backbone.embeddings.weight").shape, (Shape{37, 48}));
  expect_error([&] { r.read_i64("last_hidden_state"); }, {p, "'last_hidden_state'", "F64", "integer"});
  expect_error([&] { r.read_f32("input_ids"); }, {p, "'input_ids'", "I64", "floating-point"});
}

// ---- malformed files -----------------------------------------------------------------------

TEST(SafeTensors, MalformedFiles) {
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string data8(8, '\0');
  expect_bad_file("short", "abcde", {"truncated", "5 bytes"});
  expect_bad_file("empty", "", {"truncated"});
  expect_bad_file("header_past_end", u64le(1000) + "{}", {"truncated", "header length 1000", "past the end"});
  expect_bad_file("header_absurd", u64le(uint64_t(1) << 40) + "{}", {"exceeds the 100 MB limit"});
  expect_bad_file("bad_json", st_file("{\"w\": [1, 2"), {"bad header JSON"});
  expect_bad_file("not_object", st_file("[1, 2, 3]"), {"not an object"});
  expect_bad_file("entry_not_object", st_file(R"({"w": 5})"), {"'w'", "not an object"});
  expect_bad_file("no_dtype", st_file(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", data8),
                  {"'w'", "missing 'dtype'"});
  expect_bad_file("no_shape", st_file(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", data8),
                  {"'w'", "missing 'shape'"});
  expect_bad_file("no_offsets", st_file(R"({"w":{"dtype":"F32","shape":[2]}})", data8),
                  {"'w'", "missing 'data_offsets'"});
  expect_bad_file("bad_dtype", st_file(R"({"w":{"dtype":"F8_E5M2","shape":[8],"data_offsets":[0,8]}})", data8),
                  {"'w'", "unsupported dtype 'F8_E5M2'"});
  expect_bad_file("dtype_not_string", st_file(R"({"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", data8),
                  {"'w'", "dtype"});
  expect_bad_file("neg_shape", st_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8),
                  {"'w'", "negative", "-2"});
  expect_bad_file("float_shape", st_file(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", data8),
                  {"'w'", "non-integer", "2.5"});
  expect_bad_file("shape_not_array", st_file(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", data8),
                  {"'w'", "shape"});
  expect_bad_file("huge_shape",
                  st_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data8),
                  {"'w'", "overflows"});
  expect_bad_file("offsets_three", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", data8),
                  {"'w'", "data_offsets must be 2 non-negative integers"});
  expect_bad_file("offsets_negative", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", data8),
                  {"'w'", "data_offsets"});
  expect_bad_file("offsets_float", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}})", data8),
                  {"'w'", "data_offsets"});
  expect_bad_file("offsets_decreasing", st_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data8),
                  {"'w'", "decreasing"});
  expect_bad_file("offset_past_end", st_file("{" + ok_entry + "}", "1234"),
                  {"'w'", "data_offsets [0, 8] run past the end of the data section (4 bytes"});
  expect_bad_file("size_mismatch", st_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8),
                  {"'w'", "8 bytes", "needs 12"});
  expect_bad_file("overlap",
                  st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F16","shape":[2],"data_offsets":[6,10]}})",
                          std::string(10, '\0')),
                  {"'a' [0, 8)", "'b' [6, 10)", "overlap"});
  expect_bad_file("duplicate",
                  st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                          data8),
                  {"'a'", "twice"});
  expect_bad_file("metadata_not_object", st_file(R"({"__metadata__":[1],)" + ok_entry + "}", data8),
                  {"__metadata__", "object"});
  expect_bad_file("metadata_not_string", st_file(R"({"__metadata__":{"step":3},)" + ok_entry + "}", data8),
                  {"__metadata__", "'step'", "string"});
  expect_bad_file("control_in_name", st_file(R"({"a\nb":{"dtype":"XX","shape":[],"data_offsets":[0,0]}})"),
                  {"'a\\x0ab'"});

  // Missing files and directories.
  expect_error([] { SafeTensorsReader r("/nonexistent/x.safetensors"); }, {"/nonexistent/x.safetensors"});
  expect_error([] { SafeTensorsReader r(::testing::TempDir()); }, {"not a regular file"});

  // Valid edge cases: empty header object, padding spaces, gaps between tensors.
  std::string p = tmp_path("edge.safetensors");
  write_bytes(p, st_file("{}      "));
  EXPECT_TRUE(SafeTensorsReader(p).names().empty());
  write_bytes(p, st_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}})", "xyzw"));
  EXPECT_EQ(SafeTensorsReader(p).read_i64("a"), std::vector<int64_t>{'w'});
  fs::remove(p);
}

// ---- writer failures and atomicity -------------------------------------------------------

TEST(SafeTensors, WriterErrors) {
  float x[4] = {1, 2, 3, 4};
  SafeTensorsWriter w;
  w.add("a", x, {4});
  expect_error([&] { w.add("a", x, {4}); }, {"duplicate tensor name 'a'"});
  expect_error([&] { w.add("__metadata__", x, {4}); }, {"invalid tensor name"});
  expect_error([&] { w.add("b", x, {4}, DType::I32); }, {"'b'", "I32"});
  expect_error([&] { w.add("c", x, {-1, 4}); }, {"'c'", "negative"});
  double dx[1] = {1};
  expect_error([&] { w.add_f64("d", dx, {1}, DType::BF16); }, {"'d'", "BF16"});
  EXPECT_EQ(w.size(), 1u);

  // Unwritable destination: Error names the path and no temp file is left behind.
  const std::string dir = tmp_path("wdir");
  fs::create_directories(dir);
  const std::string missing = dir + "/no/such/dir/out.safetensors";
  expect_error([&] { w.write(missing); }, {missing});

  // rename over a directory fails after the data was written: temp file must be cleaned up.
  const std::string target = dir + "/is_a_dir";
  fs::create_directories(target);
  expect_error([&] { w.write(target); }, {target});
  int n = 0;
  for (auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().find(".tmp.") != std::string::npos;
  EXPECT_EQ(n, 0);

  // Overwrite replaces the old file completely.
  const std::string f = dir + "/out.safetensors";
  write_bytes(f, std::string(1000, 'x'));
  w.write(f);
  SafeTensorsReader r(f);
  EXPECT_EQ(r.read_f32("a")[3], 4.0f);
  fs::remove_all(dir);
}

TEST(SafeTensors, WriteFileAtomic) {
  const std::string f = tmp_path("atomic.json");
  write_file_atomic(f, "{\"a\": 1}\n");
  EXPECT_EQ(read_bytes(f), "{\"a\": 1}\n");
  write_file_atomic(f, "");
  EXPECT_EQ(read_bytes(f), "");
  fs::remove(f);
  expect_error([] { write_file_atomic("/nonexistent/dir/c.json", "x"); }, {"/nonexistent/dir/c.json"});
}

// ---- config.json ---------------------------------------------------------------------------

namespace {

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  const MambaConfig &x = a.mamba, &y = b.mamba;
  EXPECT_EQ(x.d_model, y.d_model);
  EXPECT_EQ(x.n_layer, y.n_layer);
  EXPECT_EQ(x.vocab_size, y.vocab_size);
  EXPECT_EQ(x.pad_vocab_size_multiple, y.pad_vocab_size_multiple);
  EXPECT_EQ(x.d_state, y.d_state);
  EXPECT_EQ(x.d_conv, y.d_conv);
  EXPECT_EQ(x.expand, y.expand);
  EXPECT_EQ(x.dt_rank, y.dt_rank);
  EXPECT_EQ(x.norm, y.norm);
  EXPECT_EQ(x.norm_eps, y.norm_eps);
  EXPECT_EQ(x.residual_in_fp32, y.residual_in_fp32);
  EXPECT_EQ(x.use_bias, y.use_bias);
  EXPECT_EQ(x.use_conv_bias, y.use_conv_bias);
  EXPECT_EQ(x.tie_embeddings, y.tie_embeddings);
  EXPECT_EQ(x.dt_min, y.dt_min);
  EXPECT_EQ(x.dt_max, y.dt_max);
  EXPECT_EQ(x.dt_init_floor, y.dt_init_floor);
  EXPECT_EQ(x.dt_scale, y.dt_scale);
  EXPECT_EQ(x.dt_init_random, y.dt_init_random);
  EXPECT_EQ(x.initializer_range, y.initializer_range);
  EXPECT_EQ(x.rescale_prenorm_residual, y.rescale_prenorm_residual);
  EXPECT_EQ(a.head, b.head);
  EXPECT_EQ(a.num_labels, b.num_labels);
  EXPECT_EQ(a.head_dropout, b.head_dropout);
  EXPECT_EQ(a.pad_token_id, b.pad_token_id);
}

ModelConfig config_from_text(const std::string& name, const std::string& text) {
  std::string p = tmp_path(name + ".json");
  write_bytes(p, text);
  ModelConfig c = read_model_config(p);
  fs::remove(p);
  return c;
}

// Reads `text` (written to a file named after `name`); must fail naming the file and phrases.
void expect_bad_config(const std::string& name, const std::string& text, std::initializer_list<std::string> phrases) {
  SCOPED_TRACE(name);
  std::string p = tmp_path(name + ".json");
  write_bytes(p, text);
  expect_error([&] { read_model_config(p); }, {p});
  expect_error([&] { read_model_config(p); }, phrases);
  fs::remove(p);
}

const char* kHfBase = R"({"model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 40)";

}  // namespace

TEST(Config, HfTiny) {
  ModelConfig c = read_model_config(kData + "/hf-tiny/config.json");
  const MambaConfig& m = c.mamba;
  EXPECT_EQ(m.d_model, 48);
  EXPECT_EQ(m.n_layer, 2);
  EXPECT_EQ(m.d_state, 16);
  EXPECT_EQ(m.d_conv, 4);
  EXPECT_EQ(m.expand, 2);
  EXPECT_EQ(m.dt_rank, 3);
  EXPECT_EQ(m.dt_rank_value(), 3);
  EXPECT_EQ(m.vocab_size, 37);
  EXPECT_EQ(m.pad_vocab_size_multiple, 1);
  EXPECT_EQ(m.vocab_padded(), 37);
  EXPECT_TRUE(m.tie_embeddings);
  EXPECT_EQ(m.norm, NormKind::RMS);
  EXPECT_EQ(m.norm_eps, 1e-5);
  EXPECT_FALSE(m.use_bias);
  EXPECT_TRUE(m.use_conv_bias);
  EXPECT_TRUE(m.residual_in_fp32);
  EXPECT_EQ(m.initializer_range, 0.1);
  EXPECT_FALSE(m.rescale_prenorm_residual);
  EXPECT_TRUE(m.dt_init_random);
  EXPECT_EQ(m.dt_min, 1e-3);
  EXPECT_EQ(m.dt_max, 0.1);
  EXPECT_EQ(m.dt_init_floor, 1e-4);
  EXPECT_EQ(c.head, HeadKind::LM);
  EXPECT_EQ(c.pad_token_id, 0);
}

TEST(Config, OriginalStateSpaces) {
  // As in state-spaces/mamba-130m's config.json.
  ModelConfig c = config_from_text("orig", R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277,
      "ssm_cfg": {}, "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true,
      "pad_vocab_size_multiple": 8})");
  EXPECT_EQ(c.mamba.d_model, 768);
  EXPECT_EQ(c.mamba.n_layer, 24);
  EXPECT_EQ(c.mamba.vocab_size, 50277);
  EXPECT_EQ(c.mamba.vocab_padded(), 50280);
  EXPECT_EQ(c.mamba.dt_rank_value(), 48);
  EXPECT_TRUE(c.mamba.tie_embeddings);
  EXPECT_EQ(count_parameters(c), 129135360);  // the published 130m count

  ModelConfig d = config_from_text("orig2", R"({"d_model": 256, "n_layer": 4, "vocab_size": 6,
      "ssm_cfg": {"d_state": 8, "d_conv": 3, "expand": 4, "dt_rank": 10, "dt_min": 0.002, "dt_max": 0.05,
                  "dt_init": "constant", "dt_scale": 2.0, "dt_init_floor": 1e-3, "conv_bias": false,
                  "bias": true, "layer": "Mamba1"},
      "rms_norm": false, "residual_in_fp32": false, "pad_vocab_size_multiple": 1,
      "tie_embeddings": false, "d_intermediate": 0, "attn_layer_idx": [],
      "mambaseq_head": "token_classification", "num_labels": 5, "head_dropout": 0.0, "pad_token_id": 5})");
  const MambaConfig& m = d.mamba;
  EXPECT_EQ(m.d_state, 8);
  EXPECT_EQ(m.d_conv, 3);
  EXPECT_EQ(m.expand, 4);
  EXPECT_EQ(m.dt_rank, 10);
  EXPECT_EQ(m.dt_min, 0.002);
  EXPECT_EQ(m.dt_max, 0.05);
  EXPECT_FALSE(m.dt_init_random);
  EXPECT_EQ(m.dt_scale, 2.0);
  EXPECT_EQ(m.dt_init_floor, 1e-3);
  EXPECT_FALSE(m.use_conv_bias);
  EXPECT_TRUE(m.use_bias);
  EXPECT_EQ(m.norm, NormKind::Layer);
  EXPECT_FALSE(m.residual_in_fp32);
  EXPECT_FALSE(m.tie_embeddings);
  EXPECT_EQ(d.head, HeadKind::TokenClassification);
  EXPECT_EQ(d.num_labels, 5);
  EXPECT_EQ(d.head_dropout, 0.0);
  EXPECT_EQ(d.pad_token_id, 5);
}

TEST(Config, HfDefaultsAndOurKeys) {
  ModelConfig c = config_from_text("hfmin", std::string(kHfBase) + "}");
  EXPECT_EQ(c.mamba.d_state, 16);
  EXPECT_EQ(c.mamba.dt_rank, 0);  // auto
  EXPECT_EQ(c.mamba.dt_rank_value(), 4);
  EXPECT_TRUE(c.mamba.tie_embeddings);
  EXPECT_EQ(c.mamba.pad_vocab_size_multiple, 1);
  ModelConfig d = config_from_text("hfours", std::string(kHfBase) +
      R"(, "time_step_rank": "auto", "norm": "layer", "mambaseq_head": "regression", "num_labels": 3,
         "pad_token_id": null, "pad_vocab_size_multiple": 8, "mambaseq_vocab_size": 35, "expand": 2.0})");
  EXPECT_EQ(d.mamba.norm, NormKind::Layer);
  EXPECT_EQ(d.head, HeadKind::Regression);
  EXPECT_EQ(d.num_labels, 3);
  EXPECT_EQ(d.pad_token_id, 0);
  EXPECT_EQ(d.mamba.vocab_size, 35);
  EXPECT_EQ(d.mamba.vocab_padded(), 40);
}

TEST(Config, WriteReadRoundTrip) {
  std::vector<ModelConfig> cfgs;
  cfgs.push_back(read_model_config(kData + "/hf-tiny/config.json"));
  cfgs.push_back(seed001_classifier(3));
  ModelConfig odd;
  odd.mamba = variant_config("370m");  // vocab 50277 padded to 50280: unpadded size must survive
  odd.mamba.d_state = 7;
  odd.mamba.d_conv = 5;
  odd.mamba.expand = 3;
  odd.mamba.dt_rank = 11;
  odd.mamba.norm_eps = 1.2345678901234567e-6;
  odd.mamba.residual_in_fp32 = false;
  odd.mamba.use_bias = true;
  odd.mamba.use_conv_bias = false;
  odd.mamba.tie_embeddings = false;
  odd.mamba.dt_min = 0.1 / 3;
  odd.mamba.dt_max = 0.2;
  odd.mamba.dt_init_floor = 3e-5;
  odd.mamba.dt_scale = 0.7;
  odd.mamba.dt_init_random = false;
  odd.mamba.initializer_range = 0.015;
  odd.mamba.rescale_prenorm_residual = false;
  odd.head = HeadKind::Regression;
  odd.num_labels = 1;
  odd.head_dropout = 0.25;
  odd.pad_token_id = 3;
  cfgs.push_back(odd);
  ModelConfig zero_pad;
  zero_pad.mamba.pad_vocab_size_multiple = 0;
  zero_pad.mamba.vocab_size = 101;
  cfgs.push_back(zero_pad);

  const std::string p = tmp_path("config.json");
  for (auto& c : cfgs) {
    write_model_config(p, c);
    ModelConfig back = read_model_config(p);
    expect_same_config(c, back);
    EXPECT_EQ(config_to_json(back), read_bytes(p));  // and the text is a fixed point
  }
  // HF keys for an LM config.
  write_model_config(p, cfgs[0]);
  std::string text = read_bytes(p);
  for (const char* key : {"\"architectures\"", "\"MambaForCausalLM\"", "\"model_type\": \"mamba\"",
                          "\"intermediate_size\": 96", "\"vocab_size\": 37", "\"time_step_rank\": 3",
                          "\"tie_word_embeddings\": true"})
    EXPECT_NE(text.find(key), std::string::npos) << key;
  write_model_config(p, odd);
  text = read_bytes(p);
  EXPECT_NE(text.find("\"vocab_size\": 50280"), std::string::npos);
  EXPECT_NE(text.find("\"mambaseq_vocab_size\": 50277"), std::string::npos);
  EXPECT_EQ(text.find("architectures"), std::string::npos);  // not an LM: HF cannot load it as one

  ModelConfig bad;
  bad.mamba.d_model = -1;
  expect_error([&] { write_model_config(p, bad); }, {p, "d_model"});
  fs::remove(p);
}

TEST(Config, BadValues) {
  const std::string b = kHfBase;
  expect_bad_config("neg_hidden", R"({"model_type": "mamba", "hidden_size": -1, "num_hidden_layers": 2,
                                      "vocab_size": 40})", {"'hidden_size'", "-1"});
  expect_bad_config("missing_hidden", R"({"model_type": "mamba", "num_hidden_layers": 2, "vocab_size": 40})",
                    {"'hidden_size'", "missing"});
  expect_bad_config("missing_vocab", R"({"hidden_size": 8, "num_hidden_layers": 2})", {"'vocab_size'", "missing"});
  expect_bad_config("rank_x", b + R"(, "time_step_rank": "x"})", {"'time_step_rank'", "\"x\""});
  expect_bad_config("rank_zero", b + R"(, "time_step_rank": 0})", {"'time_step_rank'"});
  expect_bad_config("hidden_string", R"({"hidden_size": "64", "num_hidden_layers": 2, "vocab_size": 40})",
                    {"'hidden_size'", "integer"});
  expect_bad_config("expand_frac", b + R"(, "expand": 2.5})", {"'expand'", "2.5"});
  expect_bad_config("eps_string", b + R"(, "layer_norm_epsilon": "small"})", {"'layer_norm_epsilon'", "number"});
  expect_bad_config("eps_neg", b + R"(, "layer_norm_epsilon": -1e-5})", {"'layer_norm_epsilon'", "positive"});
  expect_bad_config("bias_int", b + R"(, "use_bias": 1})", {"'use_bias'", "true or false"});
  expect_bad_config("dt_order", b + R"(, "time_step_min": 0.5, "time_step_max": 0.1})", {"'time_step_max'"});
  expect_bad_config("init_scheme", b + R"(, "time_step_init_scheme": "xavier"})",
                    {"'time_step_init_scheme'", "xavier"});
  expect_bad_config("act", b + R"(, "hidden_act": "gelu"})", {"'hidden_act'", "gelu"});
  expect_bad_config("inter", b + R"(, "intermediate_size": 100})", {"'intermediate_size'", "128"});
  expect_bad_config("model_type", R"({"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 2,
                                      "vocab_size": 40})", {"'model_type'", "mamba2"});
  expect_bad_config("head", b + R"(, "mambaseq_head": "pooler"})", {"'mambaseq_head'", "pooler"});
  expect_bad_config("norm", b + R"(, "norm": "batch"})", {"'norm'", "batch"});
  expect_bad_config("dropout", b + R"(, "head_dropout": 1.5})", {"'head_dropout'", "1.5"});
  expect_bad_config("labels", b + R"(, "num_labels": 0})", {"'num_labels'"});
  expect_bad_config("pad_id", b + R"(, "pad_token_id": 40})", {"'pad_token_id'", "40"});
  expect_bad_config("pad_multiple", b + R"(, "pad_vocab_size_multiple": 16})",
                    {"'pad_vocab_size_multiple'", "40"});
  expect_bad_config("mvocab", b + R"(, "pad_vocab_size_multiple": 8, "mambaseq_vocab_size": 20})",
                    {"'mambaseq_vocab_size'"});
  expect_bad_config("huge", R"({"hidden_size": 10000000, "num_hidden_layers": 2, "vocab_size": 40})",
                    {"implausibly large"});
  expect_bad_config("ssm_d_state", R"({"d_model": 64, "n_layer": 2, "vocab_size": 40, "ssm_cfg": {"d_state": 0}})",
                    {"'ssm_cfg.d_state'"});
  expect_bad_config("ssm_not_obj", R"({"d_model": 64, "n_layer": 2, "vocab_size": 40, "ssm_cfg": 3})",
                    {"'ssm_cfg'"});
  expect_bad_config("mamba2", R"({"d_model": 64, "n_layer": 2, "vocab_size": 40, "ssm_cfg": {"layer": "Mamba2"}})",
                    {"'ssm_cfg.layer'", "Mamba2"});
  expect_bad_config("attn", R"({"d_model": 64, "n_layer": 2, "vocab_size": 40, "attn_layer_idx": [1]})",
                    {"'attn_layer_idx'"});
  expect_bad_config("orig_missing", R"({"d_model": 64, "vocab_size": 40})", {"'n_layer'", "missing"});
  expect_bad_config("bad_json", "{\"hidden_size\": ", {"bad JSON"});
  expect_bad_config("not_object", "[1]", {"not a JSON object"});
  expect_error([] { read_model_config("/nonexistent/config.json"); }, {"/nonexistent/config.json"});
}
