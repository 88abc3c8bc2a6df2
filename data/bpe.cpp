// Byte-level BPE (GPT-2 / GPT-NeoX tokenizer.json) and the nucleotide tokenizer.
#include "mambaseq/bpe.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mambaseq/error.h"

namespace mambaseq {

using json = nlohmann::json;

namespace {

struct CodeRange {
  uint32_t lo, hi;
};
#include "data/bpe_unicode.inc"

template <size_t N>
bool in_ranges(const CodeRange (&r)[N], uint32_t cp) {
  size_t lo = 0, hi = N;
  while (lo < hi) {  // first range with hi >= cp
    size_t mid = (lo + hi) / 2;
    if (r[mid].hi < cp) lo = mid + 1;
    else hi = mid;
  }
  return lo < N && r[lo].lo <= cp;
}

// Unicode White_Space (what \s matches in the tokenizers' regex engine).
bool is_space(int32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}
enum Cls : uint8_t { kLetter, kNumber, kSpace, kOther };
Cls classify(int32_t cp) {
  if (cp < 0) return kOther;  // a byte that is not valid UTF-8
  if (cp < 128) {
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return kLetter;
    if (cp >= '0' && cp <= '9') return kNumber;
    return is_space(cp) ? kSpace : kOther;
  }
  if (is_space(cp)) return kSpace;
  if (in_ranges(kLetters, static_cast<uint32_t>(cp))) return kLetter;
  if (in_ranges(kNumbers, static_cast<uint32_t>(cp))) return kNumber;
  return kOther;
}

// Decodes one UTF-8 character at s[i]; an invalid or truncated sequence yields −1 with
// length 1, so any byte string splits into "characters".
int32_t next_cp(const std::string& s, size_t i, size_t* len) {
  const auto c = static_cast<unsigned char>(s[i]);
  *len = 1;
  if (c < 0x80) return c;
  int n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
  if (n == 0 || i + n > s.size()) return -1;
  int32_t cp = n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < n; ++k) {
    const auto d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (d & 0x3F);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return -1;  // overlong, surrogate, out of range
  *len = n;
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the other 68 to 256, 257, ...
struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 324> to_byte{};  // code point (< 324) -> byte, −1 if none
  std::array<std::string, 256> utf8;   // to_cp as UTF-8
  ByteMap() {
    to_byte.fill(-1);
    uint32_t n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? static_cast<uint32_t>(b) : 256 + n++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
      append_utf8(utf8[b], to_cp[b]);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

std::string map_bytes(const std::string& bytes) {
  std::string r;
  for (unsigned char c : bytes) r += byte_map().utf8[c];
  return r;
}

// Byte-mapped token string back to bytes; a token with a code point outside the map is
// taken as its own UTF-8 bytes (what tokenizers' ByteLevel decoder does).
std::string unmap(const std::string& tok) {
  std::string r;
  for (size_t i = 0; i < tok.size();) {
    size_t len;
    int32_t cp = next_cp(tok, i, &len);
    if (cp < 0 || cp >= 324 || byte_map().to_byte[cp] < 0) return tok;
    r += static_cast<char>(byte_map().to_byte[cp]);
    i += len;
  }
  return r;
}

std::string printable(const std::string& s) {
  std::string r;
  for (unsigned char c : s.substr(0, 80)) {
    if (c < 0x20 || c == 0x7f) r += fmt::format("\\x{:02x}", c);
    else r += static_cast<char>(c);
  }
  return s.size() > 80 ? r + "..." : r;
}

bool word_char(int32_t cp) { return cp == '_' || classify(cp) == kLetter || classify(cp) == kNumber; }

}  // namespace

// ---- pre-tokenizer ------------------------------------------------------------------------

std::vector<std::string> gpt2_pretokenize(const std::string& text) {
  struct Ch {
    int32_t cp;
    size_t at;
    Cls cls;
  };
  std::vector<Ch> c;
  for (size_t i = 0; i < text.size();) {
    size_t len;
    int32_t cp = next_cp(text, i, &len);
    c.push_back({cp, i, classify(cp)});
    i += len;
  }
  const size_t n = c.size();
  auto byte_at = [&](size_t k) { return k < n ? c[k].at : text.size(); };
  std::vector<std::string> out;
  auto emit = [&](size_t a, size_t b) { out.push_back(text.substr(byte_at(a), byte_at(b) - byte_at(a))); };
  size_t i = 0;
  while (i < n) {
    // 's 't 're 've 'm 'll 'd
    if (c[i].cp == '\'' && i + 1 < n) {
      const int32_t a = c[i + 1].cp, b = i + 2 < n ? c[i + 2].cp : 0;
      size_t len = 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') len = 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) len = 3;
      if (len) {
        emit(i, i + len);
        i += len;
        continue;
      }
    }
    // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": an optional ASCII space, then a run of one class.
    size_t j = i;
    if (c[i].cp == ' ' && i + 1 < n && c[i + 1].cls != kSpace) j = i + 1;
    if (c[j].cls != kSpace) {
      const Cls k = c[j].cls;
      size_t e = j + 1;
      while (e < n && c[e].cls == k) ++e;
      emit(i, e);
      i = e;
      continue;
    }
    // "\s+(?!\S)" then "\s+": a whitespace run; when a non-space follows, its last
    // character is left to start the next piece (unless the run is that one character).
    size_t e = i + 1;
    while (e < n && c[e].cls == kSpace) ++e;
    if (e < n && e - i >= 2) --e;
    emit(i, e);
    i = e;
  }
  return out;
}

// ---- tokenizer.json -----------------------------------------------------------------------

BpeTokenizer BpeTokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MS_CHECK(in.good(), "cannot open tokenizer file {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return from_json(ss.str(), path);
}

BpeTokenizer BpeTokenizer::from_json(const std::string& text, const std::string& origin) {
  BpeTokenizer t;
  t.origin_ = origin;
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: bad JSON: {}", origin, e.what());
  }
  MS_CHECK(j.is_object(), "{}: the tokenizer is not a JSON object", origin);
  auto type_of = [&](const json& v, const char* what) -> std::string {
    if (v.is_null()) return "null";
    MS_CHECK(v.is_object() && v.contains("type") && v["type"].is_string(), "{}: '{}' has no string 'type'", origin,
             what);
    return v["type"].get<std::string>();
  };
  auto flag = [&](const json& obj, const char* key, bool def, const char* where) {
    if (!obj.contains(key) || obj[key].is_null()) return def;
    MS_CHECK(obj[key].is_boolean(), "{}: '{}.{}' must be true or false", origin, where, key);
    return obj[key].get<bool>();
  };
  MS_CHECK(j.contains("model"), "{}: no 'model' section", origin);
  const json& m = j["model"];
  const std::string mtype = type_of(m, "model");
  MS_CHECK(mtype == "BPE", "{}: model type '{}' is not supported (only byte-level BPE)", origin, printable(mtype));
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    MS_CHECK(!m.contains(k) || m[k].is_null() || (m[k].is_string() && m[k].get<std::string>().empty()),
             "{}: model.{} is not supported", origin, k);
  MS_CHECK(!flag(m, "byte_fallback", false, "model"), "{}: model.byte_fallback is not supported", origin);
  MS_CHECK(!m.contains("dropout") || m["dropout"].is_null() || (m["dropout"].is_number() && m["dropout"] == 0),
           "{}: BPE dropout is not supported for inference", origin);
  t.ignore_merges_ = flag(m, "ignore_merges", false, "model");

  // Pre-tokenizer: ByteLevel, alone or as the only step of a Sequence.
  MS_CHECK(j.contains("pre_tokenizer"), "{}: no 'pre_tokenizer' (byte-level BPE needs ByteLevel)", origin);
  const json* pre = &j["pre_tokenizer"];
  if (type_of(*pre, "pre_tokenizer") == "Sequence") {
    MS_CHECK(pre->contains("pretokenizers"), "{}: pre_tokenizer Sequence without 'pretokenizers'", origin);
    const json& list = (*pre)["pretokenizers"];
    MS_CHECK(list.is_array() && list.size() == 1, "{}: pre_tokenizer Sequence other than [ByteLevel] is not supported",
             origin);
    pre = &list[0];
  }
  const std::string ptype = type_of(*pre, "pre_tokenizer");
  MS_CHECK(ptype == "ByteLevel", "{}: pre_tokenizer '{}' is not supported (only ByteLevel)", origin, printable(ptype));
  MS_CHECK(flag(*pre, "use_regex", true, "pre_tokenizer"),
           "{}: ByteLevel with use_regex = false is not supported", origin);
  t.add_prefix_space_ = flag(*pre, "add_prefix_space", false, "pre_tokenizer");
  if (j.contains("normalizer")) {
    t.normalizer_ = type_of(j["normalizer"], "normalizer");
    MS_CHECK(t.normalizer_ == "null" || t.normalizer_ == "NFC",
             "{}: normalizer '{}' is not supported (none or NFC)", origin, printable(t.normalizer_));
  }

  MS_CHECK(m.contains("vocab") && m["vocab"].is_object(), "{}: model.vocab must be an object", origin);
  int64_t max_id = -1;
  for (auto& [tok, id] : m["vocab"].items()) {
    MS_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < (1 << 24),
             "{}: vocab entry '{}' has id {}, expected an integer in [0, 2^24)", origin, printable(tok), id.dump());
    max_id = std::max<int64_t>(max_id, id.get<int64_t>());
  }
  std::vector<AddedToken> added;
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    MS_CHECK(j["added_tokens"].is_array(), "{}: added_tokens must be an array", origin);
    for (const json& a : j["added_tokens"]) {
      MS_CHECK(a.is_object() && a.contains("id") && a["id"].is_number_integer() && a["id"].get<int64_t>() >= 0 &&
                   a["id"].get<int64_t>() < (1 << 24) && a.contains("content") && a["content"].is_string(),
               "{}: an added token needs an integer 'id' in [0, 2^24) and a string 'content': {}", origin,
               printable(a.dump()));
      AddedToken at;
      at.id = a["id"].get<int32_t>();
      at.content = a["content"].get<std::string>();
      MS_CHECK(!at.content.empty(), "{}: added token {} has empty content", origin, at.id);
      at.special = flag(a, "special", false, "added_tokens");
      at.lstrip = flag(a, "lstrip", false, "added_tokens");
      at.rstrip = flag(a, "rstrip", false, "added_tokens");
      at.single_word = flag(a, "single_word", false, "added_tokens");
      max_id = std::max<int64_t>(max_id, at.id);
      added.push_back(std::move(at));
    }
  }
  MS_CHECK(max_id >= 0, "{}: the vocabulary is empty", origin);
  t.id_to_token_.assign(max_id + 1, std::string());
  std::vector<uint8_t> used(max_id + 1, 0);
  for (auto& [tok, id] : m["vocab"].items()) {
    const int32_t i = id.get<int32_t>();
    MS_CHECK(!used[i], "{}: id {} appears twice in model.vocab ('{}')", origin, i, printable(tok));
    used[i] = 1;
    t.id_to_token_[i] = tok;
    t.vocab_[tok] = i;
  }
  t.is_added_.assign(max_id + 1, 0);
  for (auto& a : added) {
    // An added token may repeat a vocabulary entry with the same id (GPT-2's <|endoftext|>).
    MS_CHECK(!used[a.id] || t.id_to_token_[a.id] == a.content,
             "{}: added token '{}' has id {}, which model.vocab gives to '{}'", origin, printable(a.content), a.id,
             printable(t.id_to_token_[a.id]));
    MS_CHECK(t.is_added_[a.id] == 0, "{}: two added tokens have id {}", origin, a.id);
    used[a.id] = 1;
    t.id_to_token_[a.id] = a.content;
    t.is_added_[a.id] = a.special ? 2 : 1;
  }
  t.added_ = std::move(added);

