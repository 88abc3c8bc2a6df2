// Data: tokenizers, streaming readers (FASTA, CSV/TSV, gzip), dataset loaders and their
// bad-data errors, splits, batching, synthetic tasks, the multi-label loss, run configs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "mambaseq/batching.h"
#include "mambaseq/error.h"
#include "mambaseq/loaders.h"
#include "mambaseq/model.h"
#include "mambaseq/readers.h"
#include "mambaseq/run_config.h"
#include "mambaseq/splits.h"
#include "mambaseq/tokenizers.h"

using namespace mambaseq;
namespace fs = std::filesystem;

namespace {

std::string tmpdir(const std::string& name) {
  std::string d = ::testing::TempDir() + "mambaseq_data_" + name + "_" + std::to_string(::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f << text;
  return path;
}

// The Error message of f(), or "" when it does not throw.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR_HAS(expr, text)                                           \
  do {                                                                         \
    const std::string msg_ = error_of([&] { (void)(expr); });                  \
    EXPECT_NE(msg_.find(text), std::string::npos) << "error was: '" << msg_ << "'"; \
  } while (0)

const std::string kPromoters = "/work/shared/data/promoters";

}  // namespace

// ---- tokenizers --------------------------------------------------------------------------

TEST(DataTokenizer, NucleotideIdsCaseRnaAndIupac) {
  SeqTokenizer t;
  EXPECT_EQ(t.vocab_size(), 6);
  TokenizeStats st;
  EXPECT_EQ(t.encode("ACGTNacgtnUu", &st), (std::vector<int32_t>{1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 4, 4}));
  EXPECT_EQ(st.iupac_to_n, 0);
  EXPECT_EQ(t.encode("ARYsWkmBDHVn", &st), (std::vector<int32_t>{1, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5}));
  EXPECT_EQ(st.iupac_to_n, 10);
  EXPECT_EQ(st.sequences, 2);
  EXPECT_EQ(st.bases, 24);
  EXPECT_ERROR_HAS(t.encode("AC-GT"), "character '-' at position 3");
  EXPECT_ERROR_HAS(t.encode(std::string("AC\0G", 4)), "character '\\x00' at position 3");
  EXPECT_EQ(t.decode({1, 2, 3, 4, 5, 0, 0}), "ACGTN");
}

TEST(DataTokenizer, CodonFramesSpecialsAndPartialCodons) {
  SeqTokenizer c = SeqTokenizer::codon(0);
  EXPECT_EQ(c.vocab_size(), 66);
  TokenizeStats st;
  // ATG = 2 + 16·0 + 4·3 + 2 = 16, AAA = 2, TTT = 65; "GC" is no codon.
  EXPECT_EQ(c.encode("ATGAAATTTGC", &st), (std::vector<int32_t>{16, 2, 65}));
  EXPECT_EQ(st.partial_codon_bases, 2);
  EXPECT_EQ(c.token(16), "ATG");
  EXPECT_EQ(c.token(50), "TAA");
  EXPECT_EQ(c.token(1), "<unk>");
  // Frame 1: TGA AAT TTG, one base (C) left over.
  TokenizeStats st1;
  EXPECT_EQ(SeqTokenizer::codon(1).encode("ATGAAATTTGC", &st1), (std::vector<int32_t>{58, 5, 64}));
  EXPECT_EQ(st1.partial_codon_bases, 1);
  // mRNA: U reads as T; a codon with N (or an ambiguity code) is UNK.
  EXPECT_EQ(c.encode("AUGNNNuaR"), (std::vector<int32_t>{16, 1, 1}));
  EXPECT_EQ(c.decode({16, 2, 0}), "ATGAAA");
  EXPECT_THROW(SeqTokenizer::codon(3), Error);
  EXPECT_FALSE(c.has_reverse_complement());
  EXPECT_ERROR_HAS(c.reverse_complement({16, 2}), "no reverse complement");
}

TEST(DataTokenizer, KmersOverlappingAndStrided) {
  SeqTokenizer k3 = SeqTokenizer::kmer(3);
  EXPECT_EQ(k3.vocab_size(), 66);
  const auto ids = k3.encode("ACGTA");
  EXPECT_EQ(ids, (std::vector<int32_t>{8, 29, 46}));  // ACG CGT GTA
  EXPECT_EQ(k3.decode(ids), "ACGTA");
  EXPECT_EQ(k3.encode("ACNTA"), (std::vector<int32_t>{1, 1, 1}));  // every window holds the N
  TokenizeStats st;
  SeqTokenizer k3s3 = SeqTokenizer::kmer(3, 3);
  EXPECT_EQ(k3s3.encode("ACGTACGT", &st), (std::vector<int32_t>{8, 51}));  // ACG TAC, "GT" left
  EXPECT_EQ(st.partial_codon_bases, 2);
  EXPECT_EQ(SeqTokenizer::kmer(6).vocab_size(), 2 + 4096);
  EXPECT_THROW(SeqTokenizer::kmer(9), Error);
  EXPECT_THROW(SeqTokenizer::from_name("bpe"), Error);
  EXPECT_EQ(SeqTokenizer::from_name("kmer", 4).vocab_size(), 258);
}

TEST(DataTokenizer, ReverseComplement) {
  EXPECT_EQ(reverse_complement("ACGTNRYacgu"), "acgtRYNACGT");
  EXPECT_EQ(reverse_complement("KMBVDHSW"), "WSDHBVKM");
  EXPECT_THROW(reverse_complement("AC*"), Error);
  SeqTokenizer n;
  // ACGG + padding → CCGT + padding (padding stays at the end).
  EXPECT_EQ(n.reverse_complement({1, 2, 3, 3, 0, 0}), (std::vector<int32_t>{2, 2, 3, 4, 0, 0}));
  EXPECT_EQ(n.reverse_complement({5, 1}), (std::vector<int32_t>{4, 5}));
  // k-mer ids: the reverse complement's k-mers, exactly.
  SeqTokenizer k3 = SeqTokenizer::kmer(3);
  EXPECT_EQ(k3.reverse_complement(k3.encode("ACGTA")), k3.encode("TACGT"));
  SeqTokenizer k5 = SeqTokenizer::kmer(5);
  const std::string s = "GATTACAGGCTTANCAGT";
  EXPECT_EQ(k5.reverse_complement(k5.encode(s)), k5.encode(reverse_complement(s)));
  EXPECT_FALSE(SeqTokenizer::kmer(3, 2).has_reverse_complement());
}

// ---- readers -----------------------------------------------------------------------------

TEST(DataReaders, FastaMultiLineRecordsLinesAndTags) {
  const std::string d = tmpdir("fasta");
  const std::string p = write(d + "/a.fa",
                              ">seq1 desc words label=pos\nACGT\r\nacgt\n\n>seq2 label=neg\nNN NN\n>  seq3\nGG");
  FastaReader r(p);
  FastaRecord rec;
  ASSERT_TRUE(r.next(rec));
  EXPECT_EQ(rec.id, "seq1");
  EXPECT_EQ(rec.description, "desc words label=pos");
  EXPECT_EQ(rec.seq, "ACGTacgt");
  EXPECT_EQ(rec.line, 1);
  EXPECT_EQ(rec.line_of(0), 2);
  EXPECT_EQ(rec.line_of(5), 3);
  EXPECT_EQ(rec.tag("label"), "pos");
  EXPECT_EQ(rec.tag("desc"), "");
  ASSERT_TRUE(r.next(rec));
  EXPECT_EQ(rec.id, "seq2");
  EXPECT_EQ(rec.seq, "NNNN");
  EXPECT_EQ(rec.line, 5);
  ASSERT_TRUE(r.next(rec));
  EXPECT_EQ(rec.id, "seq3");
  EXPECT_EQ(rec.seq, "GG");
  EXPECT_EQ(rec.line, 7);
  EXPECT_FALSE(r.next(rec));
  EXPECT_FALSE(r.next(rec));
  fs::remove_all(d);
}

TEST(DataReaders, FastaBadRecordsNameFileAndLineAndCanBeSkipped) {
  const std::string d = tmpdir("fastabad");
  const std::string p = write(d + "/bad.fa", "ACGT\n>a\nACG-T\n>b\n\n>\nAC\n>c\nAC\nGT\nGX\n>d\nACGT\n");
  FastaReader r(p);
  FastaRecord rec;
  EXPECT_ERROR_HAS(r.next(rec), "bad.fa:1: sequence data before the first '>' header");
  ASSERT_TRUE(r.next(rec));
  EXPECT_EQ(rec.id, "a");  // the reader does not judge characters; the loader does
  EXPECT_ERROR_HAS(r.next(rec), "bad.fa:4: FASTA record 'b' has an empty sequence");
  EXPECT_ERROR_HAS(r.next(rec), "bad.fa:6: FASTA header without a name");
  ASSERT_TRUE(r.next(rec));
  EXPECT_EQ(rec.id, "c");
  EXPECT_EQ(rec.line_of(5), 11);
  ASSERT_TRUE(r.next(rec));
  EXPECT_EQ(rec.id, "d");
  EXPECT_FALSE(r.next(rec));

  // Loader: strict stops at the first bad record; skip_bad counts all five.
  LoadOptions o;
  EXPECT_ERROR_HAS(load_fasta_files({{"x", p}}, o), "bad.fa:1: sequence data before");
  o.skip_bad = true;
  Dataset ds = load_fasta_files({{"x", p}}, o);
  EXPECT_EQ(ds.size(), 1);
  EXPECT_EQ(ds.examples[0].name, "d");
  EXPECT_EQ(ds.skipped, 5);
  ASSERT_GE(ds.notes.size(), 1u);
  EXPECT_NE(ds.notes[0].find("skipped 5 bad records"), std::string::npos) << ds.notes[0];
  bool listed_char = false;
  for (const auto& n : ds.notes) listed_char |= n.find("bad.fa:3: character '-' at position 4") != std::string::npos;
  EXPECT_TRUE(listed_char);
  fs::remove_all(d);
}

TEST(DataReaders, GzipRoundTripMultiMemberAndCorruption) {
  const std::string d = tmpdir("gz");
  std::string text;
  for (int i = 0; i < 3000; ++i) text += ">r" + std::to_string(i) + " label=" + std::to_string(i % 3) + "\nACGTTGCA\nGGN\n";
  write_gzip(d + "/a.fa.gz", text);
  EXPECT_LT(fs::file_size(d + "/a.fa.gz"), text.size() / 4);  // really compressed
  {
    auto src = open_input(d + "/a.fa.gz");
    EXPECT_EQ(read_all(*src), text);
  }
  FastaReader r(d + "/a.fa.gz");
  FastaRecord rec;
  int64_t n = 0;
  while (r.next(rec)) {
    EXPECT_EQ(rec.seq, "ACGTTGCAGGN");
    EXPECT_EQ(rec.line, 3 * n + 1);
    ++n;
  }
  EXPECT_EQ(n, 3000);
  // Detection is by magic bytes: a gzip file without .gz is read, a .gz that is plain too.
  fs::copy_file(d + "/a.fa.gz", d + "/b.fa");
  write(d + "/plain.fa.gz", ">x\nAC\n");
  EXPECT_TRUE(FastaReader(d + "/b.fa").next(rec));
  EXPECT_TRUE(FastaReader(d + "/plain.fa.gz").next(rec));
  // Concatenated members (bgzip, cat a.gz b.gz) are one stream.
  write_gzip(d + "/m1.gz", "sequence,label\nAC,0\n");
  write_gzip(d + "/m2.gz", "GT,1\n");
  std::ifstream f1(d + "/m1.gz", std::ios::binary), f2(d + "/m2.gz", std::ios::binary);
  std::string both((std::istreambuf_iterator<char>(f1)), std::istreambuf_iterator<char>());
  const std::string m1 = both;
  both.append((std::istreambuf_iterator<char>(f2)), std::istreambuf_iterator<char>());
  write(d + "/both.csv.gz", both);
  EXPECT_EQ(read_all(*open_input(d + "/both.csv.gz")), "sequence,label\nAC,0\nGT,1\n");
  Dataset ds = load_csv(d + "/both.csv.gz", LoadOptions{});
  EXPECT_EQ(ds.size(), 2);
  // Truncated, corrupt, trailing garbage: errors naming the file.
  write(d + "/trunc.gz", m1.substr(0, m1.size() - 6));
  EXPECT_ERROR_HAS(read_all(*open_input(d + "/trunc.gz")), "trunc.gz: truncated gzip data");
  std::string bad = m1;
  bad[12] = static_cast<char>(bad[12] ^ 0x55);
  bad[13] = static_cast<char>(bad[13] ^ 0x55);
  write(d + "/corrupt.gz", bad);
  EXPECT_ERROR_HAS(read_all(*open_input(d + "/corrupt.gz")), "corrupt.gz: ");
  write(d + "/trail.gz", m1 + "garbage");
  EXPECT_ERROR_HAS(read_all(*open_input(d + "/trail.gz")), "trail.gz: data after the end of the gzip stream");
  EXPECT_ERROR_HAS(open_input(d + "/missing.fa"), "cannot open " + d + "/missing.fa");
  fs::remove_all(d);
}

TEST(DataReaders, CsvQuotingBomBlankLinesAndTsv) {
  const std::string d = tmpdir("csv");
  const std::string p = write(d + "/a.csv",
                              "\xEF\xBB\xBFsequence,label,name\r\n"
                              "ACGT,0,\"plain\"\r\n"
                              "\r\n"
                              " CCGG , 1 ,\"a, \"\"quoted\"\" name\"\n"
                              "TTAA,2,\"two\nlines\"\n"
                              "GGCC,1,last");
  CsvReader r(p);
  EXPECT_EQ(r.header(), (std::vector<std::string>{"sequence", "label", "name"}));
  EXPECT_EQ(r.column("name"), 2);
  EXPECT_ERROR_HAS(r.column("seq"), "a.csv:1: no column 'seq' in the header (columns: sequence, label, name)");
  CsvRow row;
  ASSERT_TRUE(r.next(row));
  EXPECT_EQ(row.fields, (std::vector<std::string>{"ACGT", "0", "plain"}));
  EXPECT_EQ(row.line, 2);
  ASSERT_TRUE(r.next(row));
  EXPECT_EQ(row.fields, (std::vector<std::string>{"CCGG", "1", "a, \"quoted\" name"}));
  EXPECT_EQ(row.line, 4);
  ASSERT_TRUE(r.next(row));
  EXPECT_EQ(row.fields[2], "two\nlines");
  EXPECT_EQ(row.line, 5);
  ASSERT_TRUE(r.next(row));
  EXPECT_EQ(row.fields, (std::vector<std::string>{"GGCC", "1", "last"}));
  EXPECT_EQ(row.line, 7);
  EXPECT_FALSE(r.next(row));
  EXPECT_EQ(r.blank_lines(), 1);

  write(d + "/t.tsv", "sequence\tlabel\nAC GT\t1\n");  // a space is data in TSV, not a delimiter
  CsvReader t(d + "/t.tsv");
  EXPECT_EQ(t.delimiter(), '\t');
  ASSERT_TRUE(t.next(row));
  EXPECT_EQ(row.fields, (std::vector<std::string>{"AC GT", "1"}));

  write(d + "/bad.csv", "sequence,label\nACGT,1\nACGT\nAC,1,x\n\"AC\"x,1\nAC,\"1\n");
  CsvReader b(d + "/bad.csv");
  ASSERT_TRUE(b.next(row));
  EXPECT_ERROR_HAS(b.next(row), "bad.csv:3: 1 field, but the header has 2 (sequence,label)");
  EXPECT_ERROR_HAS(b.next(row), "bad.csv:4: 3 fields, but the header has 2");
  EXPECT_ERROR_HAS(b.next(row), "bad.csv:5: text after the closing quote of field 1");
  EXPECT_ERROR_HAS(b.next(row), "bad.csv:6: a quote opened here is never closed");
  EXPECT_FALSE(b.next(row));

  write(d + "/dup.csv", "sequence,label,label\n");
  EXPECT_ERROR_HAS(CsvReader(d + "/dup.csv"), "dup.csv:1: column 'label' appears twice");
  write(d + "/empty.csv", "\n\n");
  EXPECT_ERROR_HAS(CsvReader(d + "/empty.csv"), "empty.csv: empty file: no header line");
  fs::remove_all(d);
}

TEST(DataReaders, LongLinesAndMissingFinalNewline) {
  std::string seq(300000, 'A');
  for (size_t i = 0; i < seq.size(); i += 7) seq[i] = 'C';
  const std::string text = ">long\n" + seq + "\n>short\nAC";
  FastaReader r(memory_input(text, "mem.fa"), "mem.fa");
  FastaRecord rec;
  ASSERT_TRUE(r.next(rec));
  EXPECT_EQ(rec.seq, seq);
  ASSERT_TRUE(r.next(rec));
  EXPECT_EQ(rec.seq, "AC");
  EXPECT_FALSE(r.next(rec));
}

// ---- loaders -----------------------------------------------------------------------------

TEST(DataLoad, NucleotideTransformerCsvLayoutAndIupacCount) {
  const std::string d = tmpdir("nt");
  write(d + "/promoter_all/train.csv",
        "sequence,label,name\nACRYGT,0,s1\nAAAA,1,s2\nNNSW,0,s3\nCCCC,1,s4\nGGGG,10,s5\nTTTT,2,s6\n");
  write_gzip(d + "/promoter_all/test.csv.gz", "sequence,label,name\nACGT,10,t1\nAC,0,t2\nGG,1,t3\nTT,2,t4\n");
  Dataset tr, te;
  load_nt_task(d, "promoter_all", LoadOptions{}, &tr, &te);
  EXPECT_EQ(tr.size(), 6);
  EXPECT_EQ(te.size(), 4);
  // Integer labels in numeric order (10 after 2).
  EXPECT_EQ(tr.label_names, (std::vector<std::string>{"0", "1", "2", "10"}));
  EXPECT_EQ(te.label_names, tr.label_names);
  EXPECT_EQ(tr.num_labels, 4);
  EXPECT_EQ(tr.examples[4].label, 3);
  EXPECT_EQ(te.examples[0].label, 3);
  EXPECT_EQ(tr.examples[0].ids, (std::vector<int32_t>{1, 2, 5, 5, 3, 4}));
  EXPECT_EQ(tr.examples[0].name, "s1");
  EXPECT_EQ(tr.token_stats.iupac_to_n, 4);
  ASSERT_EQ(tr.notes.size(), 1u);
  EXPECT_NE(tr.notes[0].find("train.csv: 4 IUPAC ambiguity codes (R Y S W K M B D H V) read as N"), std::string::npos)
      << tr.notes[0];
  EXPECT_ERROR_HAS(load_nt_task(d, "H3", LoadOptions{}, &tr, &te), "task 'H3': no train file");
  EXPECT_EQ(nt_task_names().size(), 18u);
  fs::remove_all(d);
}

TEST(DataLoad, BadDataErrorsNameFileAndLine) {
  const std::string d = tmpdir("bad");
  LoadOptions o;
  write(d + "/few.csv", "sequence,label\nACGT,1\nACGT,0\nACGT\n");
  EXPECT_ERROR_HAS(load_csv(d + "/few.csv", o), "few.csv:4: 1 field, but the header has 2");
  write(d + "/empty.csv", "sequence,label\nACGT,1\n,0\n");
  EXPECT_ERROR_HAS(load_csv(d + "/empty.csv", o), "empty.csv:3: empty sequence");
  write(d + "/char.csv", "sequence,label\nACGT,1\nAC.GT,0\n");
  EXPECT_ERROR_HAS(load_csv(d + "/char.csv", o), "char.csv:3: character '.' at position 3 is not a nucleotide");
  write(d + "/nolabel.csv", "sequence,label\nACGT,1\nACGT,\n");
  EXPECT_ERROR_HAS(load_csv(d + "/nolabel.csv", o), "nolabel.csv:3: empty label");
  write(d + "/cols.csv", "seq,label\nACGT,1\n");
  EXPECT_ERROR_HAS(load_csv(d + "/cols.csv", o), "cols.csv:1: no column 'sequence' in the header (columns: seq, label)");
  LoadOptions fixed = o;
  fixed.labels = {"0", "1"};
  write(d + "/unk.csv", "sequence,label\nACGT,1\nACGT,0\nACGT,2\n");
  EXPECT_ERROR_HAS(load_csv(d + "/unk.csv", fixed), "unk.csv:4: unknown label '2' (known: 0, 1)");
  // FASTA: the exact line of the bad character inside a multi-line record.
  write(d + "/x.fa", ">r1 label=a\nACGT\n>r2 label=b\nACGT\nACXT\n");
  EXPECT_ERROR_HAS(load_fasta(d + "/x.fa", o), "x.fa:5: character 'X' at position 7");
  write(d + "/nolab.fa", ">r1 label=a\nACGT\n>r2\nACGT\n");
  EXPECT_ERROR_HAS(load_fasta(d + "/nolab.fa", o), "nolab.fa:3: record 'r2' has no 'label=' in its header");
  // Train and test label sets that differ, in both directions.
  write(d + "/train.csv", "sequence,label\nAC,0\nGT,1\nCC,2\n");
  write(d + "/test_more.csv", "sequence,label\nAC,0\nGT,1\nCC,2\nGG,3\n");
  write(d + "/test_less.csv", "sequence,label\nAC,0\nGT,1\n");
  Dataset tr, te;
  EXPECT_ERROR_HAS(load_train_test(d + "/train.csv", d + "/test_more.csv", o, &tr, &te),
                   "test_more.csv:5: unknown label '3' (known: 0, 1, 2)");
  const std::string m = error_of([&] { load_train_test(d + "/train.csv", d + "/test_less.csv", o, &tr, &te); });
  EXPECT_NE(m.find("label sets of " + d + "/train.csv and " + d + "/test_less.csv differ: only in " + d +
                   "/train.csv: 2"),
            std::string::npos)
      << m;
  // Regression: a target that is not a number.
  LoadOptions reg = o;
  reg.target = TargetKind::Regression;
  reg.target_columns = {"half_life"};
  write(d + "/reg.csv", "sequence,half_life\nACGT,1.5\nACGT,abc\n");
  EXPECT_ERROR_HAS(load_csv(d + "/reg.csv", reg), "reg.csv:3: half_life 'abc' is not a finite number");
  write(d + "/reg2.csv", "sequence,half_life\nACGT,nan\n");
  EXPECT_ERROR_HAS(load_csv(d + "/reg2.csv", reg), "reg2.csv:2: half_life 'nan' is not a finite number");
  // k-mer longer than the sequence.
  LoadOptions k6 = o;
  k6.tokenizer = SeqTokenizer::kmer(6);
  EXPECT_ERROR_HAS(load_csv(d + "/train.csv", k6), "train.csv:2: a sequence of 2 bases is shorter than one kmer");
  fs::remove_all(d);
}

TEST(DataLoad, SkipBadCountsEveryKindOfBadRecord) {
  const std::string d = tmpdir("skip");
  const std::string p = write(d + "/mixed.csv",
                              "sequence,label\nACGT,0\nACGT\n,1\nAC.GT,0\nGGCC,1\nAC,1,extra\nTTTT,\n\"AC,1\n");
  LoadOptions o;
  EXPECT_ERROR_HAS(load_csv(p, o), "mixed.csv:3:");
  o.skip_bad = true;
  Dataset ds = load_csv(p, o);
  EXPECT_EQ(ds.size(), 2);
  EXPECT_EQ(ds.skipped, 6);
  EXPECT_EQ(ds.label_names, (std::vector<std::string>{"0", "1"}));
  ASSERT_EQ(ds.notes.size(), 4u);  // the count, then the first three messages
  EXPECT_EQ(ds.notes[0], p + ": skipped 6 bad records (skip_bad)");
  EXPECT_NE(ds.notes[1].find("mixed.csv:3: 1 field"), std::string::npos) << ds.notes[1];
  EXPECT_NE(ds.notes[2].find("mixed.csv:4: empty sequence"), std::string::npos) << ds.notes[2];
  EXPECT_NE(ds.notes[3].find("mixed.csv:5: character '.'"), std::string::npos) << ds.notes[3];
  // A label seen only on a skipped record does not become a class.
  write(d + "/onlybad.csv", "sequence,label\nACGT,0\nGGGG,1\nAXGT,7\n");
  Dataset ob = load_csv(d + "/onlybad.csv", o);
  EXPECT_EQ(ob.label_names, (std::vector<std::string>{"0", "1"}));
  EXPECT_EQ(ob.skipped, 1);
  write(d + "/allbad.csv", "sequence,label\nAXGT,0\n");
  EXPECT_ERROR_HAS(load_csv(d + "/allbad.csv", o), "allbad.csv: no usable records (1 skipped as bad)");
  fs::remove_all(d);
}

TEST(DataLoad, RegressionMultiLabelAndCodonRecords) {
  const std::string d = tmpdir("kinds");
  LoadOptions reg;
  reg.target = TargetKind::Regression;
  reg.target_columns = {"half_life", "te"};
  reg.tokenizer = SeqTokenizer::codon(0);
  write(d + "/mrna.tsv", "id\tsequence\thalf_life\tte\nm1\tAUGAAAUAA\t3.25\t-1\nm2\tATGTTTTAAG\t0.5\t2e1\n");
  LoadOptions r2 = reg;
  r2.name_column = "id";
  Dataset r = load_csv(d + "/mrna.tsv", r2);
  EXPECT_EQ(r.target, TargetKind::Regression);
  EXPECT_EQ(r.num_labels, 2);
  EXPECT_EQ(r.label_names, (std::vector<std::string>{"half_life", "te"}));
  EXPECT_EQ(r.examples[0].targets, (std::vector<float>{3.25f, -1.0f}));
  EXPECT_EQ(r.examples[1].targets, (std::vector<float>{0.5f, 20.0f}));
  EXPECT_EQ(r.examples[0].ids, (std::vector<int32_t>{16, 2, 50}));  // AUG AAA UAA
  EXPECT_EQ(r.examples[1].name, "m2");
  EXPECT_EQ(r.vocab_size, 66);
  EXPECT_EQ(r.token_stats.partial_codon_bases, 1);
  ASSERT_EQ(r.notes.size(), 1u);
  EXPECT_NE(r.notes[0].find("1 trailing bases in 1 sequences form no whole codon(frame 0) token"), std::string::npos)
      << r.notes[0];

  LoadOptions ml;
  ml.target = TargetKind::MultiLabel;
  ml.label_columns = {"H3", "H4", "K27"};
  write(d + "/ml.csv", "sequence,H3,H4,K27\nACGT,1,0,1\nGGGG,0,0,0\nCCCC,0,1,0\n");
  Dataset m = load_csv(d + "/ml.csv", ml);
  EXPECT_TRUE(m.multi_label());
  EXPECT_EQ(m.num_labels, 3);
  EXPECT_EQ(m.label_names, ml.label_columns);
  EXPECT_EQ(m.examples[0].targets, (std::vector<float>{1, 0, 1}));
  EXPECT_EQ(m.examples[1].targets, (std::vector<float>{0, 0, 0}));
  write(d + "/ml_bad.csv", "sequence,H3,H4,K27\nACGT,1,0,2\n");
  EXPECT_ERROR_HAS(load_csv(d + "/ml_bad.csv", ml), "ml_bad.csv:2: multi-label column 'K27' must be 0 or 1, got '2'");

  LoadOptions sep;
  sep.target = TargetKind::MultiLabel;
  sep.label_separator = ";";
  write(d + "/sep.fa", ">a label=tata;cpg\nACGT\n>b label=cpg\nGGCG\n>c label=enh\nTTTT\n");
  Dataset s = load_fasta(d + "/sep.fa", sep);
  EXPECT_EQ(s.label_names, (std::vector<std::string>{"cpg", "enh", "tata"}));
  EXPECT_EQ(s.examples[0].targets, (std::vector<float>{1, 0, 1}));
  EXPECT_EQ(s.examples[1].targets, (std::vector<float>{1, 0, 0}));
  EXPECT_EQ(s.examples[2].targets, (std::vector<float>{0, 1, 0}));

  LoadOptions fr;
  fr.target = TargetKind::Regression;
  write(d + "/hl.fa", ">a label=1.5\nACGT\n>b label=-2\nGG\n");
  Dataset f = load_fasta(d + "/hl.fa", fr);
  EXPECT_EQ(f.examples[1].targets, (std::vector<float>{-2.0f}));
  EXPECT_EQ(f.label_names, (std::vector<std::string>{"label"}));
  fs::remove_all(d);
}

TEST(DataLoad, RealPromoterFilesAndThePublishedSplit) {
  if (!fs::exists(kPromoters + "/ecoli_sigma70_promoters.fa")) GTEST_SKIP() << kPromoters << " is not here";
  LoadOptions o;
  Dataset ec = load_fasta_pair(kPromoters + "/ecoli_sigma70_promoters.fa", kPromoters + "/ecoli_nonpromoters.fa", o,
                               "promoter", "non_promoter");
  Dataset bs = load_fasta_pair(kPromoters + "/bsubtilis_promoters.fa", kPromoters + "/bsubtilis_nonpromoters.fa", o,
                               "promoter", "non_promoter");
  EXPECT_EQ(ec.label_names, (std::vector<std::string>{"non_promoter", "promoter"}));
  auto count = [](const Dataset& d, int32_t label) {
    int64_t n = 0;
    for (const auto& e : d.examples) n += e.label == label;
    return n;
  };
  // Counted in the files: E. coli 839 σ70 promoters (two lines each, 60 + 21 nt) and
  // 3000 non-promoters; B. subtilis 373 and 1000; all 81 nt, pure ACGT.
  EXPECT_EQ(ec.size(), 3839);
  EXPECT_EQ(count(ec, 1), 839);
  EXPECT_EQ(count(ec, 0), 3000);
  EXPECT_EQ(bs.size(), 1373);
  EXPECT_EQ(count(bs, 1), 373);
  EXPECT_EQ(count(bs, 0), 1000);
  for (const Dataset* d : {&ec, &bs}) {
    for (const auto& e : d->examples) ASSERT_EQ(e.ids.size(), 81u) << e.name;
    EXPECT_EQ(d->token_stats.iupac_to_n, 0);
    EXPECT_TRUE(d->notes.empty());
  }
  // Negatives first (class 0), then positives, each in file order; ids from the headers.
  EXPECT_EQ(ec.examples[0].name, "6400");
  EXPECT_EQ(ec.examples[3000].name, "ECK120010467__accAp__forward__208411");
  EXPECT_EQ(ec.examples[3000].label, 1);
  // The published 80/20 stratified split, seed 7: 3071/768 and 1098/275.
  Dataset tr, te;
  split_train_val_test(ec, 0.0, 0.2, 7, &tr, nullptr, &te);
  EXPECT_EQ(tr.size(), 3071);
  EXPECT_EQ(te.size(), 768);
  EXPECT_EQ(count(te, 1), 168);  // round(839 · 0.2) = round(167.8)
  EXPECT_EQ(count(te, 0), 600);
  split_train_val_test(bs, 0.0, 0.2, 7, &tr, nullptr, &te);
  EXPECT_EQ(tr.size(), 1098);
  EXPECT_EQ(te.size(), 275);
  EXPECT_EQ(count(te, 1), 75);  // round(74.6)
  EXPECT_EQ(count(te, 0), 200);
}

// ---- splits ------------------------------------------------------------------------------

TEST(DataSplit, StratifiedThreeWayIsDeterministicDisjointAndOrdered) {
  Dataset all = make_synthetic("motif", 203, 16, 3);  // 102 of class 0, 101 of class 1
  for (int64_t i = 0; i < all.size(); ++i) all.examples[i].name = std::to_string(i);
  Dataset tr, va, te;
  split_train_val_test(all, 0.1, 0.25, 5, &tr, &va, &te);
  // class 0: test round(25.5) = 26, val round(10.2) = 10; class 1: test round(25.25) = 25, val round(10.1) = 10.
  EXPECT_EQ(te.size(), 51);
  EXPECT_EQ(va.size(), 20);
  EXPECT_EQ(tr.size(), 132);
  std::set<std::string> seen;
  for (const Dataset* d : {&tr, &va, &te}) {
    for (int64_t i = 0; i < d->size(); ++i) {
      EXPECT_TRUE(seen.insert(d->examples[i].name).second);
      if (i > 0) {
        EXPECT_LT(std::stoi(d->examples[i - 1].name), std::stoi(d->examples[i].name));  // file order
      }
    }
  }
  EXPECT_EQ(seen.size(), 203u);
  // Same seed, same parts; the test part does not depend on val_fraction.
  Dataset tr2, va2, te2;
  split_train_val_test(all, 0.3, 0.25, 5, &tr2, &va2, &te2);
  ASSERT_EQ(te2.size(), te.size());
  for (int64_t i = 0; i < te.size(); ++i) EXPECT_EQ(te2.examples[i].name, te.examples[i].name);
  split_train_val_test(all, 0.1, 0.25, 6, &tr2, &va2, &te2);
  int64_t same = 0;
  for (int64_t i = 0; i < te.size(); ++i) same += te2.examples[i].name == te.examples[i].name;
  EXPECT_LT(same, te.size());
  EXPECT_THROW(split_train_val_test(all, 0.5, 0.5, 1, &tr, &va, &te), Error);
  // The two-way helper the trainer tests use: 25% of 480 balanced = 120.
  Dataset m = make_synthetic("motif", 480, 20, 1);
  stratified_split(m, 0.25, 3, &tr, &va);
  EXPECT_EQ(va.size(), 120);
  EXPECT_EQ(tr.size(), 360);
}

TEST(DataSplit, KFoldPartitionsStratified) {
  Dataset all = make_synthetic("motif", 103, 16, 4);
  const auto f = kfold_assignment(all, 5, 9);
  std::map<int64_t, int64_t> size;
  std::map<std::pair<int64_t, int32_t>, int64_t> per_class;
  for (int64_t i = 0; i < all.size(); ++i) ++size[f[i]], ++per_class[{f[i], all.examples[i].label}];
  ASSERT_EQ(size.size(), 5u);
  for (auto [k, n] : size) EXPECT_TRUE(n == 20 || n == 21) << "fold " << k << ": " << n;
  for (auto [k, n] : per_class) EXPECT_TRUE(n == 10 || n == 11) << n;
  Dataset tr, va;
  int64_t total_val = 0;
  for (int64_t k = 0; k < 5; ++k) {
    kfold_split(all, 5, k, 9, &tr, &va);
    EXPECT_EQ(tr.size() + va.size(), 103);
    EXPECT_EQ(va.size(), size[k]);
    total_val += va.size();
  }
  EXPECT_EQ(total_val, 103);
  EXPECT_THROW(kfold_split(all, 5, 5, 9, &tr, &va), Error);
  EXPECT_THROW(kfold_assignment(all, 1, 9), Error);
}

TEST(DataSplit, RegressionStratifiesByQuintile) {
  Dataset d;
  d.target = TargetKind::Regression;
  d.num_labels = 1;
  for (int i = 0; i < 100; ++i) {
    Example e;
    e.ids = {1};
    e.targets = {static_cast<float>((i * 37) % 100)};
    d.examples.push_back(e);
  }
  const auto s = strata(d);
  std::map<int64_t, int64_t> n;
  for (int64_t i = 0; i < 100; ++i) {
    ++n[s[i]];
    EXPECT_EQ(s[i], static_cast<int64_t>(d.examples[i].targets[0]) / 20);
  }
  EXPECT_EQ(n.size(), 5u);
  Dataset tr, te;
  split_train_val_test(d, 0, 0.2, 1, &tr, nullptr, &te);
  EXPECT_EQ(te.size(), 20);
  std::map<int64_t, int64_t> per;
  for (const auto& e : te.examples) ++per[static_cast<int64_t>(e.targets[0]) / 20];
  for (auto [q, c] : per) EXPECT_EQ(c, 4) << "quintile " << q;
}

// ---- batching ----------------------------------------------------------------------------

TEST(DataBatch, SamplerMatchesTheTrainerOrderAndResumes) {
  Dataset d = make_synthetic("motif", 45, 16, 2);
  BatchingOptions o;
  o.batch_size = 8;
  o.seed = 77;
  BatchSampler s(d, o);
  EXPECT_EQ(s.steps_per_epoch(), 6);
  // Trainer::batch_indices: permutation from Rng::derive(seed, 1000003 + epoch).
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> perm(45);
    for (int64_t i = 0; i < 45; ++i) perm[i] = i;
    Rng rng = Rng::derive(77, 1000003 + epoch);
    for (int64_t i = 44; i > 0; --i) std::swap(perm[i], perm[rng.below(i + 1)]);
    std::vector<int64_t> got;
    for (int64_t j = 0; j < 6; ++j) {
      auto b = s.indices(epoch * 6 + j);
      EXPECT_EQ(b.size(), j < 5 ? 8u : 5u);
      got.insert(got.end(), b.begin(), b.end());
    }
    EXPECT_EQ(got, perm);
  }
  // A fresh sampler (a resumed run) at step 13 gives the same batch.
  BatchSampler fresh(d, o);
  EXPECT_EQ(fresh.indices(13), s.indices(13));
}

