// Errors: one exception type whose message is the one line a user sees.
#pragma once
#include <stdexcept>
#include <string>
#include <fmt/format.h>

namespace mambaseq {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace mambaseq

// MS_CHECK(cond, "fmt", args...): user-facing validation, always on.
#define MS_CHECK(cond, ...)                    \
  do {                                         \
    if (!(cond)) ::mambaseq::fail(__VA_ARGS__); \
  } while (0)
