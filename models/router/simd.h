// Row kernels of the router (exp, softmax, sigmoid, sums) on GCC vector extensions, inlined into
// callers compiled for several instruction sets (MOESIM_DISPATCH). Private to models/router.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

// MOESIM_DISPATCH(name, Args) defines `void name(const Args&)` running `name##_body` (an
// always-inlined function of the same argument) compiled for AVX-512F, AVX2 or the baseline,
// the widest the CPU supports. Explicit target functions rather than target_clones: GCC 12
// lowers the vector code of a target_clones function for the baseline before cloning, so mask
// arithmetic came out lane by lane even in the AVX-512 clone. The kernels use IEEE
// add/mul/div/compare only; where the compiler contracts a * b + c (AVX-512 implies FMA), the
// AVX-512 variant may differ from the others in the last bit, never between runs or threads.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MOESIM_DISPATCH(name, Args)                                         \
  __attribute__((target("avx512f"))) void name##_avx512(const Args& args) { \
    name##_body(args);                                                      \
  }                                                                         \
  __attribute__((target("avx2"))) void name##_avx2(const Args& args) {      \
    name##_body(args);                                                      \
  }                                                                         \
  void name##_baseline(const Args& args) {                                  \
    name##_body(args);                                                      \
  }                                                                         \
  void name(const Args& args) {                                             \
    if (__builtin_cpu_supports("avx512f")) {                                \
      name##_avx512(args);                                                  \
    } else if (__builtin_cpu_supports("avx2")) {                            \
      name##_avx2(args);                                                    \
    } else {                                                                \
      name##_baseline(args);                                                \
    }                                                                       \
  }
#else
#define MOESIM_DISPATCH(name, Args) \
  void name(const Args& args) {     \
    name##_body(args);              \
  }
#endif
#define MOESIM_INLINE inline __attribute__((always_inline))

// Every function here is always inlined, so the vector ABI of the baseline target never shows.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace moesim::simd {

constexpr int kLanes = 16;
typedef float vfloat __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(kLanes * sizeof(int32_t))));

