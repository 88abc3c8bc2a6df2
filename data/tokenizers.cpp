#include "mambaseq/tokenizers.h"

#include <algorithm>
#include <cctype>

#include "mambaseq/error.h"

namespace mambaseq {

namespace {
constexpr int32_t kPadId = 0, kUnkId = 1, kFirstWord = 2;  // codon / k-mer ids
constexpr char kBases[4] = {'A', 'C', 'G', 'T'};

// Nucleotide ids: PAD 0, A 1, C 2, G 3, T 4, N 5 (base code + 1).
constexpr int32_t kNucRc[6] = {0, 4, 3, 2, 1, 5};

std::string printable(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string(1, c);
  return fmt::format("\\x{:02x}", u);
}

[[noreturn]] void bad_char(std::string_view seq, size_t i) {
  fail("character '{}' at position {} is not a nucleotide (A C G T U N or an IUPAC code)", printable(seq[i]), i + 1);
}
}  // namespace

void TokenizeStats::add(const TokenizeStats& o) {
  sequences += o.sequences;
  bases += o.bases;
  iupac_to_n += o.iupac_to_n;
  partial_codon_bases += o.partial_codon_bases;
}

int base_code(char c, int64_t* iupac) {
  switch (c) {
    case 'A': case 'a': return 0;
    case 'C': case 'c': return 1;
    case 'G': case 'g': return 2;
    case 'T': case 't': case 'U': case 'u': return 3;
    case 'N': case 'n': return 4;
    case 'R': case 'r': case 'Y': case 'y': case 'S': case 's': case 'W': case 'w':
    case 'K': case 'k': case 'M': case 'm': case 'B': case 'b': case 'D': case 'd':
    case 'H': case 'h': case 'V': case 'v':
      if (!iupac) return -1;
      ++*iupac;
      return 4;
    default: return -1;
  }
}

SeqTokenizer SeqTokenizer::codon(int frame) {
  MS_CHECK(frame >= 0 && frame <= 2, "codon tokenizer: reading frame must be 0, 1 or 2, got {}", frame);
  SeqTokenizer t;
  t.kind_ = SeqTokenizerKind::Codon;
  t.k_ = 3;
  t.stride_ = 3;
  t.frame_ = frame;
  return t;
}

SeqTokenizer SeqTokenizer::kmer(int k, int stride) {
  // 4^8 = 65536 words already makes a large embedding; beyond that nothing is learnt.
  MS_CHECK(k >= 1 && k <= 8, "k-mer tokenizer: k must be in 1..8, got {}", k);
  MS_CHECK(stride >= 1 && stride <= k, "k-mer tokenizer: stride must be in 1..k ({}), got {}", k, stride);
  SeqTokenizer t;
  t.kind_ = SeqTokenizerKind::Kmer;
  t.k_ = k;
  t.stride_ = stride;
  return t;
}

SeqTokenizer SeqTokenizer::from_name(const std::string& name, int k, int frame, int stride) {
  if (name == "nucleotide") return nucleotide();
  if (name == "codon") return codon(frame);
  if (name == "kmer") return kmer(k, stride);
  fail("unknown tokenizer '{}' (known: nucleotide, codon, kmer)", name);
}

std::string SeqTokenizer::name() const {
  switch (kind_) {
    case SeqTokenizerKind::Nucleotide: return "nucleotide";
    case SeqTokenizerKind::Codon: return fmt::format("codon(frame {})", frame_);
    case SeqTokenizerKind::Kmer: return fmt::format("kmer(k {}, stride {})", k_, stride_);
  }
  return "?";
}

int64_t SeqTokenizer::vocab_size() const {
  if (kind_ == SeqTokenizerKind::Nucleotide) return 6;
  return kFirstWord + (int64_t{1} << (2 * k_));
}

std::vector<int32_t> SeqTokenizer::encode(std::string_view seq, TokenizeStats* stats) const {
  int64_t iupac = 0;
  std::vector<int32_t> ids;
  if (kind_ == SeqTokenizerKind::Nucleotide) {
    ids.resize(seq.size());
    for (size_t i = 0; i < seq.size(); ++i) {
      const int c = base_code(seq[i], &iupac);
      if (c < 0) bad_char(seq, i);
      ids[i] = c + 1;
    }
  } else {
    // Codes first (validates every character, also those outside whole windows).
    std::vector<int8_t> code(seq.size());
    for (size_t i = 0; i < seq.size(); ++i) {
      const int c = base_code(seq[i], &iupac);
      if (c < 0) bad_char(seq, i);
      code[i] = static_cast<int8_t>(c);
    }
    const int64_t n = static_cast<int64_t>(seq.size()), start = kind_ == SeqTokenizerKind::Codon ? frame_ : 0;
    int64_t pos = start;
    for (; pos + k_ <= n; pos += stride_) {
      int32_t w = 0;
      bool unk = false;
      for (int j = 0; j < k_; ++j) {
        unk |= code[pos + j] == 4;
        w = w * 4 + (code[pos + j] & 3);
      }
      ids.push_back(unk ? kUnkId : kFirstWord + w);
    }
    // Bases no window covers (the frame offset is a choice, not a loss).
    const int64_t covered_to = ids.empty() ? start : (pos - stride_) + k_;
    if (stats && n > covered_to) stats->partial_codon_bases += n - std::max(covered_to, start);
  }
  if (stats) {
    ++stats->sequences;
    stats->bases += static_cast<int64_t>(seq.size());
    stats->iupac_to_n += iupac;
  }
  return ids;
}

std::string SeqTokenizer::token(int32_t id) const {
  if (id == kPadId) return "<pad>";
  if (kind_ == SeqTokenizerKind::Nucleotide) {
    MS_CHECK(id >= 1 && id <= 5, "nucleotide tokenizer: id {} is outside 0..5", id);
    return std::string(1, "ACGTN"[id - 1]);
  }
  if (id == kUnkId) return "<unk>";
  MS_CHECK(id >= kFirstWord && id < vocab_size(), "{} tokenizer: id {} is outside 0..{}", name(), id,
           vocab_size() - 1);
  std::string s(k_, 'A');
  int32_t w = id - kFirstWord;
  for (int j = k_ - 1; j >= 0; --j, w >>= 2) s[j] = kBases[w & 3];
  return s;
}

std::string SeqTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string s;
  bool first = true;
  for (int32_t id : ids) {
    if (id == kPadId) continue;
    std::string t = (kind_ != SeqTokenizerKind::Nucleotide && id == kUnkId) ? std::string(k_, 'N') : token(id);
    // Overlapping k-mers: after the first, each token adds its last `stride` bases.
    if (kind_ == SeqTokenizerKind::Kmer && !first) t = t.substr(k_ - stride_);
    s += t;
    first = false;
  }
  return s;
}