TEST(DataBatch, LengthBucketingCoversEveryExampleWithLessPadding) {
  Dataset d;
  Rng rng(5);
  for (int i = 0; i < 200; ++i) {
    Example e;
    e.ids.assign(10 + rng.below(200), 1);
    e.label = i % 2;
    d.examples.push_back(e);
  }
  BatchingOptions o;
  o.batch_size = 10;
  o.seed = 3;
  BatchSampler plain(d, o);
  o.bucket = true;
  o.bucket_batches = 5;
  BatchSampler bucketed(d, o);
  auto padding = [&](BatchSampler& s, int64_t epoch) {
    int64_t pad = 0;
    std::vector<int64_t> all;
    for (int64_t j = 0; j < s.steps_per_epoch(); ++j) {
      Batch b = s.batch(epoch * s.steps_per_epoch() + j, HeadKind::SequenceClassification);
      for (uint8_t m : b.mask) pad += m == 0;
      auto idx = s.indices(epoch * s.steps_per_epoch() + j);
      all.insert(all.end(), idx.begin(), idx.end());
    }
    std::sort(all.begin(), all.end());
    for (int64_t i = 0; i < 200; ++i) EXPECT_EQ(all[i], i);
    return pad;
  };
  const int64_t p_plain = padding(plain, 0), p_bucket = padding(bucketed, 0);
  EXPECT_LT(p_bucket * 2, p_plain) << p_bucket << " vs " << p_plain;
  padding(bucketed, 1);
  BatchSampler again(d, o);
  EXPECT_EQ(again.indices(27), bucketed.indices(27));
  EXPECT_NE(bucketed.indices(0), bucketed.indices(20));  // epochs differ
}

