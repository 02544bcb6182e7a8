// See ditkit_kernels.h. Floating-point contraction is off so that the portable and vector paths
// perform exactly the same IEEE operations in the same order.
#pragma STDC FP_CONTRACT OFF
#pragma clang fp contract(off)
#include "ditkit_kernels.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

static int forced_portable = 0;
static int vector_state = -1;

int ditkit_kernels_vectorised(void) {
    if (forced_portable) return 0;
    if (vector_state < 0) {
        __builtin_cpu_init();
        vector_state = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    }
    return vector_state;
}

void ditkit_kernels_force_portable(int on) { forced_portable = on; }

// ---------------------------------------------------------------------------------------------
// Scalar conversions (reference semantics).

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline uint16_t f32_to_f16_scalar(float f) {
    // Round to nearest even, overflow to infinity, NaN to quiet NaN (as vcvtps2ph does).
    uint32_t x = f2u(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7FFFFFFFu;
    if (absx > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((absx >> 13) & 0x3FFu));
    if (absx >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);            // >= 65520: inf
    if (absx < 0x38800000u) {                                              // subnormal or zero in f16
        if (absx < 0x33000000u) return (uint16_t)sign;                      // < 2^-25: zero
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7FFFFFu) | 0x800000u;
        uint32_t shift = 126u - e;                                         // 14..24
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = absx - 0x38000000u;                                       // rebias exponent 127 -> 15
    uint32_t q = r >> 13, rem = r & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

static inline float f16_to_f32_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0) {
        if (m == 0) return u2f(sign);
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    if (e == 31) return u2f(sign | 0x7F800000u | (m << 13));
    return u2f(sign | ((e + 112u) << 23) | (m << 13));
}

static inline uint16_t f32_to_bf16_scalar(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0u;
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// ---------------------------------------------------------------------------------------------
// Error accumulation: 8 lanes of float partial sums over blocks of 1024 elements, folded into
// double in lane order. Shared by both paths.

#define BLOCK 1024

typedef struct { float err[8], src[8], maxabs[8]; uint64_t overflow, flushed, nonfinite; } lanes;

static inline void lanes_clear(lanes *l) { memset(l, 0, sizeof *l); }

static inline void lanes_add(lanes *l, int lane, float s, float t) {
    if (!isfinite(s)) { l->nonfinite++; return; }
    if (isinf(t)) { l->overflow++; return; }
    if (s != 0.0f && t == 0.0f) l->flushed++;
    float d = t - s;
    l->err[lane] = l->err[lane] + d * d;
    l->src[lane] = l->src[lane] + s * s;
    float a = fabsf(d);
    if (a > l->maxabs[lane] || a != a) l->maxabs[lane] = a;
}

static inline void lanes_fold(lanes *l, ditkit_error_stats *st) {
    for (int k = 0; k < 8; k++) {
        st->sum_sq_err += (double)l->err[k];
        st->sum_sq_src += (double)l->src[k];
        if (l->maxabs[k] > st->max_abs || l->maxabs[k] != l->maxabs[k]) st->max_abs = l->maxabs[k];
    }
    st->overflow += l->overflow;
    st->flushed += l->flushed;
    st->nonfinite += l->nonfinite;
    lanes_clear(l);
}

// Portable path: element i goes to lane i % 8 within its block, like the vector path.
static void stats_portable(const float *src, const float *back, size_t n, size_t start, ditkit_error_stats *st) {
    lanes l;
    lanes_clear(&l);
    for (size_t i = 0; i < n; i++) {
        lanes_add(&l, (int)((start + i) & 7), src[i], back[i]);
        if (((start + i + 1) % BLOCK) == 0) lanes_fold(&l, st);
    }
    lanes_fold(&l, st);
}

// ---------------------------------------------------------------------------------------------
// Vector path.

// The same eight lanes held in registers. A lane whose source is NaN or infinite, or whose stored
// value overflowed, adds +0 to its sums and compares 0 with its maximum: exactly what skipping it
// does (the sums start at +0 and only grow by squares, the maxima are >= 0, and a kept lane's
// difference is finite), so both paths give the same bits.
// The overflow and flush counts are kept per lane too (a lane's mask, all ones, subtracted from its
// count adds one), folded with the sums every BLOCK elements (at most BLOCK / 8 a lane).
typedef struct { __m256 err, src, maxabs; __m256i overflow, flushed, nonfinite; } vlanes;

__attribute__((target("avx2,f16c")))
static inline void vlanes_clear(vlanes *l) {
    l->err = _mm256_setzero_ps();
    l->src = _mm256_setzero_ps();
    l->maxabs = _mm256_setzero_ps();
    l->overflow = _mm256_setzero_si256();
    l->flushed = _mm256_setzero_si256();
    l->nonfinite = _mm256_setzero_si256();
}

__attribute__((target("avx2,f16c")))
static inline void lanes_add8(vlanes *l, __m256 s, __m256 t) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 inf = _mm256_set1_ps(INFINITY);
    __m256 as = _mm256_and_ps(s, absmask), at = _mm256_and_ps(t, absmask);
    // Lanes with a NaN or infinite source take no part (they are counted separately).
    __m256 src_finite = _mm256_cmp_ps(as, inf, _CMP_LT_OQ);
    __m256 dst_inf = _mm256_cmp_ps(at, inf, _CMP_EQ_OQ);
    __m256 over = _mm256_and_ps(src_finite, dst_inf);
    __m256 keep = _mm256_andnot_ps(over, src_finite);
    __m256 zero = _mm256_setzero_ps();
    __m256 flushed = _mm256_and_ps(_mm256_cmp_ps(s, zero, _CMP_NEQ_UQ), _mm256_cmp_ps(t, zero, _CMP_EQ_OQ));
    flushed = _mm256_and_ps(keep, flushed);
    l->overflow = _mm256_sub_epi32(l->overflow, _mm256_castps_si256(over));
    l->flushed = _mm256_sub_epi32(l->flushed, _mm256_castps_si256(flushed));
    l->nonfinite = _mm256_sub_epi32(l->nonfinite, _mm256_castps_si256(_mm256_cmp_ps(as, inf, _CMP_NLT_UQ)));
    __m256 d = _mm256_sub_ps(t, s);
    l->err = _mm256_add_ps(l->err, _mm256_and_ps(_mm256_mul_ps(d, d), keep));
    l->src = _mm256_add_ps(l->src, _mm256_and_ps(_mm256_mul_ps(s, s), keep));
    l->maxabs = _mm256_max_ps(l->maxabs, _mm256_and_ps(_mm256_and_ps(d, absmask), keep));
}

/// Moves the register lanes into `l` (which the scalar tail then continues) and folds nothing.
__attribute__((target("avx2,f16c")))
static inline void vlanes_spill(const vlanes *v, lanes *l) {
    _mm256_storeu_ps(l->err, v->err);
    _mm256_storeu_ps(l->src, v->src);
    _mm256_storeu_ps(l->maxabs, v->maxabs);
    uint32_t over[8], flushed[8], nonfinite[8];
    _mm256_storeu_si256((__m256i *)over, v->overflow);
    _mm256_storeu_si256((__m256i *)flushed, v->flushed);
    _mm256_storeu_si256((__m256i *)nonfinite, v->nonfinite);
    l->overflow = 0;
    l->flushed = 0;
    l->nonfinite = 0;
    for (int k = 0; k < 8; k++) { l->overflow += over[k]; l->flushed += flushed[k]; l->nonfinite += nonfinite[k]; }
}

__attribute__((target("avx2,f16c")))
static inline void vlanes_fold(vlanes *v, ditkit_error_stats *st) {
    lanes l;
    vlanes_spill(v, &l);
    lanes_fold(&l, st);
    vlanes_clear(v);
}

// Whether every source of a block is plain: finite, stored without overflow, and 0 or stored as
// non-zero, so that every lane keeps its place in the figures and no count grows. True when every
// |x| (as bits) is below `above` and every non-zero |x| at least `least`. The bounds are a little
// inside the exact ones (a block that is not plain only takes the longer path).
__attribute__((target("avx2,f16c")))
static inline int block_plain(const float *src, size_t n, uint32_t least, uint32_t above) {
    const __m256i absmask = _mm256_set1_epi32(0x7FFFFFFF), one = _mm256_set1_epi32(1);
    __m256i hi = _mm256_setzero_si256(), lo = _mm256_set1_epi32(-1);
    for (size_t i = 0; i + 8 <= n; i += 8) {
        __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(src + i)), absmask);
        hi = _mm256_max_epu32(hi, a);
        lo = _mm256_min_epu32(lo, _mm256_sub_epi32(a, one));   // 0 wraps to the largest value
    }
    uint32_t h[8], l[8];
    _mm256_storeu_si256((__m256i *)h, hi);
    _mm256_storeu_si256((__m256i *)l, lo);
    for (int k = 0; k < 8; k++) if (h[k] >= above || l[k] < least - 1) return 0;
    return 1;
}