MOESIM_INLINE vfloat load(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
MOESIM_INLINE void store(float* p, const vfloat& v) {
  std::memcpy(p, &v, sizeof(v));
}
MOESIM_INLINE vfloat splat(float x) {
  return vfloat{} + x;
}

// e^x for x in [-87.3, 88.7] (clamped outside), relative error about 2e-7: Cephes expf's
// range reduction x = n ln2 + f and its degree-5 polynomial for e^f.
MOESIM_INLINE float exp_scalar(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float f = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * f + 1.3981999507e-3f;
  p = p * f + 8.3334519073e-3f;
  p = p * f + 4.1665795894e-2f;
  p = p * f + 1.6666665459e-1f;
  p = p * f + 5.0000001201e-1f;
  const float e = p * (f * f) + f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return e * scale;
}

MOESIM_INLINE void exp_vector(const vfloat& x_in, vfloat& result) {
  const vfloat lo = splat(-87.3f), hi = splat(88.7f);
  vfloat x = x_in < lo ? lo : x_in;
  x = x > hi ? hi : x;
  // Round to nearest by the 1.5 * 2^23 trick; |x log2 e| < 2^22 so it is exact.
  const vfloat magic = splat(12582912.0f);
  const vfloat n = (x * 1.44269504088896341f + magic) - magic;
  const vfloat f = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  vfloat p = splat(1.9875691500e-4f);
  p = p * f + 1.3981999507e-3f;
  p = p * f + 8.3334519073e-3f;
  p = p * f + 4.1665795894e-2f;
  p = p * f + 1.6666665459e-1f;
  p = p * f + 5.0000001201e-1f;
  const vfloat e = p * (f * f) + f + 1.0f;
  const vint bits = (__builtin_convertvector(n, vint) + 127) << 23;
  vfloat scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  result = e * scale;
}

MOESIM_INLINE float horizontal_max(const vfloat& v) {
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = v[i] > m ? v[i] : m;
  return m;
}
MOESIM_INLINE float horizontal_sum(const vfloat& v) {
  // A fixed pairwise order, the same for every instruction set.
  float s8[8];
  for (int i = 0; i < 8; ++i) s8[i] = v[i] + v[i + 8];
  for (int i = 0; i < 4; ++i) s8[i] += s8[i + 4];
  return (s8[0] + s8[2]) + (s8[1] + s8[3]);
}

MOESIM_INLINE float max(const float* x, int32_t n) {
  int32_t i = 0;
  float m = -std::numeric_limits<float>::infinity();
  if (n >= kLanes) {
    vfloat vm = load(x);
    for (i = kLanes; i + kLanes <= n; i += kLanes) {
      const vfloat v = load(x + i);
      vm = v > vm ? v : vm;
    }
    m = horizontal_max(vm);
  }
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

MOESIM_INLINE float sum(const float* x, int32_t n) {
  int32_t i = 0;
  vfloat acc{};
  for (; i + kLanes <= n; i += kLanes) acc += load(x + i);
  float s = horizontal_sum(acc);
  for (; i < n; ++i) s += x[i];
  return s;
}

// out[i] = e^(x[i] - shift); returns the sum.
MOESIM_INLINE float exp_shifted(const float* x, float shift, float* out, int32_t n) {
  int32_t i = 0;
  vfloat acc{};
  for (; i + kLanes <= n; i += kLanes) {
    vfloat e;
    exp_vector(load(x + i) - shift, e);
    store(out + i, e);
    acc += e;
  }
  float s = horizontal_sum(acc);
  for (; i < n; ++i) {
    out[i] = exp_scalar(x[i] - shift);
    s += out[i];
  }
  return s;
}

// Softmax of x into p; returns logsumexp(x).
MOESIM_INLINE float softmax(const float* x, float* p, int32_t n) {
  const float m = max(x, n);
  const float total = exp_shifted(x, m, p, n);
  const float inv = 1.0f / total;
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(p + i, load(p + i) * inv);
  for (; i < n; ++i) p[i] *= inv;
  return m + std::log(total);
}

MOESIM_INLINE float logsumexp(const float* x, int32_t n) {
  const float m = max(x, n);
  int32_t i = 0;
  vfloat acc{};
  for (; i + kLanes <= n; i += kLanes) {
    vfloat e;
    exp_vector(load(x + i) - m, e);
    acc += e;
  }
  float s = horizontal_sum(acc);
  for (; i < n; ++i) s += exp_scalar(x[i] - m);
  return m + std::log(s);
}

MOESIM_INLINE void sigmoid(const float* x, float* p, int32_t n) {
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    vfloat e;
    exp_vector(-load(x + i), e);
    store(p + i, 1.0f / (e + 1.0f));
  }
  for (; i < n; ++i) p[i] = 1.0f / (exp_scalar(-x[i]) + 1.0f);
}

// p = sigmoid(x) and q = p + b in one pass: the same values as sigmoid() then add().
MOESIM_INLINE void sigmoid_and_add(const float* x, const float* b, float* p, float* q, int32_t n) {
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    vfloat e;
    exp_vector(-load(x + i), e);
    const vfloat s = 1.0f / (e + 1.0f);
    store(p + i, s);
    store(q + i, s + load(b + i));
  }
  for (; i < n; ++i) {
    p[i] = 1.0f / (exp_scalar(-x[i]) + 1.0f);
    q[i] = p[i] + b[i];
  }
}

// acc[i] += x[i] * scale
MOESIM_INLINE void accumulate(const float* x, float scale, float* acc, int32_t n) {
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(acc + i, load(acc + i) + load(x + i) * scale);
  for (; i < n; ++i) acc[i] += x[i] * scale;
}

MOESIM_INLINE void add(const float* a, const float* b, float* out, int32_t n) {
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(out + i, load(a + i) + load(b + i));
  for (; i < n; ++i) out[i] = a[i] + b[i];
}

}  // namespace moesim::simd

#pragma GCC diagnostic pop
