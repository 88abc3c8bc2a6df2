// libFuzzer target: the CSV/TSV reader (RFC 4180 quoting, multi-line quoted fields,
// BOM, blank lines). The first byte picks the delimiter (even: comma, odd: tab).
// Build and run (from the repository root; corpus: fuzz/corpus/csv/):
//   clang++-14 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1 -std=c++20 \
//     -I include fuzz/fuzz_csv.cpp data/readers.cpp data/tokenizers.cpp -lz -lfmt -o fuzz_csv
//   ./fuzz_csv -max_total_time=600 -timeout=10 NEW_CORPUS_DIR fuzz/corpus/csv
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mambaseq/readers.h"

using namespace mambaseq;

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const char delim = data[0] % 2 ? '\t' : ',';
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    CsvReader r(memory_input(bytes, "fuzz.csv"), "fuzz.csv", delim);
    check(!r.header().empty());
    check(r.column(r.header()[0]) == 0 || r.header()[0].empty());
    (void)r.has_column("sequence");
    CsvRow row;
    int64_t last_line = 0;
    for (int guard = 0; guard < 1 << 20; ++guard) {
      try {
        if (!r.next(row)) break;
      } catch (const BadRecord&) {
        continue;
      }
      check(row.fields.size() == r.header().size());
      check(row.line > last_line);
      last_line = row.line;
    }
  } catch (const Error&) {
  }
  return 0;
}