// lanes_add8 for a plain block: every lane kept, nothing counted (the same sums, in the same order).
__attribute__((target("avx2,f16c")))
static inline void lanes_add8_plain(vlanes *l, __m256 s, __m256 t) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 d = _mm256_sub_ps(t, s);
    l->err = _mm256_add_ps(l->err, _mm256_mul_ps(d, d));
    l->src = _mm256_add_ps(l->src, _mm256_mul_ps(s, s));
    l->maxabs = _mm256_max_ps(l->maxabs, _mm256_and_ps(d, absmask));
}

// lanes_add8 for finite sources whose stored values cannot overflow (int8 of a row whose largest
// magnitude is well inside float32): every lane kept, only the flushes counted.
__attribute__((target("avx2,f16c")))
static inline void lanes_add8_finite(vlanes *l, __m256 s, __m256 t) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 flushed = _mm256_and_ps(_mm256_cmp_ps(s, zero, _CMP_NEQ_UQ), _mm256_cmp_ps(t, zero, _CMP_EQ_OQ));
    l->flushed = _mm256_sub_epi32(l->flushed, _mm256_castps_si256(flushed));
    lanes_add8_plain(l, s, t);
}

// The narrowings go a block (BLOCK values, folded as one) at a time: a plain block (block_plain)
// takes the short loop, any other the full one. Real weights are nearly all plain.
#define NARROW_BLOCKS(least, above, ...)                                                            \
    vlanes v;                                                                                       \
    vlanes_clear(&v);                                                                               \
    size_t i = 0, whole = n / 8 * 8;                                                                \
    while (i < whole) {                                                                             \
        size_t end = (i / BLOCK + 1) * BLOCK;                                                      \
        if (end > whole) end = whole;                                                               \
        if (block_plain(src + i, end - i, least, above)) {                                          \
            for (; i < end; i += 8) { __VA_ARGS__; lanes_add8_plain(&v, x, t); }                     \
        } else {                                                                                    \
            for (; i < end; i += 8) { __VA_ARGS__; lanes_add8(&v, x, t); }                        \
        }                                                                                           \
        if (i % BLOCK == 0) vlanes_fold(&v, st);                                                    \
    }

