// Finite-difference gradient checking in double precision.
//
// A check builds the loss  L = Σ out ⊙ W  (W random, fixed), runs the op's backward
// with dout = W to get analytic gradients, and compares every input element with the
// central difference (L(x+h) − L(x−h)) / 2h. In double, with h = 1e-6, the two agree
// to ~1e-9 relative; a wrong backward misses by O(1).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "mambaseq/rng.h"

namespace mambaseq::test {

using Vec = std::vector<double>;

inline Vec randn(size_t n, Rng& rng, double scale = 1.0) {
  Vec v(n);
  for (auto& x : v) x = rng.normal() * scale;
  return v;
}
inline Vec randu(size_t n, Rng& rng, double lo, double hi) {
  Vec v(n);
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

inline double rel_l2(const Vec& a, const Vec& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

struct GradInput {
  std::string name;
  Vec* x;          // the input, perturbed in place
  const Vec* grad; // the analytic gradient computed by the backward
};

// loss(): recomputes the forward at the current inputs and returns Σ out ⊙ W.
inline void expect_gradients(const std::function<double()>& loss, const std::vector<GradInput>& inputs,
                             double tol = 1e-6, double h = 1e-6) {
  for (const auto& in : inputs) {
    Vec num(in.x->size());
    for (size_t j = 0; j < in.x->size(); ++j) {
      const double x0 = (*in.x)[j];
      (*in.x)[j] = x0 + h;
      const double lp = loss();
      (*in.x)[j] = x0 - h;
      const double lm = loss();
      (*in.x)[j] = x0;
      num[j] = (lp - lm) / (2 * h);
    }
    const double err = rel_l2(*in.grad, num);
    EXPECT_LT(err, tol) << "gradient of '" << in.name << "' (" << in.x->size() << " elements): relative error " << err;
    double norm = 0;
    for (double v : num) norm += v * v;
    EXPECT_GT(norm, 0.0) << "gradient of '" << in.name << "' is identically zero: the check would prove nothing";
  }
}

inline double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace mambaseq::test
