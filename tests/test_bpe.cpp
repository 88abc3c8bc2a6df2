// Byte-level BPE: the GPT-2 pre-tokenizer split, a tokenizer.json the project trains
// itself (tests/data/bpe/tokenizer.json, reproducible from corpus.txt) whose encodings
// equal Hugging Face tokenizers' (expected.json, made by scripts/hf_interop.py), exact
// byte round trips, added/special tokens, both merges formats, and clear errors.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mambaseq/bpe.h"
#include "mambaseq/error.h"

using namespace mambaseq;

namespace {
const std::string kDir = std::string(MAMBASEQ_TEST_DATA) + "/bpe";

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

BpeTokenizer trained() {
  return BpeTokenizer::train({slurp(kDir + "/corpus.txt")}, 380, {"<|endoftext|>", "<|padding|>"});
}
}  // namespace

TEST(Bpe, Gpt2PreTokenizerSplit) {
  using V = std::vector<std::string>;
  EXPECT_EQ(gpt2_pretokenize("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(gpt2_pretokenize("I'm don't they'll 'S"), (V{"I", "'m", " don", "'t", " they", "'ll", " '", "S"}));
  EXPECT_EQ(gpt2_pretokenize("  hi"), (V{" ", " hi"}));
  EXPECT_EQ(gpt2_pretokenize("a\n\nb"), (V{"a", "\n", "\n", "b"}));
  EXPECT_EQ(gpt2_pretokenize("a  \nb"), (V{"a", "  ", "\n", "b"}));
  EXPECT_EQ(gpt2_pretokenize("end   "), (V{"end", "   "}));
  EXPECT_EQ(gpt2_pretokenize("3.14 x2"), (V{"3", ".", "14", " x", "2"}));
  EXPECT_EQ(gpt2_pretokenize("x² ½"), (V{"x", "²", " ½"}));
  EXPECT_EQ(gpt2_pretokenize("héllo wörld 日本語"), (V{"héllo", " wörld", " 日本語"}));
  EXPECT_EQ(gpt2_pretokenize("?!... (ok)"), (V{"?!...", " (", "ok", ")"}));
  EXPECT_EQ(gpt2_pretokenize("\t\tx"), (V{"\t", "\t", "x"}));
  EXPECT_EQ(gpt2_pretokenize(""), V{});
  // Invalid UTF-8 bytes are "other" characters; the pieces still cover every byte.
  const std::string bad = "ab\xff\xfe cd\xc3";
  std::string joined;
  for (auto& p : gpt2_pretokenize(bad)) joined += p;
  EXPECT_EQ(joined, bad);
}

TEST(Bpe, CommittedTokenizerIsWhatTheTrainerWrites) {
  BpeTokenizer t = trained();
  EXPECT_EQ(t.vocab_size(), 380);
  EXPECT_EQ(t.num_merges(), 380 - 256 - 2);
  const std::string json = t.to_json();
  if (std::getenv("MAMBASEQ_REGEN_TESTDATA")) std::ofstream(kDir + "/tokenizer.json", std::ios::binary) << json;
  EXPECT_EQ(slurp(kDir + "/tokenizer.json"), json) << "regenerate with MAMBASEQ_REGEN_TESTDATA=1";
  // Reading what we wrote gives the same tokenizer.
  BpeTokenizer r = BpeTokenizer::from_file(kDir + "/tokenizer.json");
  EXPECT_EQ(r.to_json(), json);
  EXPECT_EQ(r.eos_id(), 0);
}

TEST(Bpe, EncodingsEqualHuggingFaceTokenizers) {
  BpeTokenizer t = BpeTokenizer::from_file(kDir + "/tokenizer.json");
  const auto expected = nlohmann::json::parse(slurp(kDir + "/expected.json"));
  ASSERT_GE(expected.size(), 19u);
  for (const auto& c : expected) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(t.encode(text), want) << "text: " << text;
    EXPECT_EQ(t.decode(want, /*with_special=*/true), text);
  }
}

TEST(Bpe, RoundTripsAnyBytesAndHandlesAddedTokens) {
  BpeTokenizer t = trained();
  const auto cases = nlohmann::json::parse(slurp(kDir + "/cases.json"));
  for (const auto& c : cases) {
    const std::string s = c.get<std::string>();
    EXPECT_EQ(t.decode(t.encode(s), true), s);
  }
  static const char kRaw[] = "\xff\xfe\x80 raw \xc3(bytes)\x00z";  // invalid UTF-8 and a NUL
  for (const std::string& s : {std::string(kRaw, sizeof kRaw - 1), std::string("é\xcc\x81 combining")})
    EXPECT_EQ(t.decode(t.encode(s)), s);
  // Frequent words of the corpus became single tokens.
  EXPECT_EQ(t.encode(" token").size(), 1u);
  EXPECT_EQ(t.encode(" state").size(), 1u);
  EXPECT_EQ(t.encode("Mamba").size(), 1u);
  // Special tokens: one id in the text, dropped by decode unless asked for.
  auto ids = t.encode("a<|endoftext|>b<|padding|>");
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids[1], 0);
  EXPECT_EQ(ids[3], 1);
  EXPECT_EQ(t.decode(ids), "ab");
  EXPECT_EQ(t.decode(ids, true), "a<|endoftext|>b<|padding|>");
  EXPECT_EQ(t.token_id("<|padding|>"), 1);
  EXPECT_EQ(t.token_id("Ġmodel"), t.encode(" model")[0]);
  EXPECT_THROW(t.token_bytes(380), Error);
}

