#include "mambaseq/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace mambaseq {

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "--:--";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
  return fmt::format("{:02}:{:02}", t / 60, t % 60);
}

Progress::Progress(std::string label, int64_t total, std::string unit, int64_t every, bool enabled)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), every_(every > 0 ? every : 1),
      enabled_(enabled), tty_(isatty(fileno(stderr))), t0_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t done, const std::string& extra, double work) {
  if (start_done_ < 0) start_done_ = done > 0 ? done - 1 : 0;  // a resumed run starts mid-way
  if (work >= 0) work_total_ += work;
  last_done_ = done;
  ++calls_;
  if (!enabled_) return;
  if (tty_ || calls_ % every_ == 0 || done == total_) draw(done, extra, false);
}

void Progress::finish(const std::string& extra) {
  if (enabled_) draw(last_done_, extra, true);
}

void Progress::draw(int64_t done, const std::string& extra, bool final) {
  const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  const int64_t did = done - start_done_;
  const double rate_items = el > 0 ? did / el : 0;
  const double rate = work_total_ > 0 ? work_total_ / std::max(el, 1e-9) : rate_items;
  const double eta = rate_items > 0 ? (total_ - done) / rate_items : -1;
  const int width = 24;
  const int filled = total_ > 0 ? static_cast<int>(width * double(done) / total_) : 0;
  std::string bar(filled, '#');
  bar.resize(width, '.');
  std::string line = fmt::format("{} [{}] {}/{} {} | {:.1f} {}/s | {} elapsed, ETA {}", label_, bar, done, total_,
                                 extra, rate, unit_, format_duration(el), format_duration(eta));
  if (tty_) std::fprintf(stderr, "\r%s\033[K%s", line.c_str(), final ? "\n" : "");
  else std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace mambaseq