TEST(DataBatch, RandomCropTruncateAndReverseComplement) {
  Dataset d;
  Rng gen(11);
  for (int i = 0; i < 4; ++i) {
    Example e;
    for (int t = 0; t < 50; ++t) e.ids.push_back(1 + static_cast<int32_t>(gen.below(4)));  // windows are unique
    e.label = i % 2;
    d.examples.push_back(e);
  }
  d.examples[3].ids.resize(12);  // shorter than max_len: never cropped
  const std::vector<int64_t> idx{0, 1, 2, 3};
  BatchingOptions o;
  o.max_len = 20;
  Batch t = make_batch(d, idx, o, HeadKind::SequenceClassification, 0);
  EXPECT_EQ(t.len, 20);
  for (int64_t c = 0; c < 20; ++c) EXPECT_EQ(t.ids[c], d.examples[0].ids[c]);
  o.crop = CropMode::Random;
  std::set<int64_t> starts;
  for (int64_t step = 0; step < 30; ++step) {
    Batch b = make_batch(d, idx, o, HeadKind::SequenceClassification, step);
    Batch b2 = make_batch(d, idx, o, HeadKind::SequenceClassification, step);
    EXPECT_EQ(b.ids, b2.ids);  // (seed, step) decides
    EXPECT_EQ(b.labels, (std::vector<int32_t>{0, 1, 0, 1}));
    for (int64_t r = 0; r < 3; ++r) {
      // The window is a contiguous piece of the example.
      const auto& src = d.examples[r].ids;
      auto it = std::search(src.begin(), src.end(), b.ids.begin() + r * 20, b.ids.begin() + r * 20 + 20);
      ASSERT_NE(it, src.end());
      if (r == 0) starts.insert(it - src.begin());
    }
    for (int64_t c = 0; c < 20; ++c) EXPECT_EQ(b.mask[3 * 20 + c], c < 12);
  }
  EXPECT_GT(starts.size(), 5u);
  // Reverse complement: about half the rows, each exactly the reverse complement.
  o.crop = CropMode::Truncate;
  o.max_len = 0;
  o.rc_augment = true;
  int64_t flipped = 0, rows = 0;
  for (int64_t step = 0; step < 50; ++step) {
    Batch b = make_batch(d, idx, o, HeadKind::SequenceClassification, step);
    for (int64_t r = 0; r < 4; ++r, ++rows) {
      const auto& e = d.examples[r].ids;
      std::vector<int32_t> row(b.ids.begin() + r * b.len, b.ids.begin() + r * b.len + e.size());
      if (row == e) continue;
      EXPECT_EQ(row, d.tokenizer.reverse_complement(e));
      ++flipped;
    }
  }
  EXPECT_GT(flipped, rows * 35 / 100);
  EXPECT_LT(flipped, rows * 65 / 100);
  Dataset codon = d;
  codon.tokenizer = SeqTokenizer::codon();
  EXPECT_ERROR_HAS(make_batch(codon, idx, o, HeadKind::SequenceClassification, 0), "no reverse complement");
  Dataset sym = make_synthetic("induction", 4, 32, 1);
  EXPECT_ERROR_HAS(make_batch(sym, idx, o, HeadKind::TokenClassification, 0), "needs DNA tokens");
}

