// config.json (Hugging Face and original state-spaces forms, our keys): any input gives a
// config or a mambaseq::Error, and an accepted config survives write → read unchanged.
#include <cstdlib>

#include "fuzz/fuzz_util.h"
#include "mambaseq/error.h"
#include "mambaseq/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mambaseq;
  ModelConfig c;
  try {
    c = read_model_config(fuzz::as_file(data, size));
  } catch (const Error&) {
    return 0;
  }
  const std::string text = config_to_json(c);  // must not throw: c was validated
  ModelConfig d = read_model_config(fuzz::as_file(reinterpret_cast<const uint8_t*>(text.data()), text.size(), 1));
  const MambaConfig &x = c.mamba, &y = d.mamba;
  const bool same = x.d_model == y.d_model && x.n_layer == y.n_layer && x.vocab_size == y.vocab_size &&
                    x.vocab_padded() == y.vocab_padded() && x.d_state == y.d_state && x.d_conv == y.d_conv &&
                    x.expand == y.expand && x.dt_rank == y.dt_rank && x.norm == y.norm &&
                    x.use_bias == y.use_bias && x.use_conv_bias == y.use_conv_bias &&
                    x.tie_embeddings == y.tie_embeddings && c.head == d.head && c.num_labels == d.num_labels &&
                    c.pad_token_id == d.pad_token_id;
  if (!same) std::abort();  // a config that does not survive its own round trip
  return 0;
}
