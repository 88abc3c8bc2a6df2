// Counts every call of the malloc family, so a test or benchmark can assert that a hot
// loop allocates nothing. Defines malloc & co.: include it in exactly one source file of
// a program. Under AddressSanitizer (which owns malloc) nothing is counted and
// MS_COUNT_MALLOC stays undefined.
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdint>

#include <atomic>

inline std::atomic<int64_t> g_mallocs{0};
#if !defined(__SANITIZE_ADDRESS__)
#define MS_COUNT_MALLOC 1
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void* malloc(size_t n) {
  g_mallocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
void* calloc(size_t a, size_t b) {
  g_mallocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
  g_mallocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
void* memalign(size_t a, size_t n) {
  g_mallocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(a, n);
}
void* aligned_alloc(size_t a, size_t n) {
  g_mallocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, size_t a, size_t n) {
  g_mallocs.fetch_add(1, std::memory_order_relaxed);
  if (a % sizeof(void*) != 0 || (a & (a - 1)) != 0) return EINVAL;
  *out = __libc_memalign(a, n);
  return *out ? 0 : ENOMEM;
}
}
#endif