TEST(DataBatch, TokenLabelsFollowTheCropAndMultiLabelTargets) {
  Dataset d = make_synthetic("selective_copy", 3, 64, 1);
  BatchingOptions o;
  o.max_len = 40;
  o.crop = CropMode::Random;
  Batch b = make_batch(d, {0, 1, 2}, o, HeadKind::TokenClassification, 4);
  Rng rng = Rng::derive(o.seed, kAugmentStream + 4);  // the windows make_batch drew
  int64_t labelled = 0, markers = 0;
  for (int64_t r = 0; r < 3; ++r) {
    const auto& e = d.examples[r];
    const int64_t start = static_cast<int64_t>(rng.below(64 - 40 + 1));
    markers += std::max<int64_t>(0, std::min<int64_t>(start + 40, 64) - std::max<int64_t>(start, 56));
    for (int64_t c = 0; c < 40; ++c) {
      EXPECT_EQ(b.ids[r * 40 + c], e.ids[start + c]);
      EXPECT_EQ(b.labels[r * 40 + c], e.token_labels[start + c]);
      labelled += b.labels[r * 40 + c] != kIgnoreIndex;
    }
  }
  EXPECT_EQ(labelled, markers);  // the copy markers (last 8 positions) inside each window
  Dataset m;
  m.target = TargetKind::MultiLabel;
  m.num_labels = 3;
  m.examples = {Example{{1, 2}, 0, {}, {1, 0, 1}, ""}, Example{{3}, 0, {}, {0, 1, 0}, ""}};
  Batch mb = make_batch(m, {0, 1}, 0, HeadKind::SequenceClassification);
  EXPECT_TRUE(mb.multi_label);
  EXPECT_TRUE(mb.labels.empty());
  EXPECT_EQ(mb.targets, (std::vector<float>{1, 0, 1, 0, 1, 0}));
  EXPECT_ERROR_HAS(make_batch(m, {0}, 0, HeadKind::Regression), "multi-label: it needs a sequence classification head");
}