bool SeqTokenizer::has_reverse_complement() const {
  return kind_ == SeqTokenizerKind::Nucleotide || (kind_ == SeqTokenizerKind::Kmer && stride_ == 1);
}

void SeqTokenizer::reverse_complement_inplace(int32_t* ids, int64_t n) const {
  MS_CHECK(has_reverse_complement(),
           "{} tokens have no reverse complement (a codon's reverse complement is in another reading frame); "
           "turn reverse-complement augmentation off",
           name());
  while (n > 0 && ids[n - 1] == kPadId) --n;  // padding stays at the end
  std::reverse(ids, ids + n);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = ids[i];
    if (kind_ == SeqTokenizerKind::Nucleotide) {
      MS_CHECK(id >= 0 && id <= 5, "reverse complement: nucleotide id {} is outside 0..5", id);
      ids[i] = kNucRc[id];
    } else if (id != kUnkId) {
      MS_CHECK(id >= kFirstWord && id < vocab_size(), "reverse complement: {} id {} is out of range", name(), id);
      // Reverse the k base codes and complement each (code c ↔ 3 − c).
      int32_t w = id - kFirstWord, r = 0;
      for (int j = 0; j < k_; ++j, w >>= 2) r = r * 4 + (3 - (w & 3));
      ids[i] = kFirstWord + r;
    }
  }
}

std::vector<int32_t> SeqTokenizer::reverse_complement(const std::vector<int32_t>& ids) const {
  std::vector<int32_t> r = ids;
  reverse_complement_inplace(r.data(), static_cast<int64_t>(r.size()));
  return r;
}

std::string reverse_complement(std::string_view seq) {
  std::string r(seq.rbegin(), seq.rend());
  for (size_t i = 0; i < r.size(); ++i) {
    const char c = r[i];
    const bool lower = c >= 'a' && c <= 'z';
    char u = static_cast<char>(std::toupper(static_cast<unsigned char>(c))), o;
    switch (u) {
      case 'A': o = 'T'; break;
      case 'T': case 'U': o = 'A'; break;
      case 'C': o = 'G'; break;
      case 'G': o = 'C'; break;
      case 'N': o = 'N'; break;
      case 'R': o = 'Y'; break;
      case 'Y': o = 'R'; break;
      case 'K': o = 'M'; break;
      case 'M': o = 'K'; break;
      case 'B': o = 'V'; break;
      case 'V': o = 'B'; break;
      case 'D': o = 'H'; break;
      case 'H': o = 'D'; break;
      case 'S': o = 'S'; break;
      case 'W': o = 'W'; break;
      default: bad_char(seq, seq.size() - 1 - i);
    }
    r[i] = lower ? static_cast<char>(std::tolower(static_cast<unsigned char>(o))) : o;
  }
  return r;
}

}  // namespace mambaseq