__attribute__((target("avx2,f16c")))
static void f16_vector(const float *src, uint16_t *dst, size_t n, ditkit_error_stats *st) {
    // Plain: |x| < 65504 (65520 and above overflow) and non-zero |x| >= 2^-24 (2^-25 and below
    // are stored as 0).
    NARROW_BLOCKS(0x33800000u, 0x477FE000u,
        __m256 x = _mm256_loadu_ps(src + i);
        __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(dst + i), h);
        __m256 t = _mm256_cvtph_ps(h))
    lanes l;
    vlanes_spill(&v, &l);
    for (; i < n; i++) {
        dst[i] = f32_to_f16_scalar(src[i]);
        lanes_add(&l, (int)(i & 7), src[i], f16_to_f32_scalar(dst[i]));
    }
    lanes_fold(&l, st);
}

__attribute__((target("avx2,f16c")))
static void bf16_vector(const float *src, uint16_t *dst, size_t n, ditkit_error_stats *st) {
    const __m256i bias = _mm256_set1_epi32(0x7FFF), one = _mm256_set1_epi32(1), expmask = _mm256_set1_epi32(0x7F800000);
    const __m256i absmask = _mm256_set1_epi32(0x7FFFFFFF), qnan = _mm256_set1_epi32(0x7FC00000);
    const __m256i himask = _mm256_set1_epi32((int)0xFFFF0000u);
    // Plain: |x| bits below 0x7F7F0000 (0x7F7F8000 and above round to inf) and non-zero |x| bits
    // at least 0x10000 (0x8000 and below are stored as 0).
    NARROW_BLOCKS(0x00010000u, 0x7F7F0000u,
        __m256 x = _mm256_loadu_ps(src + i);
        __m256i u = _mm256_castps_si256(x);
        __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u, 16), one)));
        __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absmask), expmask);
        __m256i hi = _mm256_blendv_epi8(_mm256_and_si256(r, himask), qnan, isnan);
        __m256i packed = _mm256_srli_epi32(hi, 16);
        __m128i lo128 = _mm256_castsi256_si128(packed), hi128 = _mm256_extracti128_si256(packed, 1);
        _mm_storeu_si128((__m128i *)(dst + i), _mm_packus_epi32(lo128, hi128));
        __m256 t = _mm256_castsi256_ps(hi))
    lanes l;
    vlanes_spill(&v, &l);
    for (; i < n; i++) {
        dst[i] = f32_to_bf16_scalar(src[i]);
        lanes_add(&l, (int)(i & 7), src[i], u2f((uint32_t)dst[i] << 16));
    }
    lanes_fold(&l, st);
}

