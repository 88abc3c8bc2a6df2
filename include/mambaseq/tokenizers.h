// Sequence tokenizers for the DNA/RNA data pipeline (training sets): nucleotide strings
// → token ids for the embedding, and back. (Text BPE for inference lives in bpe.h.)
//
//   nucleotide  PAD 0, A 1, C 2, G 3, T 4, N 5 (the seed-001 vocabulary, 6 ids).
//               Lower case is accepted, U is read as T (RNA). The other IUPAC
//               ambiguity codes (R Y S W K M B D H V) become N and are counted, so a
//               run can log how many it saw. Anything else is an error.
//   codon       PAD 0, UNK 1 (a codon holding N or an ambiguity code), then the 64
//               codons AAA AAC … TTT as 2 … 65 (66 ids). Reading starts at `frame`
//               (0, 1 or 2) bases in; 1 or 2 bases left after the last whole codon
//               are not a codon and are counted (TokenizeStats::partial_codon_bases).
//   kmer        PAD 0, UNK 1 (a k-mer holding N), then the 4^k k-mers in
//               lexicographic order (2 + 4^k ids); windows every `stride` bases
//               (1: overlapping). Bases after the last whole window are counted.
//
// Reverse complement: on strings (IUPAC-aware) and on token ids (nucleotide and
// stride-1 k-mer tokens; codon tokens have no reverse complement in the same frame).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mambaseq {

enum class SeqTokenizerKind { Nucleotide, Codon, Kmer };

// What encode() changed without failing: a run's log reports these.
struct TokenizeStats {
  int64_t sequences = 0;
  int64_t bases = 0;
  int64_t iupac_to_n = 0;           // R Y S W K M B D H V read as N
  int64_t partial_codon_bases = 0;  // codon/k-mer: trailing bases that form no whole token
  void add(const TokenizeStats& o);
};

// Base code used by all tokenizers: A 0, C 1, G 2, T/U 3, N 4 (and ambiguity codes
// when `iupac` is given: they count there and read as 4); −1 for anything else.
int base_code(char c, int64_t* iupac = nullptr);

class SeqTokenizer {
 public:
  SeqTokenizer() = default;  // nucleotide
  static SeqTokenizer nucleotide() { return SeqTokenizer(); }
  static SeqTokenizer codon(int frame = 0);
  static SeqTokenizer kmer(int k, int stride = 1);
  // name: nucleotide | codon | kmer (k, frame and stride apply where they mean something).
  static SeqTokenizer from_name(const std::string& name, int k = 3, int frame = 0, int stride = 1);

  SeqTokenizerKind kind() const { return kind_; }
  std::string name() const;  // e.g. "nucleotide", "codon(frame 1)", "kmer(k 3, stride 1)"
  int64_t vocab_size() const;
  int k() const { return k_; }
  int frame() const { return frame_; }
  int stride() const { return stride_; }

  // Throws mambaseq::Error "character 'X' at position P is not a nucleotide ..." on a
  // character outside the alphabet (callers prefix the file and line). The result may
  // be empty (a sequence shorter than one codon or k-mer): callers decide.
  std::vector<int32_t> encode(std::string_view seq, TokenizeStats* stats = nullptr) const;
  // Decoded tokens concatenated (k-mers with stride 1: first k-mer then one base per
  // token, so decode(encode(s)) == s for ACGT strings). PAD decodes to nothing, UNK to N…
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string token(int32_t id) const;  // "<pad>", "<unk>", "A", "ATG", …

  bool has_reverse_complement() const;
  // Token ids of the reverse complement of the sequence these ids encode; PAD stays PAD
  // at the end. Error for tokenizers without one (codon, k-mer with stride > 1).
  std::vector<int32_t> reverse_complement(const std::vector<int32_t>& ids) const;
  void reverse_complement_inplace(int32_t* ids, int64_t n) const;

 private:
  SeqTokenizerKind kind_ = SeqTokenizerKind::Nucleotide;
  int k_ = 1, frame_ = 0, stride_ = 1;
};

// Reverse complement of a nucleotide string: A↔T, C↔G, U→A, N→N, the IUPAC codes to
// their complements (R↔Y, K↔M, B↔V, D↔H, S, W), case kept. Other characters: Error.
std::string reverse_complement(std::string_view seq);

}  // namespace mambaseq
