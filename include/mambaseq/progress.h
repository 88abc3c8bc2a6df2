// A progress line for long work: bar, rate, ETA. On a terminal it redraws in place;
// otherwise (logs, CI) it prints a line every `every` updates.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace mambaseq {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "it", int64_t every = 10, bool enabled = true);
  // done: items finished so far; extra: free text (e.g. "loss 0.512"); rate counts `work`
  // units (e.g. tokens) per second when given, else items per second.
  void update(int64_t done, const std::string& extra = "", double work = -1);
  void finish(const std::string& extra = "");

 private:
  std::string label_, unit_;
  int64_t total_, every_, calls_ = 0, start_done_ = -1;
  bool enabled_, tty_;
  double work_total_ = 0;
  std::chrono::steady_clock::time_point t0_;
  void draw(int64_t done, const std::string& extra, bool final);
  int64_t last_done_ = 0;
};

std::string format_duration(double seconds);

}  // namespace mambaseq