// ---- synthetic tasks ---------------------------------------------------------------------

TEST(DataSynthetic, SpliceSelectiveCopyAndInduction) {
  auto has = [](const std::vector<int32_t>& ids, const std::string& m, int64_t from) {
    const auto mm = encode_nucleotides(m);
    for (int64_t i = from; i + static_cast<int64_t>(mm.size()) <= static_cast<int64_t>(ids.size()); ++i)
      if (std::equal(mm.begin(), mm.end(), ids.begin() + i)) return i;
    return int64_t{-1};
  };
  Dataset s = make_synthetic("splice", 300, 120, 4);
  int64_t pos = 0, wrong_order = 0, lone = 0;
  for (const auto& e : s.examples) {
    const int64_t dn = has(e.ids, "GTAAGT", 0);
    const bool ordered = dn >= 0 && has(e.ids, "TTTTCAG", dn + 6) >= 0;
    EXPECT_EQ(ordered, e.label == 1);
    pos += e.label;
    if (!e.label) (dn >= 0 && has(e.ids, "TTTTCAG", 0) >= 0 ? wrong_order : lone)++;
  }
  EXPECT_EQ(pos, 150);
  EXPECT_GT(wrong_order, 30);  // the order itself must be learnt
  EXPECT_GT(lone, 60);
  const Dataset s2 = make_synthetic("splice", 300, 120, 4);
  EXPECT_EQ(s2.examples[17].ids, s.examples[17].ids);

  Dataset c = make_synthetic("selective_copy", 20, 64, 2);
  EXPECT_EQ(c.target, TargetKind::Token);
  EXPECT_EQ(c.vocab_size, 7);
  EXPECT_FALSE(c.dna);
  for (const auto& e : c.examples) {
    std::vector<int32_t> data, answers;
    for (int64_t t = 0; t < 56; ++t)
      if (e.ids[t] != 5) data.push_back(e.ids[t] - 1);
    for (int64_t t = 0; t < 64; ++t) {
      EXPECT_EQ(e.ids[t] == 6, t >= 56);
      if (e.token_labels[t] != kIgnoreIndex) answers.push_back(e.token_labels[t]);
    }
    EXPECT_EQ(data, answers);  // the data bases, in order
    EXPECT_EQ(answers.size(), 8u);
  }
  Dataset ind = make_synthetic("induction", 20, 48, 3);
  EXPECT_EQ(ind.vocab_size, 6);
  for (const auto& e : ind.examples) {
    int64_t p = -1, n_trig = 0, labelled = 0;
    for (int64_t t = 0; t < 48; ++t) {
      if (e.ids[t] == 5) {
        ++n_trig;
        if (p < 0) p = t;
      }
      labelled += e.token_labels[t] != kIgnoreIndex;
    }
    EXPECT_EQ(n_trig, 2);
    EXPECT_EQ(labelled, 1);
    EXPECT_LT(p, 24);
    EXPECT_EQ(e.token_labels[47], e.ids[p + 1] - 1);
  }
  // long_range: both motifs in every sequence, one per end quarter; the label is their order.
  Dataset lr = make_synthetic("long_range", 200, 128, 6);
  int64_t x_first = 0;
  for (const auto& e : lr.examples) {
    const int64_t x = has(e.ids, "GGATCC", 0), y = has(e.ids, "CTGCAG", 0);
    ASSERT_GE(x, 0);
    ASSERT_GE(y, 0);
    EXPECT_EQ(e.label == 1, x < y);
    EXPECT_LT(std::min(x, y), 32);
    EXPECT_GE(std::max(x, y), 96);
    x_first += e.label;
  }
  EXPECT_EQ(x_first, 100);
  // Sequence-level forms: the same induction sequences with the answer as the class;
  // selective_copy_seq's class is the ordered pair of the only two non-noise bases.
  Dataset inds = make_synthetic("induction_seq", 20, 48, 3);
  EXPECT_EQ(inds.target, TargetKind::Classification);
  EXPECT_EQ(inds.num_labels, 4);
  for (size_t i = 0; i < inds.examples.size(); ++i) {
    EXPECT_EQ(inds.examples[i].ids, ind.examples[i].ids);
    EXPECT_EQ(inds.examples[i].label, ind.examples[i].token_labels[47]);
    EXPECT_TRUE(inds.examples[i].token_labels.empty());
  }
  Dataset cs = make_synthetic("selective_copy_seq", 64, 40, 5);
  EXPECT_EQ(cs.target, TargetKind::Classification);
  EXPECT_EQ(cs.num_labels, 16);
  EXPECT_EQ(cs.label_names[6], "CG");
  EXPECT_FALSE(cs.dna);
  std::vector<int> per_class(16, 0);
  for (const auto& e : cs.examples) {
    std::vector<int32_t> data;
    for (int32_t id : e.ids)
      if (id != 5) data.push_back(id - 1);
    ASSERT_EQ(data.size(), 2u);
    EXPECT_EQ(e.label, data[0] * 4 + data[1]);
    ++per_class[e.label];
  }
  EXPECT_EQ(per_class, std::vector<int>(16, 4));
  EXPECT_ERROR_HAS(make_synthetic("selective_copy_seq", 4, 7, 1), "length must be >= 8");
  // mrna_stability: codon tokens of a coding sequence, one real target per sequence.
  Dataset mr = make_synthetic("mrna_stability", 400, 30, 8);
  EXPECT_EQ(mr.target, TargetKind::Regression);
  EXPECT_EQ(mr.vocab_size, 66);
  EXPECT_EQ(mr.tokenizer.name(), "codon(frame 0)");
  double mean = 0, sq = 0;
  for (const auto& e : mr.examples) {
    ASSERT_EQ(e.ids.size(), 30u);
    const std::string cds = mr.tokenizer.decode(e.ids);
    EXPECT_EQ(cds.substr(0, 3), "ATG");
    const std::string stop = cds.substr(87);
    EXPECT_TRUE(stop == "TAA" || stop == "TAG" || stop == "TGA") << stop;
    for (size_t k = 3; k + 3 < cds.size(); k += 3) {
      const std::string c = cds.substr(k, 3);
      EXPECT_TRUE(c != "TAA" && c != "TAG" && c != "TGA") << "stop codon inside the CDS at " << k;
    }
    ASSERT_EQ(e.targets.size(), 1u);
    mean += e.targets[0] / 400.0;
    sq += e.targets[0] * e.targets[0] / 400.0;
  }
  EXPECT_NEAR(mean, 2.0, 0.5);
  EXPECT_GT(std::sqrt(sq - mean * mean), 0.3);  // codon-usage bias spreads the targets
  EXPECT_EQ(make_synthetic("mrna_stability", 5, 30, 8).examples[4].ids, mr.examples[4].ids);
  EXPECT_ERROR_HAS(make_synthetic("copying", 4, 64, 1),
                   "known: motif, long_range, splice, selective_copy, induction, selective_copy_seq, induction_seq, "
                   "mrna_stability");
}