  if (m.contains("merges") && !m["merges"].is_null()) {
    MS_CHECK(m["merges"].is_array(), "{}: model.merges must be an array", origin);
    for (const json& mg : m["merges"]) {
      std::string a, b;
      if (mg.is_string()) {  // "a b" (older files)
        const std::string s = mg.get<std::string>();
        const size_t sp = s.find(' ');
        MS_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < s.size() && s.find(' ', sp + 1) == std::string::npos,
                 "{}: merge '{}' is not two symbols separated by one space", origin, printable(s));
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {  // ["a", "b"] (tokenizers >= 0.20)
        MS_CHECK(mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string(),
                 "{}: merge {} is not a pair of strings", origin, printable(mg.dump()));
        a = mg[0].get<std::string>();
        b = mg[1].get<std::string>();
      }
      MS_CHECK(t.vocab_.count(a + b), "{}: merge '{} {}' makes '{}', which is not in the vocabulary", origin,
               printable(a), printable(b), printable(a + b));
      t.merges_.emplace_back(std::move(a), std::move(b));
    }
  }
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    auto it = t.vocab_.find(m["unk_token"].get<std::string>());
    MS_CHECK(it != t.vocab_.end(), "{}: unk_token '{}' is not in the vocabulary", origin,
             printable(m["unk_token"].get<std::string>()));
    t.unk_ = it->second;
  }
  t.finish_setup();
  return t;
}

