// Row kernels of the router (exp, softmax, sigmoid, sums) on GCC vector extensions, written
// once for any vector width and compiled per instruction set (MOESIM_DISPATCH); models/router's.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

// MOESIM_DISPATCH(name, Args) defines `void name(const Args&, KernelWidth)` running
// `name##_body<W>` (an always-inlined function template of the same argument) for the vector
// width W of the widest instruction set the CPU supports: AVX-512F (16 lanes), AVX2 (8 lanes) or
// the baseline (4 lanes); a width the caller names instead runs compiled for the baseline, which
// is how tests compare the widths on any machine. Explicit target functions rather than
// target_clones: GCC 12 lowers the vector code of a target_clones function for the baseline
// before cloning, so mask arithmetic came out lane by lane even in the AVX-512 clone. Each width
// uses its own vector type because a type wider than the target's registers does not live in
// registers: GCC 12 keeps a 16-lane vector in memory under AVX2 and compares and shuffles it lane
// by lane (10x slower than 8 lanes). The kernels use IEEE add/mul/div/compare only and reduce in
// a fixed order of 16-float chunks, so every width gives the same bits; where the compiler
// contracts a * b + c (AVX-512 implies FMA), the AVX-512 variant may differ from the others in
// the last bit, never between runs or threads.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MOESIM_DISPATCH_NATIVE(name, Args, args) \
  if (__builtin_cpu_supports("avx512f")) {       \
    name##_avx512(args);                         \
  } else if (__builtin_cpu_supports("avx2")) {   \
    name##_avx2(args);                           \
  } else {                                       \
    name##_portable<4>(args);                    \
  }
#define MOESIM_DISPATCH_TARGETS(name, Args)                                 \
  __attribute__((target("avx512f"))) void name##_avx512(const Args& args) { \
    name##_body<simd::Avx512>(args);                                        \
  }                                                                         \
  __attribute__((target("avx2"))) void name##_avx2(const Args& args) {      \
    name##_body<simd::Avx2>(args);                                          \
  }
#else
#define MOESIM_DISPATCH_NATIVE(name, Args, args) name##_portable<4>(args);
#define MOESIM_DISPATCH_TARGETS(name, Args)
#endif
#define MOESIM_DISPATCH(name, Args)                          \
  MOESIM_DISPATCH_TARGETS(name, Args)                        \
  template <int kWidth>                                      \
  [[gnu::noinline]] void name##_portable(const Args& args) { \
    name##_body<simd::Portable<kWidth>>(args);               \
  }                                                          \
  void name(const Args& args, KernelWidth width) {           \
    switch (width) {                                         \
      case KernelWidth::kNative:                             \
        MOESIM_DISPATCH_NATIVE(name, Args, args)             \
        return;                                              \
      case KernelWidth::kLanes4:                             \
        name##_portable<4>(args);                            \
        return;                                              \
      case KernelWidth::kLanes8:                             \
        name##_portable<8>(args);                            \
        return;                                              \
      case KernelWidth::kLanes16:                            \
        name##_portable<16>(args);                           \
        return;                                              \
    }                                                        \
  }
#define MOESIM_INLINE inline __attribute__((always_inline))
// A lambda inlined like MOESIM_INLINE functions, so that it too is compiled for the caller's
// instruction set.
#define MOESIM_INLINE_LAMBDA __attribute__((always_inline))

// Every function here is always inlined, so the vector ABI of the baseline target never shows.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace moesim::simd {

// Loops and reductions take kChunk floats at a time at every width, so that a sum adds in the
// same order, and gives the same bits, whatever the width.
constexpr int kChunk = 16;

// Widths. kAvx2: functions may use AVX2 builtins (compiled only into the AVX2 target function).
template <int kN>
struct Portable {
  static constexpr int kLanes = kN;
  static constexpr bool kAvx2 = false;
};
struct Avx2 {
  static constexpr int kLanes = 8;
  static constexpr bool kAvx2 = true;
};
struct Avx512 {
  static constexpr int kLanes = 16;
  static constexpr bool kAvx2 = false;
};