TEST(Bpe, ReadsOlderMergesFormatAndAddedTokenOptions) {
  // A hand-made NeoX-style file: merges as "a b" strings, NFC normalizer, a non-special
  // added token for a run of spaces, an rstrip special token.
  const std::string j = R"({
    "added_tokens": [
      {"id": 7, "content": "<|endoftext|>", "special": true, "rstrip": true},
      {"id": 8, "content": "   ", "special": false, "normalized": true}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "dropout": null, "unk_token": null, "vocab":
      {"a": 0, "b": 1, "Ġ": 2, "ab": 3, "Ġab": 4, "c": 5, "abc": 6},
      "merges": ["a b", "Ġ ab", "ab c"]}})";
  BpeTokenizer t = BpeTokenizer::from_json(j);
  EXPECT_EQ(t.encode("ab abc"), (std::vector<int32_t>{3, 4, 5}));  // " abc": Ġab then c (no "Ġab c")
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{6}));
  EXPECT_EQ(t.encode("ab   ab"), (std::vector<int32_t>{3, 8, 3}));      // the space run is a token
  EXPECT_EQ(t.encode("a<|endoftext|>   b"), (std::vector<int32_t>{0, 7, 1}));  // rstrip eats the spaces
  EXPECT_EQ(t.decode({3, 8, 3}), "ab   ab");
  EXPECT_EQ(t.eos_id(), 7);
}

TEST(Bpe, ErrorsNameTheProblem) {
  auto err = [](const std::string& json) -> std::string {
    try {
      BpeTokenizer::from_json(json, "tok.json");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  const std::string pre = R"("pre_tokenizer": {"type": "ByteLevel"}, )";
  EXPECT_NE(err("{").find("tok.json: bad JSON"), std::string::npos);
  EXPECT_NE(err(R"({)" + pre + R"("model": {"type": "WordPiece", "vocab": {}}})").find("model type 'WordPiece'"),
            std::string::npos);
  EXPECT_NE(err(R"({"pre_tokenizer": {"type": "Metaspace"}, "model": {"type": "BPE", "vocab": {"a": 0}}})")
                .find("pre_tokenizer 'Metaspace'"),
            std::string::npos);
  EXPECT_NE(err(R"({)" + pre + R"("model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})")
                .find("merge 'a b' makes 'ab', which is not in the vocabulary"),
            std::string::npos);
  EXPECT_NE(err(R"({)" + pre + R"("model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0}}})")
                .find("byte_fallback"),
            std::string::npos);
  EXPECT_NE(err(R"({)" + pre + R"("model": {"type": "BPE", "vocab": {"a": -3}}})").find("vocab entry 'a' has id -3"),
            std::string::npos);
  EXPECT_NE(err(R"({)" + pre + R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 0}}})").find("id 0 appears twice"),
            std::string::npos);
  EXPECT_NE(err(R"({)" + pre + R"("normalizer": {"type": "Lowercase"}, "model": {"type": "BPE", "vocab": {"a": 0}}})")
                .find("normalizer 'Lowercase'"),
            std::string::npos);
  EXPECT_THROW(BpeTokenizer::from_file(kDir + "/nope.json"), Error);
}

TEST(Bpe, SequenceTokenizersForDnaModels) {
  SequenceTokenizer n;
  EXPECT_EQ(n.encode("ACGT\nNu"), (std::vector<int32_t>{1, 2, 3, 4, 5, 4}));
  EXPECT_EQ(n.decode({1, 2, 3, 4, 5}), "ACGTN");
  EXPECT_THROW(n.encode("ACGX"), Error);
  ModelConfig dna;
  dna.mamba.vocab_size = 6;
  EXPECT_EQ(load_tokenizer("", "/nonexistent", dna)->vocab_size(), 6);
  ModelConfig text;
  text.mamba.vocab_size = 50277;
  EXPECT_THROW(load_tokenizer("", "/nonexistent", text), Error);
  EXPECT_EQ(load_tokenizer(kDir + "/tokenizer.json", "", text)->vocab_size(), 380);
  EXPECT_THROW(load_tokenizer(kDir + "/tokenizer.json", "", dna), Error);  // more ids than embedding rows
}