__attribute__((target("avx2,f16c")))
static float i8_vector(const float *src, int8_t *dst, size_t n, ditkit_error_stats *st) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 m = _mm256_setzero_ps();
    __m256i bits = _mm256_setzero_si256();   // the largest |x| as bits, NaN above infinity
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_and_ps(_mm256_loadu_ps(src + i), absmask);
        m = _mm256_max_ps(m, a);
        bits = _mm256_max_epu32(bits, _mm256_castps_si256(a));
    }
    float mm[8];
    uint32_t mb[8], most = 0;
    _mm256_storeu_ps(mm, m);
    _mm256_storeu_si256((__m256i *)mb, bits);
    float amax = 0;
    for (int k = 0; k < 8; k++) { if (mm[k] > amax) amax = mm[k]; if (mb[k] > most) most = mb[k]; }
    for (; i < n; i++) { float a = fabsf(src[i]); if (a > amax) amax = a; if (f2u(a) > most) most = f2u(a); }
    float scale = amax / 127.0f;
    // Every |x| below 2^126: finite, and q * scale (at most about 127/127 of |x|) cannot overflow.
    int finite = most < 0x7E800000u;
    vlanes vl;
    vlanes_clear(&vl);
    lanes l;
    __m256 vs = _mm256_set1_ps(scale), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        __m256 q = scale > 0 ? _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_round_ps(_mm256_div_ps(v, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)))
                             : _mm256_setzero_ps();
        // q is integral in [-127, 127]: the saturating packs keep every value, in order.
        __m256i qi = _mm256_cvtps_epi32(q);
        __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
        _mm_storel_epi64((__m128i *)(dst + i), _mm_packs_epi16(q16, q16));
        if (finite) lanes_add8_finite(&vl, v, _mm256_mul_ps(q, vs));
        else lanes_add8(&vl, v, _mm256_mul_ps(q, vs));
        if (((i + 8) % BLOCK) == 0) vlanes_fold(&vl, st);
    }
    vlanes_spill(&vl, &l);
    for (; i < n; i++) {
        float q = scale > 0 ? fminf(127.0f, fmaxf(-127.0f, nearbyintf(src[i] / scale))) : 0.0f;
        dst[i] = (int8_t)q;
        lanes_add(&l, (int)(i & 7), src[i], q * scale);
    }
    lanes_fold(&l, st);
    return scale;
}

__attribute__((target("avx2,f16c")))
static void f16_widen_vector(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = f16_to_f32_scalar(src[i]);
}

// ---------------------------------------------------------------------------------------------
// Public entry points.

void ditkit_f32_to_f16(const float *src, uint16_t *dst, size_t n, ditkit_error_stats *st) {
    if (ditkit_kernels_vectorised()) { f16_vector(src, dst, n, st); return; }
    float back[BLOCK];
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t m = n - start < BLOCK ? n - start : BLOCK;
        for (size_t i = 0; i < m; i++) { dst[start + i] = f32_to_f16_scalar(src[start + i]); back[i] = f16_to_f32_scalar(dst[start + i]); }
        stats_portable(src + start, back, m, start, st);
    }
}

void ditkit_f32_to_bf16(const float *src, uint16_t *dst, size_t n, ditkit_error_stats *st) {
    if (ditkit_kernels_vectorised()) { bf16_vector(src, dst, n, st); return; }
    float back[BLOCK];
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t m = n - start < BLOCK ? n - start : BLOCK;
        for (size_t i = 0; i < m; i++) { dst[start + i] = f32_to_bf16_scalar(src[start + i]); back[i] = u2f((uint32_t)dst[start + i] << 16); }
        stats_portable(src + start, back, m, start, st);
    }
}

float ditkit_f32_to_i8_row(const float *src, int8_t *dst, size_t n, ditkit_error_stats *st) {
    if (ditkit_kernels_vectorised()) return i8_vector(src, dst, n, st);
    float amax = 0;
    for (size_t i = 0; i < n; i++) { float a = fabsf(src[i]); if (a > amax) amax = a; }
    float scale = amax / 127.0f;
    float back[BLOCK];
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t m = n - start < BLOCK ? n - start : BLOCK;
        for (size_t i = 0; i < m; i++) {
            float q = scale > 0 ? fminf(127.0f, fmaxf(-127.0f, nearbyintf(src[start + i] / scale))) : 0.0f;
            dst[start + i] = (int8_t)q;
            back[i] = q * scale;
        }
        stats_portable(src + start, back, m, start, st);
    }
    return scale;
}

void ditkit_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    if (ditkit_kernels_vectorised()) { f16_widen_vector(src, dst, n); return; }
    for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32_scalar(src[i]);
}

void ditkit_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = u2f((uint32_t)src[i] << 16);
}

__attribute__((target("avx2,f16c")))
static void i8_rows_vector(const int8_t *q, const float *scale, size_t rows, size_t cols, float *dst) {
    for (size_t r = 0; r < rows; r++) {
        const int8_t *qr = q + r * cols;
        float *d = dst + r * cols;
        const float s = scale[r];
        const __m256 vs = _mm256_set1_ps(s);
        size_t c = 0;
        for (; c + 8 <= cols; c += 8) {
            __m256i w = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(qr + c)));
            _mm256_storeu_ps(d + c, _mm256_mul_ps(_mm256_cvtepi32_ps(w), vs));
        }
        for (; c < cols; c++) d[c] = (float)qr[c] * s;
    }
}

