// The inference subcommands end to end: init → generate / score / embed, their outputs
// against the library, and bad input giving one error line and no output file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mambaseq/bpe.h"
#include "mambaseq/checkpoint.h"
#include "mambaseq/generate.h"
#include "mambaseq/inference.h"
#include "mambaseq/npy.h"
#include "mambaseq/safetensors.h"
#include "tests/cli_util.h"

using mambaseq::test::run_cli;
using namespace mambaseq;
namespace fs = std::filesystem;

namespace {
struct Dirs {
  std::string root, lm, dna;
};

// Built once: a tiny text LM with the test tokenizer, and a tiny DNA LM.
const Dirs& models() {
  static Dirs d = [] {
    Dirs x;
    x.root = ::testing::TempDir() + "mambaseq_cli_inf_" + std::to_string(::getpid());
    fs::remove_all(x.root);
    fs::create_directories(x.root);
    x.lm = x.root + "/lm";
    x.dna = x.root + "/dna";
    const std::string tok = std::string(MAMBASEQ_TEST_DATA) + "/bpe/tokenizer.json";
    auto r = run_cli("init --out " + x.lm + " --d-model 32 --n-layer 2 --vocab-size 380 --perturb 0.05 --seed 3 "
                     "--untied --use-bias --dtype bf16 --max-shard-mb 0.05 --tokenizer-json " + tok);
    EXPECT_EQ(r.code, 0) << r.out;
    r = run_cli("init --out " + x.dna + " --d-model 16 --n-layer 2 --vocab-size 6 --perturb 0.1 --seed 4");
    EXPECT_EQ(r.code, 0) << r.out;
    return x;
  }();
  return d;
}

std::string write(const std::string& name, const std::string& text) {
  const std::string p = models().root + "/" + name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::vector<std::string>> tsv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) {
    std::vector<std::string> f;
    std::stringstream ls(line);
    std::string cell;
    while (std::getline(ls, cell, '\t')) f.push_back(cell);
    rows.push_back(f);
  }
  return rows;
}

bool no_temp_files(const std::string& dir) {
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return false;
  return true;
}

const char* kFasta = ">s1 first\nACGTACGTAC\nGGT\n>s2\nttttca\n>s3 x=1\nN\n>s4\nACGTTGCA\n";
}  // namespace

TEST(CliInference, GenerateStreamsReproducibleTokens) {
  const auto& d = models();
  auto a = run_cli("generate --model " + d.lm + " --prompt 'The model' -n 20 --seed 5 --top-k 50 --top-p 0.9 -q");
  auto b = run_cli("generate --model " + d.lm + " --prompt 'The model' -n 20 --seed 5 --top-k 50 --top-p 0.9 -q");
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_EQ(a.out, b.out);
  // JSONL events: 20 tokens per prompt then a done line each; greedy equals the library.
  auto j = run_cli("generate --model " + d.lm + " --prompt 'Hello' --prompt 'Mamba is a' -n 8 --greedy --no-eos-stop --jsonl -q");
  ASSERT_EQ(j.code, 0) << j.out;
  std::stringstream ss(j.out);
  std::string line;
  std::vector<std::vector<int32_t>> got(2);
  int done = 0;
  while (std::getline(ss, line)) {
    auto e = nlohmann::json::parse(line);
    if (e.contains("done")) {
      ++done;
      EXPECT_EQ(e["reason"], "length");
      continue;
    }
    got[e["seq"].get<int>()].push_back(e["id"].get<int32_t>());
  }
  EXPECT_EQ(done, 2);
  auto model = load_model(d.lm);
  auto tok = BpeTokenizer::from_file(d.lm + "/tokenizer.json");
  InferenceEngine eng(*model);
  GenerateOptions o;
  o.greedy = true;
  o.max_new_tokens = 8;
  o.vocab_limit = 380;
  auto r = generate(eng, {tok.encode("Hello"), tok.encode("Mamba is a")}, o);
  EXPECT_EQ(got, r.tokens);
  // Stop at the first greedy token: nothing is generated.
  auto s = run_cli("generate --model " + d.lm + " --prompt 'Hello' -n 8 --greedy --jsonl -q --stop " +
                   std::to_string(r.tokens[0][0]));
  EXPECT_NE(s.out.find("\"reason\": \"stop\", \"tokens\": 1"), std::string::npos) << s.out;
  // A DNA model generates bases; a prompt file is a batch.
  auto g = run_cli("generate --model " + d.dna + " --prompt-file " + write("p.txt", "ACGT\nTTGA\n") + " -n 12 -q");
  ASSERT_EQ(g.code, 0) << g.out;
  EXPECT_NE(g.out.find("=== 2 ==="), std::string::npos) << g.out;
  // Errors: one line, non-zero exit.
  for (const std::string& bad : std::vector<std::string>{"generate --model " + d.lm, "generate --model /nonexistent --prompt x",
                                 "generate --model " + d.dna + " --prompt ACGX", "generate --model " + d.lm +
                                     " --prompt x --top-p 2"}) {
    auto e = run_cli(bad);
    EXPECT_NE(e.code, 0) << bad;
    EXPECT_NE(e.out.find("mambaseq: error: "), std::string::npos) << bad << ": " << e.out;
    EXPECT_EQ(std::count(e.out.begin(), e.out.end(), '\n'), 1) << bad << ": " << e.out;
  }
}

