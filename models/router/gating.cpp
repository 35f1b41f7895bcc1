#include "models/router/gating.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "models/router/simd.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>  // declares the AVX2 builtins (GCC declares them with the first AVX region)
#endif

// The vector helpers of simd.h are always inlined; GCC still reports the baseline ABI of their
// vector values at the end of the file.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace moesim {
namespace {

using simd::kChunk;

// Per width: lane indices, the butterfly swaps (lane l meets lane l ^ N/2, then ^ N/4, ..., ^ 1:
// top-two merges, horizontal minimum) and the shuffle masks of the merge levels, for groups in
// blocks of N, N/2, ..., 2 lanes: x takes the first half of every block of a (lanes 0..N-1) then
// of b (N..2N-1), y the second halves.
template <int kN>
struct LaneTables;
template <>
struct LaneTables<16> {
  static constexpr int kLevels = 4;
  static inline const simd::vint<16> kIndex = {0, 1, 2,  3,  4,  5,  6,  7,
                                               8, 9, 10, 11, 12, 13, 14, 15};
  static inline const simd::vint<16> kButterfly[kLevels] = {
      {8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7},
      {4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11},
      {2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13},
      {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14}};
  static inline const simd::vint<16> kMergeX[kLevels] = {
      {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
      {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27},
      {0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29},
      {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}};
  static inline const simd::vint<16> kMergeY[kLevels] = {
      {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31},
      {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31},
      {2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31},
      {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}};
};
template <>
struct LaneTables<8> {
  static constexpr int kLevels = 3;
  static inline const simd::vint<8> kIndex = {0, 1, 2, 3, 4, 5, 6, 7};
  static inline const simd::vint<8> kButterfly[kLevels] = {
      {4, 5, 6, 7, 0, 1, 2, 3}, {2, 3, 0, 1, 6, 7, 4, 5}, {1, 0, 3, 2, 5, 4, 7, 6}};
  static inline const simd::vint<8> kMergeX[kLevels] = {
      {0, 1, 2, 3, 8, 9, 10, 11}, {0, 1, 4, 5, 8, 9, 12, 13}, {0, 2, 4, 6, 8, 10, 12, 14}};
  static inline const simd::vint<8> kMergeY[kLevels] = {
      {4, 5, 6, 7, 12, 13, 14, 15}, {2, 3, 6, 7, 10, 11, 14, 15}, {1, 3, 5, 7, 9, 11, 13, 15}};
};
template <>
struct LaneTables<4> {
  static constexpr int kLevels = 2;
  static inline const simd::vint<4> kIndex = {0, 1, 2, 3};
  static inline const simd::vint<4> kButterfly[kLevels] = {{2, 3, 0, 1}, {1, 0, 3, 2}};
  static inline const simd::vint<4> kMergeX[kLevels] = {{0, 1, 4, 5}, {0, 2, 4, 6}};
  static inline const simd::vint<4> kMergeY[kLevels] = {{2, 3, 6, 7}, {1, 3, 5, 7}};
};

// Inserts (value, id) into best[0..filled) kept in descending order, at most k long. An equal
// value goes after those already there, so with ids visited in increasing order ties favour the
// lower id.
MOESIM_INLINE void insert_best(float value, int32_t id, int32_t k, float* best_values,
                               int32_t* best_ids, int32_t& filled) {
  int32_t pos;
  if (filled < k) {
    pos = filled++;
  } else if (value > best_values[k - 1]) {
    pos = k - 1;
  } else {
    return;
  }
  while (pos > 0 && best_values[pos - 1] < value) {
    best_values[pos] = best_values[pos - 1];
    best_ids[pos] = best_ids[pos - 1];
    --pos;
  }
  best_values[pos] = value;
  best_ids[pos] = id;
}

constexpr int32_t kMaxTopK = 64;
constexpr int32_t kMaxGroups = 256;

MOESIM_INLINE void top_k_impl(const float* scores, int32_t n, int32_t k, int32_t* ids) {
  float best[kMaxTopK];
  int32_t filled = 0;
  for (int32_t i = 0; i < n; ++i) insert_best(scores[i], i, k, best, ids, filled);
}

// (first, second) of a and b per lane merged into the top two of the four: the larger best,
// and the largest of the smaller best and both seconds.
template <int kN>
MOESIM_INLINE void merge_top_two(simd::vfloat<kN>& f, simd::vfloat<kN>& s,
                                 const simd::vfloat<kN>& f2, const simd::vfloat<kN>& s2) {
  const simd::vfloat<kN> smaller = f2 < f ? f2 : f;
  const simd::vfloat<kN> seconds = s2 > s ? s2 : s;
  f = f2 > f ? f2 : f;
  s = smaller > seconds ? smaller : seconds;
}

// The two largest of s[0..n): per-lane top two over kN-wide vectors, then merged across lanes.
template <int kN>
MOESIM_INLINE void top_two(const float* s, int32_t n, float& first_out, float& second_out) {
  using V = simd::vfloat<kN>;
  constexpr float kLowest = -std::numeric_limits<float>::infinity();
  float first = kLowest, second = kLowest;
  int32_t i = 0;
  if (n >= 2 * kN) {
    V f = simd::load<kN>(s);
    V sec = simd::splat<kN>(kLowest);
    for (i = kN; i + kN <= n; i += kN) {
      const V v = simd::load<kN>(s + i);
      const V lower = v < f ? v : f;
      f = v > f ? v : f;
      sec = lower > sec ? lower : sec;
    }
    // Butterfly merge: lane l meets lane l ^ d.
    for (const simd::vint<kN>& swap : LaneTables<kN>::kButterfly) {
      merge_top_two<kN>(f, sec, __builtin_shuffle(f, swap), __builtin_shuffle(sec, swap));
    }
    first = f[0];
    second = sec[0];
  }
  for (; i < n; ++i) {
    second = std::max(second, std::min(first, s[i]));
    first = std::max(first, s[i]);
  }
  first_out = first;
  second_out = second;
}

template <int kN>
MOESIM_INLINE void group_limited_impl(const float* scores, int32_t n, int32_t groups,
                                      int32_t topk_group, int32_t k, int32_t* ids) {
  const int32_t group_size = n / groups;
  float group_best[kMaxGroups];
  float group_second[kMaxGroups];
  int32_t group_ids[kMaxGroups];
  int32_t groups_filled = 0;
  for (int32_t g = 0; g < groups; ++g) {
    float first, second;
    top_two<kN>(scores + static_cast<ptrdiff_t>(g) * group_size, group_size, first, second);
    group_second[g] = group_size >= 2 ? second : first;
    const float group_score = group_size >= 2 ? first + second : first;
    insert_best(group_score, g, topk_group, group_best, group_ids, groups_filled);
  }
  // Visit the kept groups in increasing order so that ties still favour the lower expert index.
  std::sort(group_ids, group_ids + topk_group);
  // Each kept group holds two scores >= its second best, so when k <= 2 topk_group the k-th best
  // candidate is >= the least of those: smaller scores are skipped without an insertion test.
  float threshold = -std::numeric_limits<float>::infinity();
  if (k <= 2 * topk_group) {
    threshold = std::numeric_limits<float>::infinity();
    for (int32_t j = 0; j < topk_group; ++j) {
      threshold = std::min(threshold, group_second[group_ids[j]]);
    }
  }
  float best[kMaxTopK];
  int32_t filled = 0;
  for (int32_t j = 0; j < topk_group; ++j) {
    const int32_t base = group_ids[j] * group_size;
    for (int32_t i = 0; i < group_size; ++i) {
      const float v = scores[base + i];
      if (v >= threshold) insert_best(v, base + i, k, best, ids, filled);
    }
  }
}

// ---- Group-limited top-k for groups of whole vectors (DeepSeek-V3: 8 groups of 32) ----
// The same selection as group_limited_impl, without its serial parts: the groups' top two are
// merged across lanes for all groups at once, the kept groups and the final k are chosen by
// counting how many beat each one (rank), and only scores at or above the threshold are looked
// at. Ties break as in group_limited_impl: the lower group, then the lower expert, first.

constexpr int32_t kFastMaxExperts = 1024;

[[gnu::noinline]] void group_limited_out_of_line(const float* scores, int32_t n, int32_t groups,
                                                 int32_t topk_group, int32_t k, int32_t* ids) {
  group_limited_impl<4>(scores, n, groups, topk_group, k, ids);
}

// Whether group_limited_fast applies to this shape at kN lanes: at most one group per lane.
template <int kN>
bool group_limited_fast_applies(int32_t n, int32_t groups, int32_t topk_group, int32_t k) {
  return groups <= kN && n <= kFastMaxExperts && n % groups == 0 && (n / groups) % kN == 0 &&
         k <= 2 * topk_group;
}

// Comparison results are only used as conditions of ?: with varying arms, and lane masks come
// from sign bits: GCC otherwise turns a mask into an integer vector by going lane by lane when
// the kernel is inlined into an AVX-512F function.

// The sign bits of `v`'s lanes as bits (lane i -> bit i). AVX2: vmovmskps. Otherwise an
// arithmetic shift to -1 / 0, narrowed to bytes, then each 8-byte word's top bits gathered by one
// multiplication (GCC narrows well for AVX-512 and SSE, lane by lane for AVX2). For floats, the
// sign of x - t is set exactly when x < t (x - t is never -0 for finite x, t).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MOESIM_HAS_AVX2_TARGET 1
// Only ever inlined into the AVX2 target function, where the builtin can be expanded.
MOESIM_INLINE uint32_t movemask_avx2(const simd::vfloat<8>& v) {
  return static_cast<uint32_t>(__builtin_ia32_movmskps256(v));
}
#endif

template <class W>
MOESIM_INLINE uint32_t lane_bits(const simd::vint<W::kLanes>& v) {
#ifdef MOESIM_HAS_AVX2_TARGET
  if constexpr (W::kAvx2) {
    simd::vfloat<8> f;
    std::memcpy(&f, &v, sizeof(f));
    return movemask_avx2(f);
  }
#endif
  constexpr int kN = W::kLanes;
  typedef int8_t vbyte __attribute__((vector_size(kN)));
  const vbyte bytes = __builtin_convertvector(v >> 31, vbyte);
  uint64_t words[2] = {0, 0};
  std::memcpy(words, &bytes, sizeof(bytes));
  constexpr uint64_t kTopBits = 0x8080808080808080ull;
  constexpr uint64_t kGather = 0x0002040810204081ull;
  const auto lo = static_cast<uint32_t>(((words[0] & kTopBits) * kGather) >> 56);
  const auto hi = static_cast<uint32_t>(((words[1] & kTopBits) * kGather) >> 56);
  return lo | (hi << 8);
}
template <class W>
MOESIM_INLINE uint32_t lane_bits(const simd::vfloat<W::kLanes>& v) {
  simd::vint<W::kLanes> bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return lane_bits<W>(bits);
}

// -1 in the lanes whose `value` is beaten by `other`, the value of entry `index`: a higher value,
// or an equal one at a lower index (lane > index). Sign bits of differences again: other > value
// exactly when value - other is negative, other >= value when other - value is not.
template <int kN>
MOESIM_INLINE simd::vint<kN> beats(const simd::vfloat<kN>& other, const simd::vfloat<kN>& value,
                                   int32_t index, const simd::vint<kN>& lane) {
  const simd::vfloat<kN> below = value - other;
  const simd::vfloat<kN> above = other - value;
  simd::vint<kN> greater, not_less;
  std::memcpy(&greater, &below, sizeof(greater));
  std::memcpy(&not_less, &above, sizeof(not_less));
  greater >>= 31;
  not_less = ~(not_less >> 31);
  const simd::vint<kN> after_index = (index - lane) >> 31;
  return (after_index & not_less) | (~after_index & greater);
}

// One level: the pair (a, b) of vectors with groups in blocks of `width` lanes becomes one vector
// with blocks of width / 2: a's groups, then b's, in order.
// Inputs by value: the result may overwrite a.
template <int kN>
MOESIM_INLINE void merge_level(int level, simd::vfloat<kN> fa, simd::vfloat<kN> sa,
                               simd::vfloat<kN> fb, simd::vfloat<kN> sb, simd::vfloat<kN>& f,
                               simd::vfloat<kN>& s) {
  const simd::vint<kN>& x = LaneTables<kN>::kMergeX[level];
  const simd::vint<kN>& y = LaneTables<kN>::kMergeY[level];
  f = __builtin_shuffle(fa, fb, x);
  s = __builtin_shuffle(sa, sb, x);
  merge_top_two<kN>(f, s, __builtin_shuffle(fa, fb, y), __builtin_shuffle(sa, sb, y));
}

// The smallest lane of v.
template <int kN>
MOESIM_INLINE float horizontal_min(simd::vfloat<kN> v) {
  for (const simd::vint<kN>& swap : LaneTables<kN>::kButterfly) {
    const simd::vfloat<kN> other = __builtin_shuffle(v, swap);
    v = other < v ? other : v;
  }
  return v[0];
}

// kPadded: the group count rounded up to a power of two (at most the lane count), so the merges
// unroll into registers.
template <class W, int32_t kPadded>
MOESIM_INLINE void group_limited_fast(const float* scores, int32_t n, int32_t groups,
                                      int32_t topk_group, int32_t k, int32_t* ids) {
  constexpr int kN = W::kLanes;
  static_assert(kPadded <= kN);
  using vfloat = simd::vfloat<kN>;
  using vint = simd::vint<kN>;
  constexpr float kLowest = -std::numeric_limits<float>::infinity();
  const int32_t group_size = n / groups;
  const int32_t vectors_per_group = group_size / kN;
  // Per group, per lane, the best and second best of that lane's column.
  vfloat f[kPadded], s[kPadded];
#pragma GCC unroll 16
  for (int32_t g = 0; g < kPadded; ++g) {
    f[g] = simd::splat<kN>(kLowest);
    s[g] = f[g];
    if (g >= groups) continue;
    const float* x = scores + static_cast<ptrdiff_t>(g) * group_size;
    f[g] = simd::load<kN>(x);
    for (int32_t j = 1; j < vectors_per_group; ++j) {
      const vfloat v = simd::load<kN>(x + j * kN);
      const vfloat lower = v < f[g] ? v : f[g];
      f[g] = v > f[g] ? v : f[g];
      s[g] = lower > s[g] ? lower : s[g];
    }
  }
  // Pairs of vectors merge until one holds every group (kN / kPadded lanes each), then the lanes
  // of each group merge within that vector.
  int32_t level = 0;
#pragma GCC unroll 4
  for (int32_t count = kPadded; count > 1; count /= 2, ++level) {
#pragma GCC unroll 8
    for (int32_t i = 0; i < count / 2; ++i) {
      merge_level<kN>(level, f[2 * i], s[2 * i], f[2 * i + 1], s[2 * i + 1], f[i], s[i]);
    }
  }
#pragma GCC unroll 4
  for (int32_t width = kN >> level; width > 1; width /= 2, ++level) {
    merge_level<kN>(level, f[0], s[0], f[0], s[0], f[0], s[0]);
  }
  // Lane g of f[0] and s[0] now holds group g's best and second best. Group g's rank: how many
  // groups beat it (a higher score, or an equal one with a lower index).
  const vint& lane = LaneTables<kN>::kIndex;
  const vfloat group_score = f[0] + s[0];
  float scores_of_groups[kN];
  simd::store<kN>(scores_of_groups, group_score);
  // Padding groups score -inf and come after the real ones: they never beat a real group.
  vint rank{};
#pragma GCC unroll 16
  for (int32_t h = 0; h < kPadded; ++h) {
    rank -= beats<kN>(simd::splat<kN>(scores_of_groups[h]), group_score, h, lane);
  }
  // -1 in kept lanes: rank below topk_group and a real group.
  const vint kept_lanes = ((rank - topk_group) >> 31) & ((lane - groups) >> 31);
  const uint32_t kept = lane_bits<W>(kept_lanes);
  // Each kept group holds two scores >= its second best, and k <= 2 topk_group: the k-th best
  // is at least the least of those seconds.
  vint second_bits, max_bits;
  const vfloat largest = simd::splat<kN>(std::numeric_limits<float>::max());
  std::memcpy(&second_bits, &s[0], sizeof(second_bits));
  std::memcpy(&max_bits, &largest, sizeof(max_bits));
  const vint kept_second_bits = (second_bits & kept_lanes) | (max_bits & ~kept_lanes);
  vfloat kept_seconds;
  std::memcpy(&kept_seconds, &kept_second_bits, sizeof(kept_seconds));
  const vfloat t = simd::splat<kN>(horizontal_min<kN>(kept_seconds));
  // Lanes at or above the threshold, kept groups in increasing order, kN bits per vector; the
  // expert of bit p is chunk_first[p / kN] + p % kN.
  constexpr int32_t kWords = kFastMaxExperts / 64;
  constexpr int32_t kVectorsPerWord = 64 / kN;
  constexpr uint64_t kVectorBits = (uint64_t{1} << kN) - 1;
  uint64_t words[kWords] = {};
  int32_t chunk_first[kFastMaxExperts / kN];
  int32_t chunks = 0;
  for (uint32_t groups_left = kept; groups_left != 0; groups_left &= groups_left - 1) {
    const int32_t base = __builtin_ctz(groups_left) * group_size;
    for (int32_t j = 0; j < vectors_per_group; ++j, ++chunks) {
      chunk_first[chunks] = base + j * kN;
      const uint64_t bits = ~lane_bits<W>(simd::load<kN>(scores + base + j * kN) - t) & kVectorBits;
      words[chunks / kVectorsPerWord] |= bits << (kN * (chunks % kVectorsPerWord));
    }
  }
  float candidate_values[kFastMaxExperts + kChunk];
  int32_t candidate_ids[kFastMaxExperts + kChunk];
  int32_t candidates = 0;
  for (int32_t w = 0; w < (chunks + kVectorsPerWord - 1) / kVectorsPerWord; ++w) {
    for (uint64_t bits = words[w]; bits != 0; bits &= bits - 1) {
      const int32_t p = 64 * w + __builtin_ctzll(bits);
      const int32_t id = chunk_first[p / kN] + p % kN;
      candidate_values[candidates] = scores[id];
      candidate_ids[candidates] = id;
      ++candidates;
    }
  }
  if (candidates < k) {
    // Only when scores are NaN: the threshold argument needs ordered values.
    group_limited_out_of_line(scores, n, groups, topk_group, k, ids);
    return;
  }
  if (candidates > kChunk) {
    float best[kMaxTopK];
    int32_t filled = 0;
    for (int32_t c = 0; c < candidates; ++c) {
      insert_best(candidate_values[c], candidate_ids[c], k, best, ids, filled);
    }
    return;
  }
  // Rank among at most kChunk candidates, kN at a time. Padding lanes (-inf, after the real ones)
  // never beat a real candidate, and rank at or past `candidates` >= k themselves.
  for (int32_t c = candidates; c < kChunk; ++c) candidate_values[c] = kLowest;
  constexpr int kParts = kChunk / kN;
  int32_t ranks[kChunk];
  const int parts = (candidates + kN - 1) / kN;
#pragma GCC unroll 4
  for (int h = 0; h < kParts; ++h) {
    if (h >= parts) break;
    const vfloat values = simd::load<kN>(candidate_values + h * kN);
    const vint lanes = lane + h * kN;
    vint candidate_rank{};
    for (int32_t c = 0; c < candidates; ++c) {
      candidate_rank -= beats<kN>(simd::splat<kN>(candidate_values[c]), values, c, lanes);
    }
    std::memcpy(ranks + h * kN, &candidate_rank, sizeof(candidate_rank));
  }
  int32_t placed[kMaxTopK + 1];
  for (int32_t c = 0; c < parts * kN; ++c) {
    placed[std::min(c < candidates ? ranks[c] : k, k)] = candidate_ids[c];
  }
  std::copy_n(placed, k, ids);
}

// group_limited_fast for the shape's padded group count.
template <class W>
MOESIM_INLINE void group_limited_select(const float* scores, int32_t n, int32_t groups,
                                        int32_t topk_group, int32_t k, int32_t* ids) {
  constexpr int kN = W::kLanes;
  if constexpr (kN >= 16) {
    if (groups > 8) {
      group_limited_fast<W, 16>(scores, n, groups, topk_group, k, ids);
      return;
    }
  }
  if constexpr (kN >= 8) {
    if (groups > 4) {
      group_limited_fast<W, 8>(scores, n, groups, topk_group, k, ids);
      return;
    }
  }
  if (groups > 2) {
    group_limited_fast<W, 4>(scores, n, groups, topk_group, k, ids);
  } else if (groups > 1) {
    group_limited_fast<W, 2>(scores, n, groups, topk_group, k, ids);
  } else {
    group_limited_fast<W, 1>(scores, n, groups, topk_group, k, ids);
  }
}

struct GroupLimitedArgs {
  const float* scores;
  int32_t n, groups, topk_group, k;
  int32_t* ids;
};

template <class W>
MOESIM_INLINE void group_limited_row_body(const GroupLimitedArgs& a) {
  if (group_limited_fast_applies<W::kLanes>(a.n, a.groups, a.topk_group, a.k)) {
    group_limited_select<W>(a.scores, a.n, a.groups, a.topk_group, a.k, a.ids);
  } else {
    group_limited_impl<W::kLanes>(a.scores, a.n, a.groups, a.topk_group, a.k, a.ids);
  }
}

MOESIM_DISPATCH(group_limited_row, GroupLimitedArgs)

inline float softplus(float x) {
  return x > 20.0f ? x : std::log1p(std::exp(x));
}

// Rows a LogitRowSource makes at a time: 32 rows of 256 experts are 32 KB, within L1.
constexpr int32_t kLogitBlockRows = 32;

struct BatchOutputs {
  float* pair_scores;      // tokens x k, or null
  float* all_scores;       // tokens x E (expert choice), or null
  float* probability_sum;  // E, or null when no statistics
  double* lse_square_sum;  // or null
};

struct ScoreAndSelectArgs {
  const RouterSpec& spec;
  const LogitRows& logits;
  std::span<const float> noise;
  std::span<const float> bias;
  GatingScratch& scratch;
  RoutingDecision& out;
  BatchOutputs outputs;
};

// The per-token loop for top-k routing: scores, selection and weights, written at each row's
// token. Compiled for several instruction sets (MOESIM_DISPATCH).
template <class W>
MOESIM_INLINE void score_and_select_body(const ScoreAndSelectArgs& args) {
  constexpr int kN = W::kLanes;
  const RouterSpec& spec = args.spec;
  const LogitRows& logits = args.logits;
  const std::span<const float> noise = args.noise;
  const std::span<const float> bias = args.bias;
  GatingScratch& scratch = args.scratch;
  RoutingDecision& out = args.out;
  const BatchOutputs outputs = args.outputs;
  const int32_t E = spec.experts;
  const int32_t k = spec.top_k;
  const bool expert_choice = spec.selection == RouterSelection::kExpertChoice;
  const bool fast_groups = spec.selection == RouterSelection::kGroupLimitedTopK &&
                           group_limited_fast_applies<kN>(E, spec.groups, spec.topk_group, k);
  float* row = scratch.row.data();
  float* choice = scratch.choice.data();
  float* probs = nullptr;
  double lse_square_sum = 0.0;
  float* block = scratch.logit_block.data();
  for (int32_t r = 0; r < logits.rows; ++r) {
    const int32_t t = logits.token_of_row.empty() ? r : logits.token_of_row[r];
    const float* l;
    if (logits.source) {
      const int32_t in_block = r % kLogitBlockRows;
      if (in_block == 0) {
        logits.source->rows(r, std::min(kLogitBlockRows, logits.rows - r), block,
                            logits.row_stride);
      }
      l = block + static_cast<ptrdiff_t>(in_block) * logits.row_stride;
    } else {
      l = logits.data + static_cast<ptrdiff_t>(r) * logits.row_stride;
    }
    if (spec.noisy) {
      const float* noise_logits = l + E;
      const float* z = noise.data() + static_cast<ptrdiff_t>(t) * E;
      for (int32_t i = 0; i < E; ++i) row[i] = l[i] + z[i] * softplus(noise_logits[i]);
      l = row;
    }
    probs = expert_choice ? outputs.all_scores + static_cast<ptrdiff_t>(t) * E : choice;
    float lse = 0.0f;
    if (spec.scoring == RouterScoring::kSoftmax) {
      lse = simd::softmax<kN>(l, probs, E);
      if (outputs.probability_sum) simd::accumulate<kN>(probs, 1.0f, outputs.probability_sum, E);
    } else if (!expert_choice && !bias.empty()) {
      // With noisy gating l is `row`, which the biased scores overwrite: logsumexp first.
      if (outputs.probability_sum) lse = simd::logsumexp<kN>(l, E);
      simd::sigmoid_and_add<kN>(l, bias.data(), probs, row, E);
      if (outputs.probability_sum) {
        const float total = simd::sum<kN>(probs, E);
        simd::accumulate<kN>(probs, total > 0.0f ? 1.0f / total : 0.0f, outputs.probability_sum, E);
      }
    } else {
      simd::sigmoid<kN>(l, probs, E);
      if (outputs.probability_sum) {
        lse = simd::logsumexp<kN>(l, E);
        const float total = simd::sum<kN>(probs, E);
        simd::accumulate<kN>(probs, total > 0.0f ? 1.0f / total : 0.0f, outputs.probability_sum, E);
      }
    }
    if (outputs.lse_square_sum) lse_square_sum += static_cast<double>(lse) * lse;
    if (expert_choice) continue;

    // Selection sees score + bias; the weights use the unbiased scores.
    const float* selection_scores = probs;
    if (!bias.empty()) {
      // Sigmoid scores came with their biased copy in `row`.
      if (spec.scoring == RouterScoring::kSoftmax) simd::add<kN>(probs, bias.data(), row, E);
      selection_scores = row;
    }
    int32_t* ids = out.expert_ids.data() + static_cast<ptrdiff_t>(t) * k;
    // Selection fills all k slots unless scores are NaN; then the rest stay empty.
    std::fill_n(ids, k, kNoExpert);
    if (fast_groups) {
      group_limited_select<W>(selection_scores, E, spec.groups, spec.topk_group, k, ids);
    } else if (spec.selection == RouterSelection::kGroupLimitedTopK) {
      group_limited_impl<kN>(selection_scores, E, spec.groups, spec.topk_group, k, ids);
    } else {
      top_k_impl(selection_scores, E, k, ids);
    }
    float* weights = out.weights.data() + static_cast<ptrdiff_t>(t) * k;
    float total = 0.0f;
    for (int32_t j = 0; j < k; ++j) {
      weights[j] = ids[j] == kNoExpert ? 0.0f : probs[ids[j]];
      total += weights[j];
    }
    if (outputs.pair_scores) {
      std::copy(weights, weights + k, outputs.pair_scores + static_cast<ptrdiff_t>(t) * k);
    }
    const float scale = static_cast<float>(spec.routed_scaling) *
                        (spec.renormalize && total > 0.0f ? 1.0f / total : 1.0f);
    for (int32_t j = 0; j < k; ++j) weights[j] *= scale;
  }
  if (outputs.lse_square_sum) *outputs.lse_square_sum = lse_square_sum;
}

MOESIM_DISPATCH(score_and_select, ScoreAndSelectArgs)

void route_expert_choice(const RouterSpec& spec, int32_t tokens, GatingScratch& scratch,
                         RoutingDecision& out) {
  const int32_t E = spec.experts;
  const double factor = spec.capacity_factor > 0.0 ? spec.capacity_factor : 1.0;
  const int32_t capacity =
      std::min(tokens, expert_capacity(factor, tokens, spec.top_k, spec.experts));
  const float* scores = scratch.scores.data();
  // chosen[e * capacity + j]: the tokens expert e takes.
  scratch.pair_index.resize(static_cast<size_t>(E) * capacity);
  scratch.candidate_tokens.resize(tokens);
  scratch.counts.assign(tokens, 0);
  for (int32_t e = 0; e < E; ++e) {
    auto& cand = scratch.candidate_tokens;
    for (int32_t t = 0; t < tokens; ++t) cand[t] = t;
    const auto better = [&](int32_t a, int32_t b) {
      const float sa = scores[static_cast<ptrdiff_t>(a) * E + e];
      const float sb = scores[static_cast<ptrdiff_t>(b) * E + e];
      return sa > sb || (sa == sb && a < b);
    };
    std::nth_element(cand.begin(), cand.begin() + capacity, cand.end(), better);
    for (int32_t j = 0; j < capacity; ++j) {
      scratch.pair_index[static_cast<size_t>(e) * capacity + j] = cand[j];
      ++scratch.counts[cand[j]];
    }
  }
  int32_t widest = 0;
  for (int32_t t = 0; t < tokens; ++t) widest = std::max(widest, scratch.counts[t]);
  out.reset(tokens, E, widest);
  std::fill(scratch.counts.begin(), scratch.counts.end(), 0);
  // Experts in increasing order fill each token's row in increasing expert order.
  for (int32_t e = 0; e < E; ++e) {
    for (int32_t j = 0; j < capacity; ++j) {
      const int32_t t = scratch.pair_index[static_cast<size_t>(e) * capacity + j];
      const size_t slot = static_cast<size_t>(t) * widest + scratch.counts[t]++;
      out.expert_ids[slot] = e;
      out.weights[slot] =
          scores[static_cast<ptrdiff_t>(t) * E + e] * static_cast<float>(spec.routed_scaling);
    }
    out.tokens_per_expert[e] = capacity;
  }
}

}  // namespace

int32_t expert_capacity(double capacity_factor, int32_t tokens, int32_t top_k, int32_t experts) {
  if (capacity_factor <= 0.0) return 0;
  const double exact = capacity_factor * static_cast<double>(tokens) * top_k / experts;
  // Guard against 2.0000000001 becoming 3 from rounding in the product.
  const double nearest = std::round(exact);
  const double c =
      std::abs(exact - nearest) < 1e-9 * std::max(1.0, exact) ? nearest : std::ceil(exact);
  return static_cast<int32_t>(c);
}

void score_row(RouterScoring scoring, std::span<const float> logits, std::span<float> scores) {
  if (scores.size() != logits.size()) throw std::invalid_argument("score_row: size mismatch");
  const auto n = static_cast<int32_t>(logits.size());
  if (scoring == RouterScoring::kSoftmax) {
    simd::softmax<4>(logits.data(), scores.data(), n);
  } else {
    simd::sigmoid<4>(logits.data(), scores.data(), n);
  }
}

void top_k_row(std::span<const float> scores, std::span<int32_t> ids) {
  const auto k = static_cast<int32_t>(ids.size());
  if (k < 1 || k > kMaxTopK || ids.size() > scores.size()) {
    throw std::invalid_argument("top_k_row: need 1 <= k <= min(64, experts)");
  }
  top_k_impl(scores.data(), static_cast<int32_t>(scores.size()), k, ids.data());
}

void group_limited_top_k_row(std::span<const float> scores, int32_t groups, int32_t topk_group,
                             std::span<int32_t> ids, KernelWidth width) {
  const auto n = static_cast<int32_t>(scores.size());
  const auto k = static_cast<int32_t>(ids.size());
  if (groups < 1 || groups > kMaxGroups || n % groups != 0 || topk_group < 1 ||
      topk_group > groups || k < 1 || k > kMaxTopK || k > topk_group * (n / groups)) {
    throw std::invalid_argument(
        "group_limited_top_k_row: need groups dividing the experts, 1 <= topk_group <= groups "
        "and 1 <= k <= topk_group * group size");
  }
  group_limited_row(GroupLimitedArgs{scores.data(), n, groups, topk_group, k, ids.data()}, width);
}

void apply_capacity(int32_t capacity, DropPolicy policy, std::span<const float> pair_scores,
                    RoutingDecision& out, GatingScratch& scratch) {
  auto& kept = out.tokens_per_expert;
  kept.assign(out.experts, 0);
  out.dropped_pairs = 0;
  const size_t pairs = out.expert_ids.size();
  if (capacity <= 0 || policy == DropPolicy::kByArrival) {
    // Pairs are stored in token order, so this is arrival order. Without branches on the
    // capacity test: under skewed load it goes either way unpredictably.
    const int32_t limit = capacity <= 0 ? std::numeric_limits<int32_t>::max() : capacity;
    int64_t dropped_pairs = 0;
    for (size_t p = 0; p < pairs; ++p) {
      const int32_t e = out.expert_ids[p];
      if (e == kNoExpert || out.dropped[p]) continue;
      const int32_t count = kept[e];
      const bool over = count >= limit;
      kept[e] = count + !over;
      out.dropped[p] = over;
      dropped_pairs += over;
    }
    out.dropped_pairs = dropped_pairs;
    return;
  }
  if (pair_scores.size() != pairs) {
    throw std::invalid_argument("apply_capacity: drop by score needs one score per pair");
  }
  // Bucket pairs by expert (counting sort keeps token order inside a bucket).
  const int32_t E = out.experts;
  auto& offsets = scratch.offsets;
  offsets.assign(E + 1, 0);
  for (size_t p = 0; p < pairs; ++p) {
    const int32_t e = out.expert_ids[p];
    if (e != kNoExpert && !out.dropped[p]) ++offsets[e + 1];
  }
  for (int32_t e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  auto& bucket = scratch.pair_index;
  bucket.resize(offsets[E]);
  scratch.counts.assign(E, 0);
  for (size_t p = 0; p < pairs; ++p) {
    const int32_t e = out.expert_ids[p];
    if (e != kNoExpert && !out.dropped[p]) {
      bucket[offsets[e] + scratch.counts[e]++] = static_cast<int32_t>(p);
    }
  }
  for (int32_t e = 0; e < E; ++e) {
    const auto begin = bucket.begin() + offsets[e];
    const auto end = bucket.begin() + offsets[e + 1];
    const auto n = static_cast<int32_t>(end - begin);
    if (n > capacity) {
      std::nth_element(begin, begin + capacity, end, [&](int32_t a, int32_t b) {
        return pair_scores[a] > pair_scores[b] || (pair_scores[a] == pair_scores[b] && a < b);
      });
      for (auto it = begin + capacity; it != end; ++it) out.dropped[*it] = 1;
      out.dropped_pairs += n - capacity;
    }
    kept[e] = std::min(n, capacity);
  }
}

void route_from_logits(const RouterSpec& spec, const LogitRows& logits,
                       std::span<const float> noise, std::span<const float> bias,
                       GatingScratch& scratch, RoutingDecision& out, RouterStats* stats,
                       KernelWidth width) {
  const int32_t E = spec.experts;
  const int32_t T = logits.rows;
  const int32_t k = spec.top_k;
  if (logits.row_stride < (spec.noisy ? 2 * E : E)) {
    throw std::invalid_argument("route_from_logits: rows hold fewer than the needed logits");
  }
  if (spec.noisy && noise.size() != static_cast<size_t>(T) * E) {
    throw std::invalid_argument("route_from_logits: noisy gating needs tokens x experts normals");
  }
  if (!bias.empty() && bias.size() != static_cast<size_t>(E)) {
    throw std::invalid_argument("route_from_logits: bias must have one value per expert");
  }
  const bool expert_choice = spec.selection == RouterSelection::kExpertChoice;
  const int32_t capacity = expert_choice ? 0 : expert_capacity(spec.capacity_factor, T, k, E);
  const bool by_score = capacity > 0 && spec.drop_policy == DropPolicy::kByLowestScore;
  scratch.row.resize(E);
  scratch.choice.resize(E);
  if (logits.source) {
    scratch.logit_block.resize(static_cast<size_t>(kLogitBlockRows) * logits.row_stride);
  }
  if (by_score) scratch.pair_scores.resize(static_cast<size_t>(T) * k);
  if (expert_choice) scratch.scores.resize(static_cast<size_t>(T) * E);
  if (stats) scratch.probability_sum.assign(E, 0.0f);
  double lse_square_sum = 0.0;
  // The top-k loop writes every token's ids and weights (each row, rows in any order).
  if (!expert_choice) out.reset_for_overwrite(T, E, k);
  score_and_select(ScoreAndSelectArgs{spec, logits, noise, bias, scratch, out,
                                      BatchOutputs{by_score ? scratch.pair_scores.data() : nullptr,
                                                   expert_choice ? scratch.scores.data() : nullptr,
                                                   stats ? scratch.probability_sum.data() : nullptr,
                                                   stats ? &lse_square_sum : nullptr}},
                   width);
  if (expert_choice) {
    route_expert_choice(spec, T, scratch, out);
  } else {
    apply_capacity(
        capacity, spec.drop_policy,
        by_score ? std::span<const float>(scratch.pair_scores) : std::span<const float>(), out,
        scratch);
  }
  if (!stats) return;

  stats->tokens_per_expert = out.tokens_per_expert;
  stats->dropped_pairs = out.dropped_pairs;
  // Chosen pairs per expert, before capacity.
  auto& chosen = scratch.counts;
  chosen.assign(E, 0);
  int64_t routed = 0;
  for (const int32_t e : out.expert_ids) {
    if (e == kNoExpert) continue;
    ++chosen[e];
    ++routed;
  }
  stats->routed_pairs = routed;
  double aux = 0.0;
  for (int32_t e = 0; e < E; ++e) {
    const double f = routed > 0 ? static_cast<double>(chosen[e]) / routed : 0.0;
    const double p = T > 0 ? static_cast<double>(scratch.probability_sum[e]) / T : 0.0;
    aux += f * p;
  }
  stats->aux_loss = E * aux;
  stats->z_loss = T > 0 ? lse_square_sum / T : 0.0;
  int64_t kept_total = 0;
  int32_t kept_max = 0;
  for (const int32_t c : out.tokens_per_expert) {
    kept_total += c;
    kept_max = std::max(kept_max, c);
  }
  double entropy = 0.0;
  for (const int32_t c : out.tokens_per_expert) {
    if (c == 0) continue;
    const double q = static_cast<double>(c) / kept_total;
    entropy -= q * std::log(q);
  }
  stats->load_entropy_nats = entropy;
  stats->max_over_mean_load =
      kept_total > 0 ? static_cast<double>(kept_max) * E / static_cast<double>(kept_total) : 0.0;
}

}  // namespace moesim
