// libFuzzer target: gzip decompression (single and concatenated members, truncation,
// corruption, trailing bytes). Inputs without the gzip magic get it prepended, so the
// fuzzer spends its time inside the decoder. Also checks a round trip: the input
// compressed with zlib here must decompress to itself.
// Build and run (from the repository root; corpus: fuzz/corpus/gzip/):
//   clang++-14 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1 -std=c++20 \
//     -I include fuzz/fuzz_gzip.cpp data/readers.cpp data/tokenizers.cpp -lz -lfmt -o fuzz_gzip
//   ./fuzz_gzip -max_total_time=600 -timeout=10 NEW_CORPUS_DIR fuzz/corpus/gzip
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "mambaseq/readers.h"

using namespace mambaseq;

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}

std::string gzip_bytes(std::string_view in) {
  z_stream z;
  std::memset(&z, 0, sizeof z);
  check(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, in.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  check(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  if (size < 2 || data[0] != 0x1f || data[1] != 0x8b) bytes.insert(0, "\x1f\x8b", 2);
  try {
    auto src = memory_input(bytes, "fuzz.gz");
    std::vector<char> buf(4096);
    size_t total = 0;
    // Bounded: a small input can expand ~1000×; stop long before memory matters.
    while (size_t n = src->read(buf.data(), buf.size())) {
      total += n;
      if (total > (size_t{64} << 20)) break;
    }
  } catch (const Error&) {
  }
  try {
    LineReader lines(memory_input(bytes, "fuzz.gz"), "fuzz.gz");
    std::string line;
    for (int i = 0; i < 1 << 16 && lines.next(line); ++i) {
    }
  } catch (const Error&) {
  }
  // Round trip of the raw input, also as two concatenated members.
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  const std::string gz = gzip_bytes(raw);
  check(read_all(*memory_input(gz, "rt.gz")) == raw);
  const std::string two = gz + gzip_bytes(raw.substr(0, size / 2));
  check(read_all(*memory_input(two, "rt2.gz")) == std::string(raw) + std::string(raw.substr(0, size / 2)));
  return 0;
}
