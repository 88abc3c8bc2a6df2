// Streaming readers: records one at a time, so a 100k-sequence FASTA or a large CSV is
// never held in memory whole. gzip input is recognised by its magic bytes (not by the
// file name) and decompressed on the fly with zlib; concatenated gzip members (bgzip,
// `cat a.gz b.gz`) are read as one stream. Path "-" reads standard input.
//
//   FastaReader r("genes.fa.gz");
//   FastaRecord rec;
//   while (r.next(rec)) use(rec.id, rec.seq);
//
// Errors are mambaseq::Error with one line naming the file and line ("x.fa:12: ...").
// A BadRecord error concerns one record only and leaves the reader positioned at the
// next one, so a caller that skips bad records (--skip-bad) may catch it, count it and
// call next() again. Any other Error (unreadable file, corrupt gzip) is final.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mambaseq/error.h"

namespace mambaseq {

struct BadRecord : Error {
  using Error::Error;
};

// Bytes from somewhere; read() returns 0 at the end, throws Error on failure.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual size_t read(char* buf, size_t n) = 0;
};

// A file ("-": standard input), gunzipped when it starts with the gzip magic bytes.
std::unique_ptr<ByteSource> open_input(const std::string& path);
// Bytes in memory (tests, fuzzing), gunzipped when they start with the gzip magic;
// `name` is used in messages. The bytes must outlive the source.
std::unique_ptr<ByteSource> memory_input(std::string_view bytes, const std::string& name);
// Whole content of a (possibly gzip) file or buffer: tests and small files only.
std::string read_all(ByteSource& src);
// Writes a gzip file (tests, tools that emit .gz).
void write_gzip(const std::string& path, std::string_view data);

// Lines without their terminator ("\n" or "\r\n"). line_number() is 1-based.
class LineReader {
 public:
  LineReader(std::unique_ptr<ByteSource> src, std::string name);
  explicit LineReader(const std::string& path) : LineReader(open_input(path), path) {}
  bool next(std::string& line);
  int64_t line_number() const { return line_; }
  const std::string& name() const { return name_; }

 private:
  std::unique_ptr<ByteSource> src_;
  std::string name_;
  std::vector<char> buf_;
  size_t pos_ = 0, end_ = 0;
  bool eof_ = false;
  int64_t line_ = 0;
};

struct FastaRecord {
  std::string id;           // header up to the first white space (after '>')
  std::string description;  // the rest of the header, trimmed
  std::string seq;          // sequence lines joined, white space removed, case kept
  int64_t line = 0;         // the header's line number
  // (offset into seq, line number) of each sequence line: line_of(pos) for messages.
  std::vector<std::pair<size_t, int64_t>> seq_lines;
  int64_t line_of(size_t pos) const;
  // Value of a `key=value` word in the description (e.g. label=promoter); "" if absent.
  std::string tag(const std::string& key) const;
};

// Multi-line FASTA. Blank lines are ignored. Bad records (BadRecord): an empty header,
// a header with no sequence, sequence data before the first header.
class FastaReader {
 public:
  explicit FastaReader(const std::string& path) : FastaReader(open_input(path), path) {}
  FastaReader(std::unique_ptr<ByteSource> src, std::string name);
  bool next(FastaRecord& rec);
  const std::string& name() const { return lines_.name(); }

 private:
  LineReader lines_;
  std::string line_;
  bool have_line_ = false;  // line_ holds the next record's header
};

struct CsvRow {
  std::vector<std::string> fields;
  int64_t line = 0;  // first line of the row (a quoted field may span lines)
};

// CSV (RFC 4180 quoting: "a,b" and "" for a quote) or TSV with a header line. Blank
// lines hold no data and are skipped (counted: blank_lines()). A UTF-8 byte-order mark
// is ignored. Bad rows (BadRecord): a field count different from the header's, an
// unclosed quote, text after a closing quote.
class CsvReader {
 public:
  // delimiter 0: tab for *.tsv, *.tab (also .gz), else comma.
  explicit CsvReader(const std::string& path, char delimiter = 0)
      : CsvReader(open_input(path), path, delimiter) {}
  CsvReader(std::unique_ptr<ByteSource> src, std::string name, char delimiter = 0);
  const std::vector<std::string>& header() const { return header_; }
  // Index of a header column; Error naming the file and the columns there are.
  int64_t column(const std::string& name) const;
  bool has_column(const std::string& name) const;
  bool next(CsvRow& row);
  const std::string& name() const { return lines_.name(); }
  char delimiter() const { return delim_; }
  int64_t blank_lines() const { return blank_; }

 private:
  LineReader lines_;
  char delim_;
  std::vector<std::string> header_;
  int64_t blank_ = 0;
  std::string line_;
  // Splits one record starting at line_ (reading more lines for quoted newlines).
  void split(std::vector<std::string>& out, int64_t first_line);
};

char delimiter_for(const std::string& path);

}  // namespace mambaseq
