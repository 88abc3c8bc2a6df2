// Streaming input: raw and gzip byte sources, lines, FASTA records, CSV/TSV rows.
#include "mambaseq/readers.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unordered_set>

namespace mambaseq {

namespace {

constexpr size_t kChunk = 1 << 16;

class FileSource : public ByteSource {
 public:
  explicit FileSource(const std::string& path) : name_(path) {
    if (path == "-") {
      f_ = stdin;
      owned_ = false;
    } else {
      f_ = std::fopen(path.c_str(), "rb");
      MS_CHECK(f_ != nullptr, "cannot open {}: {}", path, std::strerror(errno));
    }
  }
  ~FileSource() override {
    if (owned_ && f_) std::fclose(f_);
  }
  size_t read(char* buf, size_t n) override {
    const size_t got = std::fread(buf, 1, n, f_);
    if (got < n && std::ferror(f_)) fail("{}: read error: {}", name_, std::strerror(errno));
    return got;
  }

 private:
  std::string name_;
  std::FILE* f_ = nullptr;
  bool owned_ = true;
};

class MemorySource : public ByteSource {
 public:
  explicit MemorySource(std::string_view b) : b_(b) {}
  size_t read(char* buf, size_t n) override {
    n = std::min(n, b_.size() - pos_);
    if (n) std::memcpy(buf, b_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  std::string_view b_;
  size_t pos_ = 0;
};

// Serves bytes already read (to sniff the format) before the rest of the source.
class PrefixSource : public ByteSource {
 public:
  PrefixSource(std::string prefix, std::unique_ptr<ByteSource> rest) : p_(std::move(prefix)), rest_(std::move(rest)) {}
  size_t read(char* buf, size_t n) override {
    if (pos_ < p_.size()) {
      n = std::min(n, p_.size() - pos_);
      std::memcpy(buf, p_.data() + pos_, n);
      pos_ += n;
      return n;
    }
    return rest_->read(buf, n);
  }

 private:
  std::string p_;
  size_t pos_ = 0;
  std::unique_ptr<ByteSource> rest_;
};

class GzipSource : public ByteSource {
 public:
  GzipSource(std::unique_ptr<ByteSource> raw, std::string name) : raw_(std::move(raw)), name_(std::move(name)) {
    in_.resize(kChunk);
    std::memset(&z_, 0, sizeof z_);
    // 16 + 15: gzip wrapper only, largest window.
    MS_CHECK(inflateInit2(&z_, 16 + 15) == Z_OK, "{}: cannot start gzip decompression", name_);
  }
  ~GzipSource() override { inflateEnd(&z_); }

  size_t read(char* buf, size_t n) override {
    if (done_ || n == 0) return 0;
    n = std::min<size_t>(n, 1u << 30);  // avail_out is 32-bit
    z_.next_out = reinterpret_cast<Bytef*>(buf);
    z_.avail_out = static_cast<uInt>(n);
    while (z_.avail_out == n) {
      if (z_.avail_in == 0 && !raw_eof_) {
        const size_t got = raw_->read(in_.data(), in_.size());
        if (got == 0) raw_eof_ = true;
        z_.next_in = reinterpret_cast<Bytef*>(in_.data());
        z_.avail_in = static_cast<uInt>(got);
      }
      if (z_.avail_in == 0 && raw_eof_) {
        if (member_ended_) {
          done_ = true;
          break;
        }
        fail("{}: truncated gzip data (the file ends inside the compressed stream)", name_);
      }
      if (member_ended_) {
        // More bytes after a complete member: another member (bgzip, cat a.gz b.gz).
        // Anything else fails the header check below: trailing garbage is not ignored.
        MS_CHECK(inflateReset(&z_) == Z_OK, "{}: gzip reset failed", name_);
        member_ended_ = false;
        trailing_ = true;
      }
      const int ret = inflate(&z_, Z_NO_FLUSH);
      if (ret == Z_STREAM_END) {
        member_ended_ = true;
        trailing_ = false;
      } else if (ret == Z_DATA_ERROR || ret == Z_NEED_DICT) {
        if (trailing_) fail("{}: data after the end of the gzip stream is not gzip ({})", name_, zmsg());
        fail("{}: corrupt gzip data ({})", name_, zmsg());
      } else if (ret == Z_MEM_ERROR) {
        fail("{}: out of memory while decompressing", name_);
      } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
        fail("{}: gzip error {} ({})", name_, ret, zmsg());
      } else {
        trailing_ = false;  // a following member's header parsed fine
      }
    }
    return n - z_.avail_out;
  }

 private:
  std::string zmsg() const { return z_.msg ? z_.msg : "no detail"; }
  std::unique_ptr<ByteSource> raw_;
  std::string name_;
  std::vector<char> in_;
  z_stream z_;
  bool raw_eof_ = false, member_ended_ = false, done_ = false, trailing_ = false;
};

std::unique_ptr<ByteSource> sniff(std::unique_ptr<ByteSource> raw, const std::string& name) {
  char head[2];
  size_t got = 0;
  while (got < 2) {
    const size_t r = raw->read(head + got, 2 - got);
    if (r == 0) break;
    got += r;
  }
  const bool gz = got == 2 && static_cast<unsigned char>(head[0]) == 0x1f && static_cast<unsigned char>(head[1]) == 0x8b;
  auto src = std::make_unique<PrefixSource>(std::string(head, got), std::move(raw));
  if (gz) return std::make_unique<GzipSource>(std::move(src), name);
  return src;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return is_space(c); });
}

std::string trim(std::string_view s, bool tabs = true) {
  auto sp = [&](char c) { return c == ' ' || c == '\r' || (tabs && c == '\t'); };
  size_t a = 0, b = s.size();
  while (a < b && sp(s[a])) ++a;
  while (b > a && sp(s[b - 1])) --b;
  return std::string(s.substr(a, b - a));
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::unique_ptr<ByteSource> open_input(const std::string& path) {
  return sniff(std::make_unique<FileSource>(path), path);
}

std::unique_ptr<ByteSource> memory_input(std::string_view bytes, const std::string& name) {
  return sniff(std::make_unique<MemorySource>(bytes), name);
}

std::string read_all(ByteSource& src) {
  std::string out;
  std::vector<char> buf(kChunk);
  while (size_t n = src.read(buf.data(), buf.size())) out.append(buf.data(), n);
  return out;
}

void write_gzip(const std::string& path, std::string_view data) {
  gzFile f = gzopen(path.c_str(), "wb");
  MS_CHECK(f != nullptr, "cannot write {}: {}", path, std::strerror(errno));
  size_t off = 0;
  while (off < data.size()) {
    const unsigned n = static_cast<unsigned>(std::min<size_t>(data.size() - off, 1u << 30));
    if (gzwrite(f, data.data() + off, n) != static_cast<int>(n)) {
      gzclose(f);
      fail("cannot write {}: gzip write failed", path);
    }
    off += n;
  }
  MS_CHECK(gzclose(f) == Z_OK, "cannot write {}: gzip close failed", path);
}

// ---- lines ---------------------------------------------------------------------------

LineReader::LineReader(std::unique_ptr<ByteSource> src, std::string name)
    : src_(std::move(src)), name_(std::move(name)), buf_(kChunk) {}

bool LineReader::next(std::string& line) {
  size_t scan = pos_;
  for (;;) {
    const char* nl = static_cast<const char*>(std::memchr(buf_.data() + scan, '\n', end_ - scan));
    if (nl) {
      size_t e = nl - buf_.data();
      const size_t next = e + 1;
      if (e > pos_ && buf_[e - 1] == '\r') --e;
      line.assign(buf_.data() + pos_, e - pos_);
      pos_ = next;
      ++line_;
      return true;
    }
    if (eof_) {
      if (pos_ == end_) return false;
      size_t e = end_;
      if (e > pos_ && buf_[e - 1] == '\r') --e;
      line.assign(buf_.data() + pos_, e - pos_);
      pos_ = end_;
      ++line_;
      return true;
    }
    // No newline in [pos_, end_): keep the partial line at the front, grow if full.
    if (pos_ > 0) {
      std::memmove(buf_.data(), buf_.data() + pos_, end_ - pos_);
      end_ -= pos_;
      pos_ = 0;
    }
    scan = end_;
    if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);
    const size_t got = src_->read(buf_.data() + end_, buf_.size() - end_);
    if (got == 0) eof_ = true;
    end_ += got;
  }
}

// ---- FASTA -----------------------------------------------------------------------------

int64_t FastaRecord::line_of(size_t pos) const {
  int64_t l = line;
  for (const auto& [off, ln] : seq_lines) {
    if (off > pos) break;
    l = ln;
  }
  return l;
}

std::string FastaRecord::tag(const std::string& key) const {
  const std::string want = key + "=";
  size_t i = 0;
  while (i < description.size()) {
    while (i < description.size() && is_space(description[i])) ++i;
    size_t j = i;
    while (j < description.size() && !is_space(description[j])) ++j;
    if (j - i > want.size() && description.compare(i, want.size(), want) == 0)
      return description.substr(i + want.size(), j - i - want.size());
    i = j;
  }
  return "";
}

FastaReader::FastaReader(std::unique_ptr<ByteSource> src, std::string name) : lines_(std::move(src), std::move(name)) {}

bool FastaReader::next(FastaRecord& rec) {
  rec.id.clear();
  rec.description.clear();
  rec.seq.clear();
  rec.seq_lines.clear();
  if (!have_line_) {
    for (;;) {
      if (!lines_.next(line_)) return false;
      if (blank(line_)) continue;
      if (line_[0] == '>') break;
      // Text before the first header: consume it up to the next header, then report.
      const int64_t first = lines_.line_number();
      have_line_ = false;
      while (lines_.next(line_))
        if (!line_.empty() && line_[0] == '>') {
          have_line_ = true;
          break;
        }
      throw BadRecord(fmt::format("{}:{}: sequence data before the first '>' header (is this a FASTA file?)",
                                  name(), first));
    }
  }
  have_line_ = false;
  rec.line = lines_.line_number();
  {
    size_t i = 1;
    while (i < line_.size() && is_space(line_[i])) ++i;
    size_t j = i;
    while (j < line_.size() && !is_space(line_[j])) ++j;
    rec.id = line_.substr(i, j - i);
    rec.description = trim(std::string_view(line_).substr(j));
  }
  while (lines_.next(line_)) {
    if (!line_.empty() && line_[0] == '>') {
      have_line_ = true;
      break;
    }
    const size_t before = rec.seq.size();
    for (char c : line_)
      if (!is_space(c)) rec.seq.push_back(c);
    if (rec.seq.size() > before) rec.seq_lines.emplace_back(before, lines_.line_number());
  }
  // The record is consumed either way: a caller may skip it and go on.
  if (rec.id.empty()) throw BadRecord(fmt::format("{}:{}: FASTA header without a name", name(), rec.line));
  if (rec.seq.empty())
    throw BadRecord(fmt::format("{}:{}: FASTA record '{}' has an empty sequence", name(), rec.line, rec.id));
  return true;
}

// ---- CSV / TSV ---------------------------------------------------------------------------

char delimiter_for(const std::string& path) {
  std::string p = path;
  if (ends_with(p, ".gz")) p.resize(p.size() - 3);
  return ends_with(p, ".tsv") || ends_with(p, ".tab") ? '\t' : ',';
}

CsvReader::CsvReader(std::unique_ptr<ByteSource> src, std::string name, char delimiter)
    : lines_(std::move(src), std::move(name)) {
  delim_ = delimiter ? delimiter : delimiter_for(lines_.name());
  MS_CHECK(delim_ != '"' && delim_ != '\n' && delim_ != '\r', "{}: bad delimiter", lines_.name());
  for (;;) {
    MS_CHECK(lines_.next(line_), "{}: empty file: no header line", lines_.name());
    if (lines_.line_number() == 1 && line_.rfind("\xEF\xBB\xBF", 0) == 0) line_.erase(0, 3);
    if (!blank(line_)) break;
    ++blank_;
  }
  const int64_t hl = lines_.line_number();
  try {
    split(header_, hl);
  } catch (const BadRecord& e) {
    throw Error(e.what());  // a header that does not parse is not skippable
  }
  std::unordered_set<std::string> seen;
  for (auto& h : header_) {
    h = trim(h);
    MS_CHECK(h.empty() || seen.insert(h).second, "{}:{}: column '{}' appears twice in the header", lines_.name(), hl, h);
  }
}

bool CsvReader::has_column(const std::string& n) const {
  return std::find(header_.begin(), header_.end(), n) != header_.end();
}

int64_t CsvReader::column(const std::string& n) const {
  auto it = std::find(header_.begin(), header_.end(), n);
  if (it == header_.end()) {
    std::string cols;
    for (const auto& h : header_) cols += (cols.empty() ? "" : ", ") + h;
    fail("{}:1: no column '{}' in the header (columns: {})", name(), n, cols);
  }
  return it - header_.begin();
}

void CsvReader::split(std::vector<std::string>& out, int64_t first_line) {
  out.clear();
  const bool tabs = delim_ != '\t';
  size_t i = 0;
  for (;;) {
    std::string field;
    while (i < line_.size() && line_[i] == ' ' && delim_ != ' ') ++i;
    if (i < line_.size() && line_[i] == '"') {
      ++i;
      for (;;) {
        const size_t q = line_.find('"', i);
        if (q == std::string::npos) {
          // The quoted field goes on after the line break.
          field.append(line_, i, std::string::npos);
          field.push_back('\n');
          if (!lines_.next(line_))
            throw BadRecord(fmt::format("{}:{}: a quote opened here is never closed", name(), first_line));
          i = 0;
          continue;
        }
        field.append(line_, i, q - i);
        if (q + 1 < line_.size() && line_[q + 1] == '"') {
          field.push_back('"');
          i = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      while (i < line_.size() && (line_[i] == ' ' || (tabs && line_[i] == '\t')) && line_[i] != delim_) ++i;
      if (i < line_.size() && line_[i] != delim_)
        throw BadRecord(fmt::format("{}:{}: text after the closing quote of field {}", name(), lines_.line_number(),
                                    out.size() + 1));
    } else {
      const size_t d = line_.find(delim_, i);
      const size_t e = d == std::string::npos ? line_.size() : d;
      field = trim(std::string_view(line_).substr(i, e - i), tabs);
      i = e;
    }
    out.push_back(std::move(field));
    if (i < line_.size() && line_[i] == delim_) {
      ++i;
      continue;
    }
    return;
  }
}

bool CsvReader::next(CsvRow& row) {
  for (;;) {
    if (!lines_.next(line_)) return false;
    if (!blank(line_)) break;
    ++blank_;
  }
  row.line = lines_.line_number();
  split(row.fields, row.line);
  if (row.fields.size() != header_.size()) {
    std::string cols;
    for (const auto& h : header_) cols += (cols.empty() ? "" : std::string(1, delim_)) + h;
    throw BadRecord(fmt::format("{}:{}: {} {}, but the header has {} ({})", name(), row.line, row.fields.size(),
                                row.fields.size() == 1 ? "field" : "fields", header_.size(), cols));
  }
  return true;
}

}  // namespace mambaseq