// ---- multi-label loss --------------------------------------------------------------------

TEST(DataMultiLabel, BceWithLogitsLossAndGradientMatchFiniteDifferences) {
  ModelConfig c = seed001_classifier(3);
  c.mamba.d_model = 8;
  c.mamba.n_layer = 1;
  c.mamba.d_state = 4;
  c.head_dropout = 0;
  Model m(c, 5);
  Dataset d;
  d.target = TargetKind::MultiLabel;
  d.num_labels = 3;
  d.examples = {Example{{1, 2, 3, 4}, 0, {}, {1, 0, 1}, ""}, Example{{4, 4, 2}, 0, {}, {0, 0, 1}, ""}};
  Batch b = make_batch(d, {0, 1}, 0, HeadKind::SequenceClassification);
  const Tensor& out = m.forward(b, true);
  double expect = 0;
  for (int64_t i = 0; i < 6; ++i) {
    const double z = out.data()[i], y = b.targets[i], p = 1 / (1 + std::exp(-z));
    expect -= y * std::log(p) + (1 - y) * std::log(1 - p);
  }
  EXPECT_NEAR(m.loss(b), expect / 6, 1e-6);
  m.zero_grad();
  m.backward(b);
  // Central differences in the classifier's bias and a few of its weights.
  std::vector<std::pair<Param*, int64_t>> probes;
  for (int64_t k = 0; k < 3; ++k) probes.emplace_back(m.head_b.get(), k);
  for (int64_t k : {0, 5, 13, 22}) probes.emplace_back(m.head_w.get(), k);
  probes.emplace_back(&m.backbone.embedding, 9);
  for (auto [p, k] : probes) {
    const float w0 = p->w[k], h = 1e-3f;
    p->w[k] = w0 + h;
    m.forward(b, true);
    const double lp = m.loss(b);
    p->w[k] = w0 - h;
    m.forward(b, true);
    const double lm = m.loss(b);
    p->w[k] = w0;
    const double num = (lp - lm) / (2 * h);
    EXPECT_NEAR(p->g[k], num, 2e-4 + 2e-3 * std::abs(num)) << p->name << "[" << k << "]";
  }
  EXPECT_GT(std::abs(m.head_b->g[0]), 1e-3);  // a real gradient, not a vacuous zero
  b.targets.pop_back();
  EXPECT_ERROR_HAS(m.loss(b), "multi-label targets, expected 6");
}