TEST(CliInference, ScoreMatchesTheLibraryAndVariantsAreRatios) {
  const auto& d = models();
  const std::string fa = write("s.fa", kFasta), out = models().root + "/scores.tsv";
  auto r = run_cli("score --model " + d.dna + " --fasta " + fa + " --per-token -b 3 --no-progress -o " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  auto rows = tsv(slurp(out));
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0][0], "id");
  auto model = load_model(d.dna);
  InferenceEngine eng(*model);
  SequenceTokenizer nt;
  std::vector<std::vector<int32_t>> seqs = {nt.encode("ACGTACGTACGGT"), nt.encode("ttttca"), nt.encode("N"),
                                            nt.encode("ACGTTGCA")};
  auto sc = score_sequences(eng, seqs, true);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(std::stoll(rows[i + 1][1]), static_cast<int64_t>(seqs[i].size()));
    EXPECT_EQ(std::stoll(rows[i + 1][2]), sc[i].count);
    EXPECT_NEAR(std::stod(rows[i + 1][3]), sc[i].total, 1e-4 * (1 + std::abs(sc[i].total)));
  }
  EXPECT_EQ(rows[3][4], "nan");  // one token: nothing scored
  EXPECT_EQ(std::count(rows[1][5].begin(), rows[1][5].end(), ',') + 1, 12);
  // --ids: the same sequences pre-tokenized; --bos scores the first token too.
  auto ids = run_cli("score --model " + d.dna + " --ids " + write("ids.txt", "1 2 3 4\n\n4 4 4 4 2 1\n") +
                     " --bos 0 --no-progress");
  ASSERT_EQ(ids.code, 0) << ids.out;
  auto irows = tsv(ids.out);
  ASSERT_EQ(irows.size(), 3u);
  EXPECT_EQ(irows[2][0], "line3");
  EXPECT_EQ(irows[1][2], "4");
  // Variants: llr = alt − ref, ref checked against the sequence.
  const std::string vt = write("v.tsv", "id\tpos\tref\talt\ns1\t4\tT\tG\ns4\t1\tACG\t-\n# comment\ns2\t2\tT\tA\n");
  auto v = run_cli("score --model " + d.dna + " --fasta " + fa + " --variants " + vt + " --no-progress");
  ASSERT_EQ(v.code, 0) << v.out;
  auto vrows = tsv(v.out);
  ASSERT_EQ(vrows.size(), 4u);
  auto alt = score_sequences(eng, {nt.encode("ACGGACGTACGGT"), nt.encode("TTGCA"), nt.encode("tattca")}, false);
  const double want[3] = {alt[0].total - sc[0].total, alt[1].total - sc[3].total, alt[2].total - sc[1].total};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(std::stod(vrows[i + 1][6]), want[i], 1e-4) << v.out;
  // A wrong ref allele names the line; no output file is left behind.
  const std::string vout = models().root + "/var.tsv";
  auto bad = run_cli("score --model " + d.dna + " --fasta " + fa + " --variants " +
                     write("bad.tsv", "s1\t4\tT\tG\ns1\t2\tA\tG\n") + " -o " + vout);
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("bad.tsv:2: ref allele 'A' does not match 's1' at s1:2 (the sequence has 'C')"),
            std::string::npos)
      << bad.out;
  EXPECT_FALSE(fs::exists(vout));
  EXPECT_TRUE(no_temp_files(models().root));
  // Logits for interop checks: every position of every sequence.
  const std::string lo = models().root + "/logits.safetensors";
  ASSERT_EQ(run_cli("score --model " + d.dna + " --fasta " + fa + " --no-progress --logits-out " + lo).code, 0);
  SafeTensorsReader lr(lo);
  EXPECT_EQ(lr.info("logits").shape, (Shape{13 + 6 + 1 + 8, 8}));
  EXPECT_EQ(lr.read_i64("offsets"), (std::vector<int64_t>{0, 13, 19, 20, 28}));
}