void ditkit_i8_rows_to_f32(const int8_t *q, const float *scale, size_t rows, size_t cols, float *dst) {
    if (ditkit_kernels_vectorised()) { i8_rows_vector(q, scale, rows, cols, dst); return; }
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) dst[r * cols + c] = (float)q[r * cols + c] * scale[r];
}

// ---------------------------------------------------------------------------------------------
// Non-finite counts: an element is NaN or +-inf when every exponent bit is set. Unaligned loads
// (memcpy in the portable loops), so any alignment is fine.

static size_t count_nonfinite_f32_scalar(const unsigned char *p, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, p + 4 * i, 4);
        count += (u & 0x7F800000u) == 0x7F800000u;
    }
    return count;
}

static size_t count_nonfinite_16_scalar(const unsigned char *p, size_t n, uint16_t exponent_mask) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t u;
        memcpy(&u, p + 2 * i, 2);
        count += (u & exponent_mask) == exponent_mask;
    }
    return count;
}

// Per-lane counts (a matching lane's all-ones mask subtracted), summed every CHUNK vectors so no
// lane's count can wrap.
#define COUNT_CHUNK (1u << 20)

__attribute__((target("avx2,f16c")))
static size_t count_lanes32(__m256i c) {
    uint32_t k[8];
    _mm256_storeu_si256((__m256i *)k, c);
    size_t s = 0;
    for (int j = 0; j < 8; j++) s += k[j];
    return s;
}

__attribute__((target("avx2,f16c")))
static size_t count_nonfinite_f32_vector(const unsigned char *p, size_t n) {
    const __m256i e = _mm256_set1_epi32(0x7F800000);
    size_t count = 0, i = 0;
    while (i + 8 <= n) {
        size_t end = n - i > 8 * (size_t)COUNT_CHUNK ? i + 8 * (size_t)COUNT_CHUNK : n;
        __m256i c = _mm256_setzero_si256();
        for (; i + 8 <= end; i += 8) {
            __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + 4 * i)), e);
            c = _mm256_sub_epi32(c, _mm256_cmpeq_epi32(a, e));
        }
        count += count_lanes32(c);
    }
    return count + count_nonfinite_f32_scalar(p + 4 * i, n - i);
}

__attribute__((target("avx2,f16c")))
static size_t count_nonfinite_16_vector(const unsigned char *p, size_t n, uint16_t exponent_mask) {
    const __m256i e = _mm256_set1_epi16((short)exponent_mask);
    size_t count = 0, i = 0;
    while (i + 16 <= n) {
        // 16-bit lanes, widened into 32-bit ones every 2^14 vectors (before a lane can wrap).
        size_t end = n - i > 16 * (size_t)(1u << 14) ? i + 16 * (size_t)(1u << 14) : n;
        __m256i c = _mm256_setzero_si256();
        for (; i + 16 <= end; i += 16) {
            __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + 2 * i)), e);
            c = _mm256_sub_epi16(c, _mm256_cmpeq_epi16(a, e));
        }
        count += count_lanes32(_mm256_madd_epi16(c, _mm256_set1_epi16(1)));
    }
    return count + count_nonfinite_16_scalar(p + 2 * i, n - i, exponent_mask);
}

size_t ditkit_count_nonfinite_f32(const void *src, size_t n) {
    if (ditkit_kernels_vectorised()) return count_nonfinite_f32_vector(src, n);
    return count_nonfinite_f32_scalar(src, n);
}

size_t ditkit_count_nonfinite_f64(const void *src, size_t n) {
    const unsigned char *p = src;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t u;
        memcpy(&u, p + 8 * i, 8);
        count += (u & 0x7FF0000000000000ull) == 0x7FF0000000000000ull;
    }
    return count;
}

size_t ditkit_count_nonfinite_16(const void *src, size_t n, uint16_t exponent_mask) {
    if (ditkit_kernels_vectorised()) return count_nonfinite_16_vector(src, n, exponent_mask);
    return count_nonfinite_16_scalar(src, n, exponent_mask);
}

// ---------------------------------------------------------------------------------------------
// Activations with a polynomial exp (Cephes expf: x = n·ln2 + r, |r| <= ln2/2, degree-6
// polynomial, scaled by 2^n), identical in both paths.

#define EXP_HI 88.3762626647949f
#define EXP_LO -87.3365447504019f

static inline float exp_scalar(float x) {
    x = x > EXP_HI ? EXP_HI : x;
    x = x < EXP_LO ? EXP_LO : x;
    float fx = x * 1.44269504088896341f + 0.5f;
    float fl = floorf(fx);
    float r = x - fl * 0.693359375f;
    r = r - fl * -2.12194440e-4f;
    float z = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r;
    y = y + 1.0f;
    int32_t n = (int32_t)fl;
    return y * u2f((uint32_t)(n + 127) << 23);
}