template <int kN>
struct VectorTypes {
  typedef float f __attribute__((vector_size(kN * sizeof(float))));
  typedef int32_t i __attribute__((vector_size(kN * sizeof(int32_t))));
};
template <int kN>
using vfloat = typename VectorTypes<kN>::f;
template <int kN>
using vint = typename VectorTypes<kN>::i;

template <int kN>
MOESIM_INLINE vfloat<kN> load(const float* p) {
  vfloat<kN> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <int kN>
MOESIM_INLINE void store(float* p, const vfloat<kN>& v) {
  std::memcpy(p, &v, sizeof(v));
}
template <int kN>
MOESIM_INLINE vfloat<kN> splat(float x) {
  return vfloat<kN>{} + x;
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

template <int kN>
MOESIM_INLINE void exp_vector(const vfloat<kN>& x_in, vfloat<kN>& result) {
  const vfloat<kN> lo = splat<kN>(-87.3f), hi = splat<kN>(88.7f);
  vfloat<kN> x = x_in < lo ? lo : x_in;
  x = x > hi ? hi : x;
  // Round to nearest by the 1.5 * 2^23 trick; |x log2 e| < 2^22 so it is exact.
  const vfloat<kN> magic = splat<kN>(12582912.0f);
  const vfloat<kN> n = (x * 1.44269504088896341f + magic) - magic;
  const vfloat<kN> f = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  vfloat<kN> p = splat<kN>(1.9875691500e-4f);
  p = p * f + 1.3981999507e-3f;
  p = p * f + 8.3334519073e-3f;
  p = p * f + 4.1665795894e-2f;
  p = p * f + 1.6666665459e-1f;
  p = p * f + 5.0000001201e-1f;
  const vfloat<kN> e = p * (f * f) + f + 1.0f;
  const vint<kN> bits = (__builtin_convertvector(n, vint<kN>) + 127) << 23;
  vfloat<kN> scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  result = e * scale;
}

// A chunk's worth of lanes held in kChunk / kN vectors; lane j is parts[j / kN][j % kN].
template <int kN>
struct Chunk {
  static constexpr int kParts = kChunk / kN;
  vfloat<kN> parts[kParts];
  MOESIM_INLINE float lane(int j) const { return parts[j / kN][j % kN]; }
};

template <int kN>
MOESIM_INLINE float horizontal_max(const Chunk<kN>& v) {
  float m = v.lane(0);
  for (int i = 1; i < kChunk; ++i) m = v.lane(i) > m ? v.lane(i) : m;
  return m;
}
template <int kN>
MOESIM_INLINE float horizontal_sum(const Chunk<kN>& v) {
  // A fixed pairwise order, the same for every width and instruction set.
  float s8[8];
  for (int i = 0; i < 8; ++i) s8[i] = v.lane(i) + v.lane(i + 8);
  for (int i = 0; i < 4; ++i) s8[i] += s8[i + 4];
  return (s8[0] + s8[2]) + (s8[1] + s8[3]);
}

// Calls part(at, h) for part h (kN floats from at) of every whole kChunk-float chunk of [0, n),
// in order; returns where the scalar tail starts.
template <int kN, class Part>
MOESIM_INLINE int32_t for_each_part(int32_t n, Part&& part) {
  int32_t i = 0;
  for (; i + kChunk <= n; i += kChunk) {
#pragma GCC unroll 4
    for (int h = 0; h < Chunk<kN>::kParts; ++h) part(i + h * kN, h);
  }
  return i;
}

template <int kN>
MOESIM_INLINE float max(const float* x, int32_t n) {
  if (n < kChunk) {
    float m = -std::numeric_limits<float>::infinity();
    for (int32_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
  }
  Chunk<kN> vm;
#pragma GCC unroll 4
  for (int h = 0; h < Chunk<kN>::kParts; ++h) vm.parts[h] = load<kN>(x + h * kN);
  const int32_t tail = for_each_part<kN>(n, [&](int32_t at, int h) MOESIM_INLINE_LAMBDA {
    const vfloat<kN> v = load<kN>(x + at);
    vm.parts[h] = v > vm.parts[h] ? v : vm.parts[h];
  });
  float m = horizontal_max(vm);
  for (int32_t i = tail; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

template <int kN>
MOESIM_INLINE float sum(const float* x, int32_t n) {
  Chunk<kN> acc{};
  const int32_t tail = for_each_part<kN>(
      n, [&](int32_t at, int h) MOESIM_INLINE_LAMBDA { acc.parts[h] += load<kN>(x + at); });
  float s = horizontal_sum(acc);
  for (int32_t i = tail; i < n; ++i) s += x[i];
  return s;
}

// The sum of e^(x[i] - shift), also written to out[i] with kStore.
template <int kN, bool kStore>
MOESIM_INLINE float exp_sum(const float* x, float shift, float* out, int32_t n) {
  Chunk<kN> acc{};
  const int32_t tail = for_each_part<kN>(n, [&](int32_t at, int h) MOESIM_INLINE_LAMBDA {
    vfloat<kN> e;
    exp_vector<kN>(load<kN>(x + at) - shift, e);
    if constexpr (kStore) store<kN>(out + at, e);
    acc.parts[h] += e;
  });
  float s = horizontal_sum(acc);
  for (int32_t i = tail; i < n; ++i) {
    const float e = exp_scalar(x[i] - shift);
    if constexpr (kStore) out[i] = e;
    s += e;
  }
  return s;
}

// Softmax of x into p; returns logsumexp(x).
template <int kN>
MOESIM_INLINE float softmax(const float* x, float* p, int32_t n) {
  const float m = max<kN>(x, n);
  const float total = exp_sum<kN, true>(x, m, p, n);
  const float inv = 1.0f / total;
  const int32_t tail = for_each_part<kN>(
      n, [&](int32_t at, int) MOESIM_INLINE_LAMBDA { store<kN>(p + at, load<kN>(p + at) * inv); });
  for (int32_t i = tail; i < n; ++i) p[i] *= inv;
  return m + std::log(total);
}

template <int kN>
MOESIM_INLINE float logsumexp(const float* x, int32_t n) {
  const float m = max<kN>(x, n);
  return m + std::log(exp_sum<kN, false>(x, m, nullptr, n));
}

template <int kN>
MOESIM_INLINE void sigmoid(const float* x, float* p, int32_t n) {
  const int32_t tail = for_each_part<kN>(n, [&](int32_t at, int) MOESIM_INLINE_LAMBDA {
    vfloat<kN> e;
    exp_vector<kN>(-load<kN>(x + at), e);
    store<kN>(p + at, 1.0f / (e + 1.0f));
  });
  for (int32_t i = tail; i < n; ++i) p[i] = 1.0f / (exp_scalar(-x[i]) + 1.0f);
}

// p = sigmoid(x) and q = p + b in one pass: the same values as sigmoid() then add().
template <int kN>
MOESIM_INLINE void sigmoid_and_add(const float* x, const float* b, float* p, float* q, int32_t n) {
  const int32_t tail = for_each_part<kN>(n, [&](int32_t at, int) MOESIM_INLINE_LAMBDA {
    vfloat<kN> e;
    exp_vector<kN>(-load<kN>(x + at), e);
    const vfloat<kN> s = 1.0f / (e + 1.0f);
    store<kN>(p + at, s);
    store<kN>(q + at, s + load<kN>(b + at));
  });
  for (int32_t i = tail; i < n; ++i) {
    p[i] = 1.0f / (exp_scalar(-x[i]) + 1.0f);
    q[i] = p[i] + b[i];
  }
}

// acc[i] += x[i] * scale
template <int kN>
MOESIM_INLINE void accumulate(const float* x, float scale, float* acc, int32_t n) {
  const int32_t tail = for_each_part<kN>(n, [&](int32_t at, int) MOESIM_INLINE_LAMBDA {
    store<kN>(acc + at, load<kN>(acc + at) + load<kN>(x + at) * scale);
  });
  for (int32_t i = tail; i < n; ++i) acc[i] += x[i] * scale;
}

template <int kN>
MOESIM_INLINE void add(const float* a, const float* b, float* out, int32_t n) {
  const int32_t tail = for_each_part<kN>(n, [&](int32_t at, int) MOESIM_INLINE_LAMBDA {
    store<kN>(out + at, load<kN>(a + at) + load<kN>(b + at));
  });
  for (int32_t i = tail; i < n; ++i) out[i] = a[i] + b[i];
}

}  // namespace moesim::simd

#pragma GCC diagnostic pop