// ---- run config --------------------------------------------------------------------------

TEST(DataRunConfig, DataSectionsLoadAndBadKeysAreErrors) {
  const std::string d = tmpdir("cfg");
  const std::string model = "model:\n  d_model: 16\n  n_layer: 1\ntrain:\n  epochs: 1\n";
  // The shipped default still loads and builds its synthetic sets.
  RunConfig def = load_run_config(std::string(MAMBASEQ_TEST_DATA) + "/../../configs/synthetic_default.yaml");
  EXPECT_EQ(def.data.task, "motif");
  Dataset tr, va, te;
  std::vector<std::string> log;
  load_run_data(def, &tr, &va, &te, &log);
  EXPECT_EQ(tr.size() + va.size(), 2000);
  EXPECT_EQ(va.size(), 200);
  EXPECT_EQ(te.size(), 500);
  EXPECT_EQ(def.model.num_labels, 2);
  EXPECT_EQ(def.model.mamba.vocab_size, 6);

  write(d + "/tr.csv", "sequence,label\nACGTACGT,a\nGGGGCCCC,b\nACGTTTTT,a\nCCCCAAAA,b\nACGAAAAT,a\nTTTTGGGG,b\n");
  write(d + "/te.csv", "sequence,label\nACGT,a\nGGGG,b\n");
  write(d + "/csv.yaml", "data:\n  source: csv\n  train: " + d + "/tr.csv\n  test: " + d +
                             "/te.csv\n  tokenizer: kmer\n  k: 2\n  val_fraction: 0.34\n  max_len: 6\n  crop: random\n"
                             "  rc_augment: true\n  bucket: true\n" + model);
  RunConfig rc = load_run_config(d + "/csv.yaml");
  EXPECT_EQ(rc.data.task, "tr");
  EXPECT_EQ(rc.train.max_len, 6);
  log.clear();
  load_run_data(rc, &tr, &va, &te, &log);
  EXPECT_EQ(tr.size(), 4);
  EXPECT_EQ(va.size(), 2);  // round(3 · 0.34) = 1 per class
  EXPECT_EQ(te.size(), 2);
  EXPECT_EQ(rc.model.mamba.vocab_size, 18);  // 2 + 4^2
  EXPECT_EQ(rc.model.num_labels, 2);
  ASSERT_FALSE(log.empty());
  EXPECT_EQ(log.back(), "tr: 4 train / 2 validation / 2 test (classification; kmer(k 2, stride 1); split seed 1)");
  BatchingOptions bo = batching_options(rc);
  EXPECT_EQ(bo.max_len, 6);
  EXPECT_EQ(bo.crop, CropMode::Random);
  EXPECT_TRUE(bo.rc_augment && bo.bucket);

  auto bad = [&](const std::string& data_yaml) {
    write(d + "/bad.yaml", "data:\n" + data_yaml + model);
    return error_of([&] { load_run_config(d + "/bad.yaml"); });
  };
  EXPECT_NE(bad("  source: csv\n  train: x.csv\n  colour: red\n").find("unknown key 'data.colour'"), std::string::npos);
  EXPECT_NE(bad("  source: csv\n  train: x.csv\n  positive: p.fa\n").find("'data.positive' does not apply to source 'csv'"),
            std::string::npos);
  EXPECT_NE(bad("  source: parquet\n").find("'data.source' must be synthetic, csv, tsv, fasta, fasta_pair or nt_dir"),
            std::string::npos);
  EXPECT_NE(bad("  source: csv\n  train: x.csv\n  tokenizer: bpe\n").find("unknown tokenizer 'bpe'"), std::string::npos);
  EXPECT_NE(bad("  source: csv\n  train: x.csv\n  crop: middle\n").find("unknown crop mode 'middle'"), std::string::npos);
  EXPECT_NE(bad("  source: csv\n  train: x.csv\n  test: y.csv\n  test_fraction: 0.2\n").find("cannot be used with a test file"),
            std::string::npos);
  EXPECT_NE(bad("  source: synthetic\n  task: nope\n").find("'nope' is not a synthetic task"), std::string::npos);
  EXPECT_NE(bad("  source: nt_dir\n  dir: /x\n").find("'data.task' is required for source nt_dir"), std::string::npos);
  EXPECT_NE(bad("  source: csv\n  train: x.csv\n  kfold: 3\n  fold: 3\n").find("'data.fold' must be in 0..2"),
            std::string::npos);
  EXPECT_NE(bad("  source: csv\n  train: x.csv\n  tokenizer: codon\n  rc_augment: true\n")
                .find("'data.rc_augment' codon(frame 0) tokens have no reverse complement"),
            std::string::npos);
  EXPECT_NE(bad("  source: csv\n  train: x.csv\n  target_columns: [y]\n").find("'data.target_columns' needs target: regression"),
            std::string::npos);
  write(d + "/mx.yaml", "data:\n  max_len: 10\n" + model + "  max_len: 12\n");
  EXPECT_ERROR_HAS(load_run_config(d + "/mx.yaml"), "'data.max_len' (10) and 'train.max_len' (12) differ");
  fs::remove_all(d);
}