__attribute__((target("avx2,f16c")))
static inline __m256 exp_vector(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(EXP_HI));
    x = _mm256_max_ps(x, _mm256_set1_ps(EXP_LO));
    __m256 fx = _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _mm256_set1_ps(0.5f));
    __m256 fl = _mm256_floor_ps(fx);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(fl, _mm256_set1_ps(0.693359375f)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(fl, _mm256_set1_ps(-2.12194440e-4f)));
    __m256 z = _mm256_mul_ps(r, r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_add_ps(_mm256_mul_ps(y, z), r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i n = _mm256_cvttps_epi32(fl);
    __m256i pow2 = _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(pow2));
}

static inline float silu_scalar(float v) { return v / (1.0f + exp_scalar(-v)); }

static inline float gelu_scalar(float v) {
    // 0.5·v·(1 + tanh(u)), tanh(u) = 1 - 2 / (exp(2u) + 1)
    float u = 0.7978845608028654f * (v + 0.044715f * (v * v * v));
    float t = 1.0f - 2.0f / (exp_scalar(2.0f * u) + 1.0f);
    return 0.5f * v * (1.0f + t);
}

__attribute__((target("avx2,f16c")))
static void silu_vector(float *x, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = exp_vector(_mm256_xor_ps(v, sign));
        _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
    for (; i < n; i++) x[i] = silu_scalar(x[i]);
}

__attribute__((target("avx2,f16c")))
static void gelu_vector(float *x, size_t n) {
    const __m256 c = _mm256_set1_ps(0.7978845608028654f), k = _mm256_set1_ps(0.044715f), one = _mm256_set1_ps(1.0f);
    const __m256 two = _mm256_set1_ps(2.0f), half = _mm256_set1_ps(0.5f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
        __m256 u = _mm256_mul_ps(c, _mm256_add_ps(v, _mm256_mul_ps(k, v3)));
        __m256 e = exp_vector(_mm256_mul_ps(two, u));
        __m256 t = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(e, one)));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, t)));
    }
    for (; i < n; i++) x[i] = gelu_scalar(x[i]);
}

void ditkit_silu(float *x, size_t n) {
    if (ditkit_kernels_vectorised()) { silu_vector(x, n); return; }
    for (size_t i = 0; i < n; i++) x[i] = silu_scalar(x[i]);
}

void ditkit_gelu_tanh(float *x, size_t n) {
    if (ditkit_kernels_vectorised()) { gelu_vector(x, n); return; }
    for (size_t i = 0; i < n; i++) x[i] = gelu_scalar(x[i]);
}

// Softmax rows: max, exp(x - max) with the polynomial exp, a sum in 8 lanes (element i in lane
// i % 8, lanes added in order), then a multiply by 1 / sum. Both paths do the same operations.

static void softmax_row_scalar(float *x, size_t n) {
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    float lanes[8] = {0};
    for (size_t i = 0; i < n; i++) {
        float e = exp_scalar(x[i] - m);
        x[i] = e;
        lanes[i & 7] += e;
    }
    float sum = 0;
    for (int k = 0; k < 8; k++) sum += lanes[k];
    float inv = 1.0f / sum;
    for (size_t i = 0; i < n; i++) x[i] *= inv;
}

__attribute__((target("avx2,f16c")))
static void softmax_row_vector(float *x, size_t n) {
    size_t i = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    float mm[8];
    _mm256_storeu_ps(mm, vm);
    float m = -INFINITY;
    for (int k = 0; k < 8; k++) m = mm[k] > m ? mm[k] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    const __m256 vmax = _mm256_set1_ps(m);
    __m256 vs = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp_vector(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(x + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, vs);
    for (; i < n; i++) {
        float e = exp_scalar(x[i] - m);
        x[i] = e;
        lanes[i & 7] += e;
    }
    float sum = 0;
    for (int k = 0; k < 8; k++) sum += lanes[k];
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    float s1 = 1.0f / sum;
    for (; i < n; i++) x[i] *= s1;
}

void ditkit_softmax_rows(float *x, size_t rows, size_t cols) {
    int v = ditkit_kernels_vectorised();
    for (size_t r = 0; r < rows; r++) {
        if (v) softmax_row_vector(x + r * cols, cols); else softmax_row_scalar(x + r * cols, cols);
    }
}

// RMSNorm rows: the mean of squares summed in double (4 lanes, element i in lane i % 4, lanes
// added in order), inv = (float)(1 / sqrt(mean + eps)), y = x * inv * w (w optional).

static double sum_squares_scalar(const float *x, size_t n) {
    double lanes[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) { double v = (double)x[i]; lanes[i & 3] += v * v; }
    return ((lanes[0] + lanes[1]) + lanes[2]) + lanes[3];
}

__attribute__((target("avx2,f16c")))
static double sum_squares_vector(const float *x, size_t n) {
    __m256d acc = _mm256_setzero_pd();
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        acc = _mm256_add_pd(acc, _mm256_mul_pd(v, v));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, acc);
    for (; i < n; i++) { double v = (double)x[i]; lanes[i & 3] += v * v; }
    return ((lanes[0] + lanes[1]) + lanes[2]) + lanes[3];
}

