// The parsers read files by path; fuzz inputs go through an in-memory file (memfd).
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace fuzz {

// Replaces the content of an anonymous in-memory file and returns a path to it.
inline std::string as_file(const uint8_t* data, size_t size, int slot = 0) {
  static int fds[4] = {-1, -1, -1, -1};
  int& fd = fds[slot];
  if (fd < 0) fd = memfd_create(slot ? "fuzz-input-2" : "fuzz-input", 0);
  if (fd < 0) std::abort();
  if (ftruncate(fd, 0) != 0) std::abort();
  size_t off = 0;
  while (off < size) {
    const ssize_t w = pwrite(fd, data + off, size - off, static_cast<off_t>(off));
    if (w <= 0) std::abort();
    off += static_cast<size_t>(w);
  }
  return "/proc/self/fd/" + std::to_string(fd);
}

}  // namespace fuzz