TEST(DataRunConfig, PromoterPairKFoldAndTokenTasks) {
  const std::string d = tmpdir("cfg2");
  const std::string model = "model:\n  d_model: 16\n  n_layer: 1\n";
  Dataset tr, va, te;
  std::vector<std::string> log;
  if (fs::exists(kPromoters + "/bsubtilis_promoters.fa")) {
    write(d + "/p.yaml", "data:\n  source: fasta_pair\n  positive: " + kPromoters + "/bsubtilis_promoters.fa\n"
                         "  negative: " + kPromoters + "/bsubtilis_nonpromoters.fa\n  positive_label: promoter\n"
                         "  negative_label: non_promoter\n  test_fraction: 0.2\n  val_fraction: 0\n  seed: 7\n" + model);
    RunConfig rc = load_run_config(d + "/p.yaml");
    load_run_data(rc, &tr, &va, &te, &log);
    EXPECT_EQ(tr.size(), 1098);
    EXPECT_EQ(va.size(), 0);
    EXPECT_EQ(te.size(), 275);
    EXPECT_EQ(rc.data.task, "bsubtilis_promoters");
    EXPECT_EQ(tr.label_names, (std::vector<std::string>{"non_promoter", "promoter"}));
  }
  write(d + "/tr.fa", ">a label=x\nACGT\n>b label=y\nGGCC\n>c label=x\nACGA\n>d label=y\nTTCC\n>e label=x\nACAA\n"
                      ">f label=y\nTCCC\n>g label=x\nAAGT\n>h label=y\nGACC\n");
  write(d + "/k.yaml", "data:\n  source: fasta\n  train: " + d + "/tr.fa\n  test_fraction: 0.25\n  kfold: 3\n"
                       "  fold: 1\n  seed: 3\n" + model);
  RunConfig kc = load_run_config(d + "/k.yaml");
  load_run_data(kc, &tr, &va, &te, &log);
  EXPECT_EQ(te.size(), 2);
  EXPECT_EQ(tr.size() + va.size(), 6);
  EXPECT_EQ(va.size(), 2);
  write(d + "/t.yaml", "data:\n  source: synthetic\n  task: selective_copy\n  length: 48\n  train_size: 40\n"
                       "  test_size: 10\n" + model);
  RunConfig tc = load_run_config(d + "/t.yaml");
  load_run_data(tc, &tr, &va, &te, &log);
  EXPECT_EQ(tc.model.head, HeadKind::TokenClassification);
  EXPECT_EQ(tc.model.num_labels, 4);
  EXPECT_EQ(tc.model.mamba.vocab_size, 7);
  // A token-task model runs a training step on these batches.
  Model m(tc.model, 1);
  Batch b = make_batch(tr, {0, 1, 2}, 0, HeadKind::TokenClassification);
  m.forward(b, true);
  EXPECT_NEAR(m.loss(b), std::log(4.0), 0.5);
  m.backward(b);
  // train.rc_average is checked once the task is known: token heads and symbolic tokens fail.
  write(d + "/rca.yaml", "data:\n  source: synthetic\n  task: selective_copy\n  length: 48\n  train_size: 40\n"
                         "  test_size: 10\ntrain:\n  rc_average: true\n");
  RunConfig rca = load_run_config(d + "/rca.yaml");
  EXPECT_ERROR_HAS(load_run_data(rca, &tr, &va, &te, &log), "'train.rc_average' needs a sequence-level task");
  write(d + "/rcb.yaml", "data:\n  source: synthetic\n  task: induction_seq\n  length: 48\n  train_size: 40\n"
                         "  test_size: 10\ntrain:\n  rc_average: true\n");
  RunConfig rcb = load_run_config(d + "/rcb.yaml");
  EXPECT_ERROR_HAS(load_run_data(rcb, &tr, &va, &te, &log), "'train.rc_average' needs DNA tokens");
  write(d + "/v.yaml", "data:\n  source: synthetic\n  task: selective_copy\nmodel:\n  vocab_size: 6\n");
  RunConfig vc = load_run_config(d + "/v.yaml");
  EXPECT_ERROR_HAS(load_run_data(vc, &tr, &va, &te, &log), "model.vocab_size 6 is smaller than the data's 7 token ids");
  fs::remove_all(d);
}

TEST(DataSplit, SkippedRecordsSurviveEverySplit) {
  const std::string d = tmpdir("skipsplit");
  std::string csv = "sequence,label\n";
  for (int i = 0; i < 20; ++i) csv += std::string(i % 2 ? "ACGTACGT" : "GGCCGGCC") + "," + std::to_string(i % 2) + "\n";
  csv += "ACXT,0\n,1\n";  // a character outside the alphabet and an empty sequence
  write(d + "/tr.csv", csv);
  write(d + "/te.csv", "sequence,label\nACGT,0\nAC.T,1\nGGCC,1\n");
  const std::string base = "data:\n  source: csv\n  train: " + d + "/tr.csv\n  skip_bad: true\n";
  auto skipped = [](const std::string& yaml, int64_t* in_train) {
    RunConfig rc = load_run_config_text(yaml, "skip.yaml");
    Dataset tr, va, te;
    std::vector<std::string> log;
    load_run_data(rc, &tr, &va, &te, &log);
    *in_train = tr.skipped;
    return tr.skipped + va.skipped + te.skipped;
  };
  int64_t in_train = 0;
  // Held-out test part (train file split three ways): the two bad records, counted once.
  EXPECT_EQ(skipped(base, &in_train), 2);
  EXPECT_EQ(in_train, 2);
  EXPECT_EQ(skipped(base + "  kfold: 4\n  fold: 1\n", &in_train), 2);
  EXPECT_EQ(in_train, 2);
  // A test file adds its own bad record.
  EXPECT_EQ(skipped(base + "  test: " + d + "/te.csv\n", &in_train), 3);
  EXPECT_EQ(in_train, 2);
  EXPECT_EQ(skipped(base + "  test: " + d + "/te.csv\n  kfold: 3\n", &in_train), 3);
  fs::remove_all(d);
}

TEST(DataRunConfig, ModelTypeAndSetOverrides) {
  const std::string d = tmpdir("cfgset");
  write(d + "/run.yaml", "data:\n  source: synthetic\nmodel:\n  d_model: 16\n  n_layer: 1\ntrain:\n  epochs: 1\n");
  RunConfig rc = load_run_config(d + "/run.yaml", {"model.d_model=24", "train.lr=1e-4", "data.length=50"});
  EXPECT_EQ(rc.model_type, "mamba");
  EXPECT_EQ(rc.model.mamba.d_model, 24);
  EXPECT_EQ(rc.model.mamba.n_layer, 1);  // untouched keys stay as in the file
  EXPECT_DOUBLE_EQ(rc.train.adamw.lr, 1e-4);
  EXPECT_EQ(rc.data.length, 50);
  // A whole section, or keys one by one; the later override wins; sections are created.
  write(d + "/bare.yaml", "data:\n  source: synthetic\n");
  rc = load_run_config(d + "/bare.yaml", {"model={type: cnn, channels: 8}", "model.kernel_sizes=[5, 3]",
                                          "model.channels=12", "output=runs/x", "train.patience=2"});
  EXPECT_EQ(rc.model_type, "cnn");
  EXPECT_EQ(rc.cnn.channels, 12);
  EXPECT_EQ(rc.cnn.kernel_sizes, (std::vector<int64_t>{5, 3}));
  EXPECT_EQ(rc.cnn.d_embed, 256);  // seed 001's size where not given
  EXPECT_EQ(rc.output, "runs/x");
  EXPECT_EQ(rc.train.patience, 2);
  rc = load_run_config(d + "/bare.yaml", {"model.type=transformer", "model.n_head=2", "model.d_model=8"});
  EXPECT_EQ(rc.transformer.n_head, 2);
  EXPECT_EQ(rc.transformer.d_model, 8);
  EXPECT_EQ(rc.transformer.n_layer, 6);
  // Overrides are checked as the same keys in the file: each error names the key.
  const std::string f = d + "/run.yaml";
  EXPECT_ERROR_HAS(load_run_config(f, {"train.lrr=1"}), "run.yaml: unknown key 'train.lrr'");
  EXPECT_ERROR_HAS(load_run_config(f, {"train.epochs=many"}), "'train.epochs' has a bad value 'many'");
  EXPECT_ERROR_HAS(load_run_config(f, {"train.epochs=0"}), "'train.epochs' must be a positive integer, got 0");
  EXPECT_ERROR_HAS(load_run_config(f, {"model.type=rnn"}), "'model.type' must be mamba, cnn or transformer, got 'rnn'");
  EXPECT_ERROR_HAS(load_run_config(f, {"model.type=cnn"}), "unknown key 'model.d_model' (known: channels, d_embed");
  EXPECT_ERROR_HAS(load_run_config(f, {"data.source=parquet"}), "'data.source' must be synthetic, csv");
  EXPECT_ERROR_HAS(load_run_config(f, {"colour=red"}), "unknown key '.colour'");
  EXPECT_ERROR_HAS(load_run_config(d + "/bare.yaml", {"model.type=cnn", "model.kernel_sizes=[4]"}),
                   "kernel size 4 in kernel_sizes must be odd");
  EXPECT_ERROR_HAS(load_run_config(f, {"train.epochs.x=1"}), "--set train.epochs.x: 'train.epochs' is not a mapping");
  EXPECT_ERROR_HAS(load_run_config(f, {"train.lr"}), "--set 'train.lr': expected KEY.PATH=VALUE");
  EXPECT_ERROR_HAS(load_run_config(f, {"train..lr=1"}), "expected KEY.PATH=VALUE");
  EXPECT_ERROR_HAS(load_run_config(f, {"model.kernel_sizes=[5"}), "--set model.kernel_sizes: the value is not valid YAML");
  // A baseline has sequence-level heads only.
  rc = load_run_config_text("data: {source: synthetic, task: induction, train_size: 16, test_size: 8, length: 16}\n"
                            "model: {type: cnn, d_embed: 8, channels: 8}\n",
                            "tok.yaml");
  Dataset tr, va, te;
  std::vector<std::string> log;
  load_run_data(rc, &tr, &va, &te, &log);
  EXPECT_ERROR_HAS(make_network(rc, {&tr}), "tok.yaml: the cnn baseline has sequence-level heads only");
  fs::remove_all(d);
}