void ditkit_rms_norm_rows(const float *x, size_t rows, size_t dim, double eps, const float *weight, float *y) {
    int v = ditkit_kernels_vectorised();
    for (size_t r = 0; r < rows; r++) {
        const float *p = x + r * dim;
        float *q = y + r * dim;
        double sq = v ? sum_squares_vector(p, dim) : sum_squares_scalar(p, dim);
        float inv = (float)(1.0 / sqrt(sq / (double)dim + eps));
        if (weight) for (size_t i = 0; i < dim; i++) q[i] = (p[i] * inv) * weight[i];
        else for (size_t i = 0; i < dim; i++) q[i] = p[i] * inv;
    }
}

// ---------------------------------------------------------------------------------------------
// Few-row products straight from narrow stored weights. Each output is 16 partial sums (lane l
// takes columns c with c mod 16 == l of every whole group of 16), each a chain of fused
// multiply-adds, folded as s[l] = p[l] + p[l + 8], then ((s0 + s1) + (s2 + s3)) + ((s4 + s5) +
// (s6 + s7)); the columns past the last whole group follow by fused multiply-adds in order. Each
// weight is first made exactly the float32 value widening gives it (an int8 times its row's
// scale, rounded once), so a product depends on the weights' values only, not on how they are
// stored: a float16 weight gives the bits its float32 widening gives. The portable path performs
// the same operations.

enum { W_I8 = 0, W_F16 = 1, W_BF16 = 2, W_F32 = 3 };

static inline float weight_scalar(const void *w, int kind, size_t i) {
    switch (kind) {
    case W_I8: return (float)((const int8_t *)w)[i];
    case W_F16: { uint16_t h; memcpy(&h, (const char *)w + 2 * i, 2); return f16_to_f32_scalar(h); }
    case W_BF16: { uint16_t h; memcpy(&h, (const char *)w + 2 * i, 2); return u2f((uint32_t)h << 16); }
    default: { float f; memcpy(&f, (const char *)w + 4 * i, 4); return f; }
    }
}

static inline size_t weight_size(int kind) { return kind == W_I8 ? 1 : kind == W_F32 ? 4 : 2; }

/// The float32 value of weight [j, i] (`w` at row j): an int8 times its row's scale.
static inline float weight_value(const void *w, int kind, const float *scale, size_t j, size_t i) {
    return kind == W_I8 ? weight_scalar(w, kind, i) * scale[j] : weight_scalar(w, kind, i);
}

static inline float fold8(const float *s) { return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])); }

static void gemv_portable(const void *w, int kind, const float *scale, size_t n, size_t k, const float *x, size_t ldx,
                          size_t rows, float *y, size_t ldy) {
    const size_t kv = k / 16 * 16;
    for (size_t j = 0; j < n; j++) {
        const char *wr = (const char *)w + j * k * weight_size(kind);
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * ldx;
            float p[16] = {0}, s[8];
            for (size_t c = 0; c < kv; c += 16)
                for (int l = 0; l < 16; l++) p[l] = fmaf(weight_value(wr, kind, scale, j, c + l), xr[c + l], p[l]);
            for (int l = 0; l < 8; l++) s[l] = p[l] + p[l + 8];
            float t = fold8(s);
            for (size_t c = kv; c < k; c++) t = fmaf(weight_value(wr, kind, scale, j, c), xr[c], t);
            y[r * ldy + j] = t;
        }
    }
}

__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 weight8(const char *w, int kind, __m256 scale, size_t c) {
    switch (kind) {
    case W_I8: return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(w + c)))), scale);
    case W_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * c)));
    case W_BF16: return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + 2 * c))), 16));
    default: return _mm256_loadu_ps((const float *)(w + 4 * c));
    }
}