void BpeTokenizer::finish_setup() {
  rank_.clear();
  for (size_t r = 0; r < merges_.size(); ++r) rank_.emplace(merges_[r].first + " " + merges_[r].second, int32_t(r));
  eos_ = -1;
  for (const char* e : {"<|endoftext|>", "</s>", "<eos>", "[SEP]"})
    if (int32_t id = token_id(e); id >= 0) {
      eos_ = id;
      break;
    }
  // Longest first, so the first match at a position is the leftmost-longest one.
  std::stable_sort(added_.begin(), added_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  cache_.clear();
}

int32_t BpeTokenizer::token_id(const std::string& tok) const {
  for (auto& a : added_)
    if (a.content == tok) return a.id;
  auto it = vocab_.find(tok);
  return it == vocab_.end() ? -1 : it->second;
}

std::string BpeTokenizer::to_json() const {
  nlohmann::ordered_json j;
  const nlohmann::ordered_json bl = {
      {"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space_}, {"trim_offsets", true}, {"use_regex", true}};
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = nlohmann::ordered_json::array();
  std::vector<AddedToken> by_id = added_;
  std::sort(by_id.begin(), by_id.end(), [](auto& a, auto& b) { return a.id < b.id; });
  for (auto& a : by_id)
    j["added_tokens"].push_back({{"id", a.id},
                                 {"content", a.content},
                                 {"single_word", a.single_word},
                                 {"lstrip", a.lstrip},
                                 {"rstrip", a.rstrip},
                                 {"normalized", false},
                                 {"special", a.special}});
  if (normalizer_ == "null") j["normalizer"] = nullptr;
  else j["normalizer"] = {{"type", normalizer_}};
  j["pre_tokenizer"] = bl;
  j["post_processor"] = bl;
  j["decoder"] = bl;
  nlohmann::ordered_json m;
  m["type"] = "BPE";
  m["dropout"] = nullptr;
  m["unk_token"] = unk_ >= 0 ? nlohmann::ordered_json(id_to_token_[unk_]) : nlohmann::ordered_json(nullptr);
  m["continuing_subword_prefix"] = nullptr;
  m["end_of_word_suffix"] = nullptr;
  m["fuse_unk"] = false;
  m["byte_fallback"] = false;
  m["ignore_merges"] = ignore_merges_;
  std::vector<std::pair<int32_t, std::string>> v;
  for (auto& [tok, id] : vocab_) v.emplace_back(id, tok);
  std::sort(v.begin(), v.end());
  m["vocab"] = nlohmann::ordered_json::object();
  for (auto& [id, tok] : v) m["vocab"][tok] = id;
  m["merges"] = nlohmann::ordered_json::array();
  for (auto& [a, b] : merges_) m["merges"].push_back({a, b});
  j["model"] = std::move(m);
  return j.dump(1) + "\n";
}

// ---- encode / decode ----------------------------------------------------------------------

void BpeTokenizer::encode_piece(const std::string& bytes, std::vector<int32_t>& out) const {
  if (auto it = cache_.find(bytes); it != cache_.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  const std::string word = map_bytes(bytes);
  std::vector<int32_t> ids;
  auto lookup = [&](const std::string& sym) {
    auto it = vocab_.find(sym);
    if (it != vocab_.end()) {
      ids.push_back(it->second);
    } else {
      MS_CHECK(unk_ >= 0, "{}: no vocabulary entry for '{}' and no unk_token", origin_, printable(sym));
      ids.push_back(unk_);
    }
  };
  if (ignore_merges_ && vocab_.count(word)) {
    lookup(word);
  } else {
    std::vector<std::string> sym;
    for (unsigned char ch : bytes) sym.push_back(byte_map().utf8[ch]);
    // Repeatedly merge every occurrence (left to right) of the adjacent pair of lowest rank.
    while (sym.size() > 1) {
      int32_t best = INT32_MAX;
      for (size_t k = 0; k + 1 < sym.size(); ++k) {
        auto it = rank_.find(sym[k] + " " + sym[k + 1]);
        if (it != rank_.end() && it->second < best) best = it->second;
      }
      if (best == INT32_MAX) break;
      const auto& [a, b] = merges_[best];
      std::vector<std::string> next;
      next.reserve(sym.size());
      for (size_t s = 0; s < sym.size();) {
        if (s + 1 < sym.size() && sym[s] == a && sym[s + 1] == b) {
          next.push_back(a + b);
          s += 2;
        } else {
          next.push_back(sym[s++]);
        }
      }
      sym = std::move(next);
    }
    for (auto& s : sym) lookup(s);
  }
  if (cache_.size() > 100000) cache_.clear();  // bounded: long inputs must not grow it forever
  cache_.emplace(bytes, ids);
  out.insert(out.end(), ids.begin(), ids.end());
}

std::vector<int32_t> BpeTokenizer::encode(const std::string& text) const {
  std::vector<int32_t> out;
  auto plain = [&](size_t a, size_t b) {
    if (a >= b) return;
    std::string seg = text.substr(a, b - a);
    if (add_prefix_space_ && seg[0] != ' ') seg.insert(seg.begin(), ' ');
    for (const std::string& piece : gpt2_pretokenize(seg)) encode_piece(piece, out);
  };
  size_t start = 0, i = 0;
  while (i < text.size()) {
    const AddedToken* hit = nullptr;
    for (const AddedToken& a : added_) {
      if (text.compare(i, a.content.size(), a.content) != 0) continue;
      if (a.single_word) {  // not glued to a word on either side
        size_t len;
        const bool before = i > 0 && word_char(next_cp(text, i - 1, &len));
        const size_t e = i + a.content.size();
        const bool after = e < text.size() && word_char(next_cp(text, e, &len));
        if (before || after) continue;
      }
      hit = &a;
      break;
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t a0 = i, e = i + hit->content.size();
    if (hit->lstrip)
      while (a0 > start && is_space(static_cast<unsigned char>(text[a0 - 1]))) --a0;
    if (hit->rstrip)
      while (e < text.size() && is_space(static_cast<unsigned char>(text[e]))) ++e;
    plain(start, a0);
    out.push_back(hit->id);
    start = i = e;
  }
  plain(start, text.size());
  return out;
}

std::string BpeTokenizer::token_bytes(int32_t id, bool with_special) const {
  MS_CHECK(id >= 0 && id < vocab_size(), "token id {} is outside the tokenizer's vocabulary [0, {})", id,
           vocab_size());
  if (is_added_[id]) return is_added_[id] == 2 && !with_special ? std::string() : id_to_token_[id];
  return unmap(id_to_token_[id]);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool with_special) const {
  std::string r;
  for (int32_t id : ids) r += token_bytes(id, with_special);
  return r;
}

// ---- training -----------------------------------------------------------------------------

BpeTokenizer BpeTokenizer::train(const std::vector<std::string>& corpus, int64_t vocab_size,
                                 const std::vector<std::string>& special_tokens) {
  BpeTokenizer t;
  t.origin_ = "trained";
  int32_t next = 0;
  // Special tokens are in model.vocab too (as GPT-2's and NeoX's files have them):
  // tokenizers renumbers an added token that the model's vocabulary lacks.
  for (const auto& s : special_tokens) {
    AddedToken a;
    a.id = next++;
    a.content = s;
    a.special = true;
    t.added_.push_back(a);
    t.vocab_.emplace(s, a.id);
  }
  for (int b = 0; b < 256; ++b) t.vocab_.emplace(byte_map().utf8[b], next++);
  // Words (pre-tokenizer pieces) with their counts, as symbol sequences.
  std::map<std::string, int64_t> counts;
  for (const auto& text : corpus)
    for (const auto& piece : gpt2_pretokenize(text)) ++counts[piece];
  std::vector<std::pair<std::vector<std::string>, int64_t>> words;
  for (auto& [w, n] : counts) {
    std::vector<std::string> sym;
    for (unsigned char ch : w) sym.push_back(byte_map().utf8[ch]);
    words.emplace_back(std::move(sym), n);
  }
  while (next < vocab_size) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (auto& [sym, n] : words)
      for (size_t k = 0; k + 1 < sym.size(); ++k) pairs[{sym[k], sym[k + 1]}] += n;
    const std::pair<std::string, std::string>* best = nullptr;
    int64_t best_n = 1;
    for (auto& [p, n] : pairs)  // most frequent; ties: the smallest pair (map order)
      if (n > best_n) {
        best_n = n;
        best = &p;
      }
    if (!best) break;
    const auto [a, b] = *best;
    if (!t.vocab_.count(a + b)) t.vocab_.emplace(a + b, next++);
    t.merges_.emplace_back(a, b);
    for (auto& [sym, n] : words) {
      std::vector<std::string> out;
      for (size_t s = 0; s < sym.size();) {
        if (s + 1 < sym.size() && sym[s] == a && sym[s + 1] == b) {
          out.push_back(a + b);
          s += 2;
        } else {
          out.push_back(sym[s++]);
        }
      }
      sym = std::move(out);
    }
  }
  t.id_to_token_.assign(next, std::string());
  t.is_added_.assign(next, 0);
  for (auto& [tok, id] : t.vocab_) t.id_to_token_[id] = tok;
  for (auto& a : t.added_) {
    t.id_to_token_[a.id] = a.content;
    t.is_added_[a.id] = 2;
  }
  t.finish_setup();
  return t;
}

// ---- DNA / RNA ---------------------------------------------------------------------------

std::vector<int32_t> SequenceTokenizer::encode(const std::string& text) const {
  std::string seq;
  seq.reserve(text.size());
  for (char ch : text)
    if (ch != '\n' && ch != '\r' && ch != ' ' && ch != '\t') seq += ch;
  return t_.encode(seq);
}

std::string SequenceTokenizer::token_bytes(int32_t id, bool with_special) const {
  if (id == 0) return with_special ? "<pad>" : "";
  std::string tok = t_.token(id);
  if (t_.kind() == SeqTokenizerKind::Kmer && tok != "<unk>") return tok.substr(t_.k() - t_.stride());
  return tok;
}

int32_t SequenceTokenizer::token_id(const std::string& token) const {
  for (int32_t id = 0; id < vocab_size(); ++id)
    if (t_.token(id) == token) return id;
  return -1;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec, const std::string& model_dir,
                                          const ModelConfig& cfg) {
  std::unique_ptr<Tokenizer> t;
  const int64_t rows = cfg.mamba.vocab_padded();
  if (spec == "nucleotide" || spec == "codon") {
    t = std::make_unique<SequenceTokenizer>(SeqTokenizer::from_name(spec));
  } else if (spec.size() > 4 && spec.compare(0, 4, "kmer") == 0 &&
             spec.find_first_not_of("0123456789", 4) == std::string::npos) {
    t = std::make_unique<SequenceTokenizer>(SeqTokenizer::kmer(std::stoi(spec.substr(4))));
  } else if (!spec.empty()) {
    t = std::make_unique<BpeTokenizer>(BpeTokenizer::from_file(spec));
  } else if (std::filesystem::exists(model_dir + "/tokenizer.json")) {
    t = std::make_unique<BpeTokenizer>(BpeTokenizer::from_file(model_dir + "/tokenizer.json"));
  } else {
    MS_CHECK(rows <= 16,
             "{}: no tokenizer.json, and the vocabulary ({} rows) is too large for the nucleotide alphabet: pass "
             "--tokenizer PATH/tokenizer.json (or --ids)",
             model_dir, rows);
    t = std::make_unique<SequenceTokenizer>();
  }
  MS_CHECK(t->vocab_size() <= rows, "tokenizer {} has {} ids, but the model's embedding has only {} rows", t->name(),
           t->vocab_size(), rows);
  return t;
}

}  // namespace mambaseq
