// tokenizer.json: any file gives a tokenizer or a mambaseq::Error; an accepted tokenizer
// encodes text to ids inside its vocabulary, and what to_json() writes reads back as a
// tokenizer that encodes the same way.
#include <cstdlib>

#include "mambaseq/bpe.h"
#include "mambaseq/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mambaseq;
  // The first bytes up to a NUL are the text to encode; the rest is the tokenizer.json.
  const std::string all(reinterpret_cast<const char*>(data), size);
  const size_t cut = all.find('\0');
  const std::string text = cut == std::string::npos ? std::string("Hello world 123!\n") : all.substr(0, std::min<size_t>(cut, 256));
  const std::string json = cut == std::string::npos ? all : all.substr(cut + 1);
  try {
    BpeTokenizer t = BpeTokenizer::from_json(json, "tokenizer.json");
    std::vector<int32_t> ids;
    try {
      ids = t.encode(text);
    } catch (const Error&) {
      return 0;  // e.g. a symbol with no vocabulary entry and no unk_token
    }
    for (int32_t id : ids)
      if (id < 0 || id >= t.vocab_size()) std::abort();
    (void)t.decode(ids, true);
    BpeTokenizer back = BpeTokenizer::from_json(t.to_json(), "written.json");
    if (back.encode(text) != ids) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
