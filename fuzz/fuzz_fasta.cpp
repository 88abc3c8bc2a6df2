// libFuzzer target: the streaming FASTA reader (and the sequence tokenizers on what it
// yields). Any input may raise mambaseq::Error; crashes, hangs, sanitizer reports and
// broken invariants (abort) are bugs.
// Build and run (from the repository root; corpus: fuzz/corpus/fasta/):
//   clang++-14 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1 -std=c++20 \
//     -I include fuzz/fuzz_fasta.cpp data/readers.cpp data/tokenizers.cpp -lz -lfmt -o fuzz_fasta
//   ./fuzz_fasta -max_total_time=600 -timeout=10 NEW_CORPUS_DIR fuzz/corpus/fasta
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mambaseq/readers.h"
#include "mambaseq/tokenizers.h"

using namespace mambaseq;

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    FastaReader r(memory_input(bytes, "fuzz.fa"), "fuzz.fa");
    FastaRecord rec;
    const SeqTokenizer nuc, k3 = SeqTokenizer::kmer(3), codon = SeqTokenizer::codon(1);
    int64_t last_line = 0;
    for (int guard = 0; guard < 1 << 20; ++guard) {
      try {
        if (!r.next(rec)) break;
      } catch (const BadRecord&) {
        continue;  // the reader must have moved on: the guard bounds a reader that did not
      }
      check(!rec.id.empty() && !rec.seq.empty());
      check(rec.line > last_line);
      last_line = rec.line;
      for (char c : rec.seq) check(c != ' ' && c != '\t' && c != '\n' && c != '\r');
      check(rec.line_of(0) > rec.line && rec.line_of(rec.seq.size() - 1) >= rec.line_of(0));
      (void)rec.tag("label");
      try {
        const auto ids = nuc.encode(rec.seq);
        check(ids.size() == rec.seq.size());
        check(nuc.reverse_complement(nuc.reverse_complement(ids)) == ids);
        // k-mer ids of the reverse complement = reverse complement of the k-mer ids.
        const std::string rc = reverse_complement(rec.seq);
        check(k3.reverse_complement(k3.encode(rec.seq)) == k3.encode(rc));
        const auto c = codon.encode(rec.seq);
        check(c.size() == (rec.seq.size() >= 4 ? (rec.seq.size() - 1) / 3 : 0));
      } catch (const Error&) {
        // not a nucleotide string: the loader reports it with file and line
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