// `kind` and `rows` are constants at every call site (see gemv_vector), so the accumulators stay
// in registers.
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void gemv_vector_body(const void *w, int kind, const float *scale, size_t n, size_t k, const float *x,
                                    size_t ldx, size_t rows, float *y, size_t ldy) {
    const size_t kv = k / 16 * 16;
    for (size_t j = 0; j < n; j++) {
        const char *wr = (const char *)w + j * k * weight_size(kind);
        __m256 a[DITKIT_DIRECT_MAX_ROWS], b[DITKIT_DIRECT_MAX_ROWS];
        for (size_t r = 0; r < rows; r++) { a[r] = _mm256_setzero_ps(); b[r] = _mm256_setzero_ps(); }
        const __m256 vs = _mm256_set1_ps(kind == W_I8 ? scale[j] : 1.0f);
        for (size_t c = 0; c < kv; c += 16) {
            const __m256 w0 = weight8(wr, kind, vs, c), w1 = weight8(wr, kind, vs, c + 8);
            for (size_t r = 0; r < rows; r++) {
                a[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + r * ldx + c), a[r]);
                b[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + r * ldx + c + 8), b[r]);
            }
        }
        for (size_t r = 0; r < rows; r++) {
            float s[8];
            _mm256_storeu_ps(s, _mm256_add_ps(a[r], b[r]));
            float t = fold8(s);
            const float *xr = x + r * ldx;
            for (size_t c = kv; c < k; c++) t = fmaf(weight_value(wr, kind, scale, j, c), xr[c], t);
            y[r * ldy + j] = t;
        }
    }
}

#define GEMV_ROWS(kind)                                                                             \
    switch (rows) {                                                                                 \
    case 1: gemv_vector_body(w, kind, scale, n, k, x, ldx, 1, y, ldy); break;                       \
    case 2: gemv_vector_body(w, kind, scale, n, k, x, ldx, 2, y, ldy); break;                       \
    case 3: gemv_vector_body(w, kind, scale, n, k, x, ldx, 3, y, ldy); break;                       \
    case 4: gemv_vector_body(w, kind, scale, n, k, x, ldx, 4, y, ldy); break;                       \
    case 5: gemv_vector_body(w, kind, scale, n, k, x, ldx, 5, y, ldy); break;                       \
    case 6: gemv_vector_body(w, kind, scale, n, k, x, ldx, 6, y, ldy); break;                       \
    case 7: gemv_vector_body(w, kind, scale, n, k, x, ldx, 7, y, ldy); break;                       \
    default: gemv_vector_body(w, kind, scale, n, k, x, ldx, 8, y, ldy); break;                      \
    }

__attribute__((target("avx2,fma,f16c")))
static void gemv_vector(const void *w, int kind, const float *scale, size_t n, size_t k, const float *x, size_t ldx,
                        size_t rows, float *y, size_t ldy) {
    switch (kind) {
    case W_I8: GEMV_ROWS(W_I8) break;
    case W_F16: GEMV_ROWS(W_F16) break;
    case W_BF16: GEMV_ROWS(W_BF16) break;
    default: GEMV_ROWS(W_F32) break;
    }
}

static int fma_state = -1;

static void gemv(const void *w, int kind, const float *scale, size_t n, size_t k, const float *x, size_t ldx,
                 size_t rows, float *y, size_t ldy) {
    if (rows == 0 || n == 0) return;
    if (rows > DITKIT_DIRECT_MAX_ROWS) {   // callers split larger inputs; stay correct regardless
        for (size_t r0 = 0; r0 < rows; r0 += DITKIT_DIRECT_MAX_ROWS) {
            size_t m = rows - r0 < DITKIT_DIRECT_MAX_ROWS ? rows - r0 : DITKIT_DIRECT_MAX_ROWS;
            gemv(w, kind, scale, n, k, x + r0 * ldx, ldx, m, y + r0 * ldy, ldy);
        }
        return;
    }
    if (fma_state < 0) { __builtin_cpu_init(); fma_state = __builtin_cpu_supports("fma"); }
    if (ditkit_kernels_vectorised() && fma_state) gemv_vector(w, kind, scale, n, k, x, ldx, rows, y, ldy);
    else gemv_portable(w, kind, scale, n, k, x, ldx, rows, y, ldy);
}

void ditkit_direct_i8(const int8_t *w, const float *scale, size_t n, size_t k, const float *x, size_t ldx, size_t rows,
                      float *y, size_t ldy) {
    gemv(w, W_I8, scale, n, k, x, ldx, rows, y, ldy);
}

void ditkit_direct_f16(const uint16_t *w, size_t n, size_t k, const float *x, size_t ldx, size_t rows, float *y, size_t ldy) {
    gemv(w, W_F16, NULL, n, k, x, ldx, rows, y, ldy);
}

void ditkit_direct_bf16(const uint16_t *w, size_t n, size_t k, const float *x, size_t ldx, size_t rows, float *y, size_t ldy) {
    gemv(w, W_BF16, NULL, n, k, x, ldx, rows, y, ldy);
}

void ditkit_direct_f32(const float *w, size_t n, size_t k, const float *x, size_t ldx, size_t rows, float *y, size_t ldy) {
    gemv(w, W_F32, NULL, n, k, x, ldx, rows, y, ldy);
}