TEST(CliInference, EmbedStreamsNpyAndSafetensors) {
  const auto& d = models();
  const std::string fa = write("e.fa", kFasta), root = models().root;
  ASSERT_EQ(run_cli("embed --model " + d.dna + " --fasta " + fa + " -o " + root + "/e.npy -b 3 --no-progress").code, 0);
  auto model = load_model(d.dna);
  InferenceEngine eng(*model);
  SequenceTokenizer nt;
  std::vector<std::vector<int32_t>> seqs = {nt.encode("ACGTACGTACGGT"), nt.encode("ttttca"), nt.encode("N"),
                                            nt.encode("ACGTTGCA")};
  std::vector<float> pooled(4 * 16);
  std::vector<std::vector<float>> hid(4);
  embed_sequences(eng, seqs, pooled.data(), [&](int64_t b, int64_t, const float* h, int64_t n) {
    hid[b].insert(hid[b].end(), h, h + n * 16);
  });
  NpyArray a = read_npy(root + "/e.npy");
  ASSERT_EQ(a.shape, (Shape{4, 16}));
  for (int i = 0; i < 64; ++i) EXPECT_NEAR(a.data[i], pooled[i], 1e-5);
  auto ids = tsv(slurp(root + "/e.npy.ids.tsv"));
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(ids[2][1], "s2");
  // Per-token .npy: rows of all sequences, in order.
  ASSERT_EQ(run_cli("embed --model " + d.dna + " --fasta " + fa + " -o " + root + "/t.npy --per-token -b 2 --no-progress").code, 0);
  NpyArray t = read_npy(root + "/t.npy");
  ASSERT_EQ(t.shape, (Shape{28, 16}));
  std::vector<float> all;
  for (auto& h : hid) all.insert(all.end(), h.begin(), h.end());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_NEAR(t.data[i], all[i], 1e-5) << i;
  // safetensors: hidden + embeddings + offsets; loads with the strict reader.
  ASSERT_EQ(run_cli("embed --model " + d.dna + " --fasta " + fa + " -o " + root + "/e.safetensors --per-token --no-progress").code, 0);
  SafeTensorsReader st(root + "/e.safetensors");
  EXPECT_EQ(st.read_i64("offsets"), (std::vector<int64_t>{0, 13, 19, 20, 28}));
  Tensor e = st.read_f32("embeddings", {4, 16});
  Tensor h = st.read_f32("hidden", {28, 16});
  for (int i = 0; i < 64; ++i) EXPECT_NEAR(e[i], pooled[i], 1e-5);
  for (size_t i = 0; i < all.size(); ++i) ASSERT_NEAR(h[i], all[i], 1e-5);
  EXPECT_EQ(st.metadata().at("format"), "mambaseq-embeddings");
  // A bad record midway: error naming it, no output, no temporary files.
  const std::string bad = write("bad.fa", ">a\nACGT\n>b\nACXT\n");
  auto r = run_cli("embed --model " + d.dna + " --fasta " + bad + " -o " + root + "/bad.npy -b 1 --no-progress");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("bad.fa:3: record 'b'"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(root + "/bad.npy"));
  EXPECT_FALSE(fs::exists(root + "/bad.npy.ids.tsv"));
  EXPECT_TRUE(no_temp_files(root));
  EXPECT_NE(run_cli("embed --model " + d.dna + " --fasta " + fa + " -o " + root + "/x.csv").code, 0);
  // A bidirectional classifier embeds whole sequences (the token-by-token engine refuses
  // it); generation refuses it for its head (a bidirectional model cannot be an LM).
  ModelConfig bc;
  bc.head = HeadKind::SequenceClassification;
  bc.mamba.d_model = 16;
  bc.mamba.n_layer = 2;
  bc.mamba.vocab_size = 6;
  bc.mamba.bidirectional = true;
  Model bm(bc, 8);
  bm.save(root + "/bidir");
  ASSERT_EQ(run_cli("embed --model " + root + "/bidir --fasta " + fa + " -o " + root + "/b.npy -b 3 --no-progress").code, 0);
  std::vector<float> bpooled(4 * 16);
  embed_whole_sequences(bm, seqs, bpooled.data());
  NpyArray ba = read_npy(root + "/b.npy");
  ASSERT_EQ(ba.shape, (Shape{4, 16}));
  for (int i = 0; i < 64; ++i) EXPECT_NEAR(ba.data[i], bpooled[i], 1e-5);
  auto g = run_cli("generate --model " + root + "/bidir --prompt ACGT -n 3");
  EXPECT_NE(g.code, 0);
  EXPECT_NE(g.out.find("generate needs a language model"), std::string::npos) << g.out;
}
