// Tokenizers for inference: byte-level BPE from a Hugging Face tokenizer.json (GPT-2 /
// GPT-NeoX, the tokenizer of the published Mamba language models) and the nucleotide
// alphabet of the DNA/RNA models.
//
// Byte-level BPE, as tokenizers' ByteLevel + BPE:
//  1. added tokens (special or not) are cut out first, leftmost-longest;
//  2. the rest is split by the GPT-2 pattern
//       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//     (implemented by hand; Unicode letter/number tables in data/bpe_unicode.inc);
//  3. each piece's UTF-8 bytes map to printable code points (GPT-2's bytes_to_unicode),
//     and merges apply in rank order; the merged symbols are vocabulary ids.
// Decoding maps the code points back to bytes, so any id sequence decodes to the exact
// bytes it encodes; a token may end inside a UTF-8 character, so stream bytes, not text.
// Limits: the normalizer may be absent or NFC; NFC is not applied (the text is taken to be
// NFC already, which plain ASCII and most text is). BPE dropout, byte_fallback,
// continuing_subword_prefix and end_of_word_suffix are refused with an error.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "mambaseq/config.h"
#include "mambaseq/tokenizers.h"

namespace mambaseq {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  // The bytes one token stands for; special tokens give "" unless with_special.
  virtual std::string token_bytes(int32_t id, bool with_special = false) const = 0;
  std::string decode(const std::vector<int32_t>& ids, bool with_special = false) const;
  virtual int64_t vocab_size() const = 0;  // ids are in [0, vocab_size)
  virtual int32_t eos_id() const { return -1; }  // −1: none
  virtual std::string name() const = 0;
  // id of a token given by its text (vocabulary string or added token), −1 if none.
  virtual int32_t token_id(const std::string& token) const = 0;
};

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false, lstrip = false, rstrip = false, single_word = false;
};

class BpeTokenizer final : public Tokenizer {
 public:
  static BpeTokenizer from_file(const std::string& path);
  // origin names the source in errors (a path).
  static BpeTokenizer from_json(const std::string& json_text, const std::string& origin = "tokenizer.json");
  // Learns byte-level BPE merges from a corpus until the vocabulary (256 bytes + added
  // special tokens + merges) has vocab_size entries or no pair occurs twice. Deterministic.
  static BpeTokenizer train(const std::vector<std::string>& corpus, int64_t vocab_size,
                            const std::vector<std::string>& special_tokens = {"<|endoftext|>"});
  // The Hugging Face tokenizer.json text (loads in tokenizers / transformers).
  std::string to_json() const;

  std::vector<int32_t> encode(const std::string& text) const override;
  std::string token_bytes(int32_t id, bool with_special = false) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(id_to_token_.size()); }
  int32_t eos_id() const override { return eos_; }
  std::string name() const override { return "byte-level BPE (" + origin_ + ")"; }
  int32_t token_id(const std::string& token) const override;
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  int64_t num_merges() const { return static_cast<int64_t>(merges_.size()); }

 private:
  std::string origin_;
  std::unordered_map<std::string, int32_t> vocab_;  // byte-mapped token string -> id
  std::vector<std::string> id_to_token_;            // id -> byte-mapped string (added: content)
  std::vector<std::pair<std::string, std::string>> merges_;
  std::unordered_map<std::string, int32_t> rank_;   // "a b" -> merge rank
  std::vector<AddedToken> added_;
  std::vector<int8_t> is_added_;                    // per id: 0, 1 (normal) or 2 (special)
  bool add_prefix_space_ = false, ignore_merges_ = false;
  int32_t unk_ = -1, eos_ = -1;
  std::string normalizer_ = "null";
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;  // word -> ids
  void finish_setup();
  void encode_piece(const std::string& bytes, std::vector<int32_t>& out) const;
};

// The GPT-2 pre-tokenizer split of UTF-8 text (byte pieces, concatenating to the input).
std::vector<std::string> gpt2_pretokenize(const std::string& text);

// The DNA/RNA tokenizers of the training pipeline (tokenizers.h) behind this interface:
// nucleotide (PAD 0, A 1, C 2, G 3, T 4, N 5; U reads as T, IUPAC codes as N), codon,
// k-mer. White space in the text is skipped. A k-mer token's bytes are its last
// `stride` bases (so a stride-1 stream decodes to all bases but the first k−1).
class SequenceTokenizer final : public Tokenizer {
 public:
  explicit SequenceTokenizer(SeqTokenizer t = SeqTokenizer::nucleotide()) : t_(t) {}
  std::vector<int32_t> encode(const std::string& text) const override;
  std::string token_bytes(int32_t id, bool with_special = false) const override;
  int64_t vocab_size() const override { return t_.vocab_size(); }
  std::string name() const override { return t_.name(); }
  int32_t token_id(const std::string& token) const override;
  const SeqTokenizer& seq_tokenizer() const { return t_; }

 private:
  SeqTokenizer t_;
};

// spec: "" = DIR/tokenizer.json if present, else the nucleotide alphabet when the model's
// vocabulary is that small (<= 16 rows); "nucleotide", "codon", "kmerK" (e.g. kmer3);
// or a path to a tokenizer.json.
// Errors when the tokenizer has ids the model's embedding does not.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec, const std::string& model_dir,
                                          const ModelConfig& cfg);

}  // namespace mambaseq
