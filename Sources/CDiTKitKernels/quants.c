// See ditkit_quants.h. Portable C: every float operation is float32, written in the order the
// reference algorithm performs it, and floating-point contraction is off (the pragmas below; the
// package passes no compiler flags, so that it can be a versioned dependency), so a product
// followed by a sum is never fused. Changing the order of any operation below changes
// output bytes; the tests compare them with ggml's quantizers and gguf-py's dequantizer.
#pragma STDC FP_CONTRACT OFF
#pragma clang fp contract(off)
#include "ditkit_quants.h"
#include "ditkit_kernels.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

#define SUPER 256          // values per K-quant super-block
#define EPS_ZERO 1e-15f    // a group whose largest magnitude is below this quantizes to zero

// ---------------------------------------------------------------------------------------------
// Scalars.

static inline uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float float_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/// float32 -> float16 bits: round to nearest even, overflow to infinity, NaN to 0x7E00 with the sign.
static inline uint16_t half_from(float f) {
    uint32_t x = bits_of(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t a = x & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00u);
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);
    if (a < 0x38800000u) {
        if (a < 0x33000000u) return (uint16_t)sign;
        uint32_t e = a >> 23, m = (a & 0x7FFFFFu) | 0x800000u, shift = 126u - e;
        uint32_t q = m >> shift, rest = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rest > half || (rest == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a - 0x38000000u, q = r >> 13, rest = r & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

/// float16 bits -> float32 (exact).
static inline float half_to(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0) {
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    if (e == 31) return float_of(sign | 0x7F800000u | (m << 13));
    return float_of(sign | ((e + 112u) << 23) | (m << 13));
}

static inline uint16_t load16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline void store16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void store_half(uint8_t *p, float f) { store16(p, half_from(f)); }
static inline float load_half(const uint8_t *p) { return half_to(load16(p)); }

/// Round to nearest, ties to even, by adding 1.5 * 2^23 (the sum's low mantissa bits are the
/// integer). Exact for |v| <= 2^22 - 1; beyond that it wraps, as the reference does.
static inline int round_magic(float v) {
    uint32_t u = bits_of(v + 12582912.f);
    return (int)(u & 0x007FFFFFu) - 0x00400000;
}

/// C's float -> int8 conversion as x86-64 compilers emit it: truncate to int32 (NaN and values
/// outside int32 become INT32_MIN), keep the low byte.
static inline int8_t trunc_i8(float v) {
    int32_t i = (v == v && v > -2147483648.f && v < 2147483648.f) ? (int32_t)v : INT32_MIN;
    return (int8_t)(uint8_t)((uint32_t)i & 0xFFu);
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// ---------------------------------------------------------------------------------------------
// 32-value blocks.

// Q8_0: {f16 d; i8 q[32]} = 34 bytes. d = amax / 127, q = round half away from zero(x / d).
static void q8_0_quantize(const float *x, uint8_t *out, size_t nb) {
    for (size_t b = 0; b < nb; b++, x += 32, out += 34) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) { float a = fabsf(x[i]); amax = amax > a ? amax : a; }
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_half(out, d);
        for (int i = 0; i < 32; i++) out[2 + i] = (uint8_t)(int8_t)roundf(x[i] * id);
    }
}

static void q8_0_dequantize(const uint8_t *in, float *y, size_t nb) {
    for (size_t b = 0; b < nb; b++, in += 34, y += 32) {
        const float d = load_half(in);
        for (int i = 0; i < 32; i++) y[i] = (float)(int8_t)in[2 + i] * d;
    }
}

/// The value of largest magnitude (the first one when several tie), and that magnitude.
static inline float signed_extreme(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (amax < a) { amax = a; max = x[i]; }
    }
    return max;
}

// Q4_0: {f16 d; u8 qs[16]} = 18 bytes; value j in the low nibble of qs[j], value j+16 in the high
// one; x = d * (q - 8) with d = extreme / -8.
static void q4_0_quantize(const float *x, uint8_t *out, size_t nb) {
    for (size_t b = 0; b < nb; b++, x += 32, out += 18) {
        const float d = signed_extreme(x, 32) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_half(out, d);
        for (int j = 0; j < 16; j++) {
            int lo = trunc_i8(x[j] * id + 8.5f), hi = trunc_i8(x[j + 16] * id + 8.5f);
            uint8_t a = (uint8_t)(lo < 15 ? lo : 15), c = (uint8_t)(hi < 15 ? hi : 15);
            out[2 + j] = (uint8_t)(a | (uint8_t)(c << 4));
        }
    }
}

static void q4_0_dequantize(const uint8_t *in, float *y, size_t nb) {
    for (size_t b = 0; b < nb; b++, in += 18, y += 32) {
        const float d = load_half(in);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((int)(in[2 + j] & 0x0F) - 8);
            y[j + 16] = d * (float)((int)(in[2 + j] >> 4) - 8);
        }
    }
}

/// Minimum and maximum of a block (FLT_MAX-seeded, strict comparisons).
static inline void min_max(const float *x, int n, float *mn, float *mx) {
    float lo = 3.402823466e+38f, hi = -3.402823466e+38f;
    for (int i = 0; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    *mn = lo; *mx = hi;
}

// Q4_1: {f16 d; f16 m; u8 qs[16]} = 20 bytes; x = d * q + m, d = (max - min) / 15, m = min.
static void q4_1_quantize(const float *x, uint8_t *out, size_t nb) {
    for (size_t b = 0; b < nb; b++, x += 32, out += 20) {
        float mn, mx;
        min_max(x, 32, &mn, &mx);
        const float d = (mx - mn) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_half(out, d);
        store_half(out + 2, mn);
        for (int j = 0; j < 16; j++) {
            int lo = trunc_i8((x[j] - mn) * id + 0.5f), hi = trunc_i8((x[j + 16] - mn) * id + 0.5f);
            uint8_t a = (uint8_t)(lo < 15 ? lo : 15), c = (uint8_t)(hi < 15 ? hi : 15);
            out[4 + j] = (uint8_t)(a | (uint8_t)(c << 4));
        }
    }
}

static void q4_1_dequantize(const uint8_t *in, float *y, size_t nb) {
    for (size_t b = 0; b < nb; b++, in += 20, y += 32) {
        const float d = load_half(in), m = load_half(in + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(in[4 + j] & 0x0F) + m;
            y[j + 16] = d * (float)(in[4 + j] >> 4) + m;
        }
    }
}

static inline void store32(uint8_t *p, uint32_t v) { for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k)); }
static inline uint32_t load32(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }

// Q5_0: {f16 d; u32 qh (LE); u8 qs[16]} = 22 bytes; bit j of qh is the fifth bit of value j;
// x = d * (q - 16) with d = extreme / -16.
static void q5_0_quantize(const float *x, uint8_t *out, size_t nb) {
    for (size_t b = 0; b < nb; b++, x += 32, out += 22) {
        const float d = signed_extreme(x, 32) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_half(out, d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int lo = trunc_i8(x[j] * id + 16.5f), hi = trunc_i8(x[j + 16] * id + 16.5f);
            uint8_t a = (uint8_t)(lo < 31 ? lo : 31), c = (uint8_t)(hi < 31 ? hi : 31);
            out[6 + j] = (uint8_t)((a & 0x0F) | ((c & 0x0F) << 4));
            qh |= (uint32_t)((a & 0x10u) >> 4) << j;
            qh |= (uint32_t)((c & 0x10u) >> 4) << (j + 16);
        }
        store32(out + 2, qh);
    }
}

static void q5_0_dequantize(const uint8_t *in, float *y, size_t nb) {
    for (size_t b = 0; b < nb; b++, in += 22, y += 32) {
        const float d = load_half(in);
        const uint32_t qh = load32(in + 2);
        #pragma clang loop unroll(full)   // constant shifts: vectorised without -O3
        for (int j = 0; j < 16; j++) {
            int lo = (in[6 + j] & 0x0F) | (int)(((qh >> j) & 1u) << 4);
            int hi = (in[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            y[j] = d * (float)(lo - 16);
            y[j + 16] = d * (float)(hi - 16);
        }
    }
}

// Q5_1: {f16 d; f16 m; u32 qh; u8 qs[16]} = 24 bytes; x = d * q + m, d = (max - min) / 31.
static void q5_1_quantize(const float *x, uint8_t *out, size_t nb) {
    for (size_t b = 0; b < nb; b++, x += 32, out += 24) {
        float mn, mx;
        min_max(x, 32, &mn, &mx);
        const float d = (mx - mn) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_half(out, d);
        store_half(out + 2, mn);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            uint8_t a = (uint8_t)trunc_i8((x[j] - mn) * id + 0.5f), c = (uint8_t)trunc_i8((x[j + 16] - mn) * id + 0.5f);
            out[8 + j] = (uint8_t)((a & 0x0F) | ((c & 0x0F) << 4));
            qh |= (uint32_t)((a & 0x10u) >> 4) << j;
            qh |= (uint32_t)((c & 0x10u) >> 4) << (j + 16);
        }
        store32(out + 4, qh);
    }
}

static void q5_1_dequantize(const uint8_t *in, float *y, size_t nb) {
    for (size_t b = 0; b < nb; b++, in += 24, y += 32) {
        const float d = load_half(in), m = load_half(in + 2);
        const uint32_t qh = load32(in + 4);
        #pragma clang loop unroll(full)   // constant shifts: vectorised without -O3
        for (int j = 0; j < 16; j++) {
            int lo = (in[8 + j] & 0x0F) | (int)(((qh >> j) & 1u) << 4);
            int hi = (in[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            y[j] = d * (float)lo + m;
            y[j + 16] = d * (float)hi + m;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scale searches shared by the K-quants.

/// Asymmetric fit of `n` values to levels 0..nmax, x ~ scale * L - min, weighted by `w`: start
/// from the min/max fit, then try `steps + 1` scales (nmax + first + delta * s) / range and keep the
/// least-squares (scale, min) of the best levels by weighted error (absolute with `absolute`).
/// Returns the scale; `*neg_min` gets -min (>= 0). `L` gets the levels; `trial` is scratch.
static float fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min, uint8_t *trial,
                        float first, float delta, int steps, int absolute) {
    float lo = x[0], hi = x[0];
    float sw = w[0];
    float sx = sw * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        const float wi = w[i];
        sw += wi;
        sx += wi * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *neg_min = -lo;
        return 0.0f;
    }
    float inv = nmax / (hi - lo);
    float scale = 1 / inv;
    float best = 0;
    for (int i = 0; i < n; i++) {
        int l = round_magic(inv * (x[i] - lo));
        L[i] = (uint8_t)clampi(l, 0, nmax);
        float e = scale * L[i] + lo - x[i];
        e = absolute ? fabsf(e) : e * e;
        best += w[i] * e;
    }
    for (int s = 0; s <= steps; s++) {
        inv = (first + delta * s + nmax) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(round_magic(inv * (x[i] - lo)), 0, nmax);
            trial[i] = (uint8_t)l;
            const float wi = w[i];
            sl += wi * l;
            sl2 += wi * l * l;
            sxl += wi * l * x[i];
        }
        const float det = sw * sl2 - sl * sl;
        if (det > 0) {
            float s_scale = (sw * sxl - sx * sl) / det;
            float s_min = (sl2 * sx - sl * sxl) / det;
            if (s_min > 0) {
                s_min = 0;
                s_scale = sxl / sl2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                float e = s_scale * trial[i] + s_min - x[i];
                e = absolute ? fabsf(e) : e * e;
                err += w[i] * e;
            }
            if (err < best) {
                memcpy(L, trial, (size_t)n);
                best = err;
                scale = s_scale;
                lo = s_min;
            }
        }
    }
    *neg_min = -lo;
    return scale;
}

/// Symmetric fit of `n` values to levels -nmax..nmax-1 weighted by x^2: x ~ scale * l. Starts from
/// -nmax / extreme, then tries 18 nearby scales (nmax + 0.1 * k, k = -9..9, k != 0) and keeps the
/// one with the best weighted correlation. `L` gets l + nmax. Returns the scale (0 for a zero group).
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L) {
    float amax = 0, ext = 0;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) { amax = a; ext = x[i]; }
    }
    if (amax < EPS_ZERO) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    float inv = -nmax / ext;
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(round_magic(inv * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    float scale = sl2 ? slx / sl2 : 0.0f;
    float best = scale * slx;
    for (int k = -9; k <= 9; k++) {
        if (k == 0) continue;
        inv = -(nmax + 0.1f * k) / ext;
        slx = sl2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(round_magic(inv * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            slx += w * x[i] * l;
            sl2 += w * l * l;
        }
        if (sl2 > 0 && slx * slx > best * sl2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + clampi(round_magic(inv * x[i]), -nmax, nmax - 1));
            scale = slx / sl2;
            best = scale * slx;
        }
    }
    return scale;
}

/// Symmetric fit for Q3_K: levels -nmax..nmax-1 from -nmax / extreme, then up to five passes that
/// move single values to the level that improves the x^2-weighted fit. `L` gets l + nmax.
static float fit_symmetric_refined(int n, int nmax, const float *x, int8_t *L) {
    float amax = 0, ext = 0;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) { amax = a; ext = x[i]; }
    }
    if (amax < EPS_ZERO) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    const float inv = -nmax / ext;
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(round_magic(inv * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float tlx = slx - w * x[i] * L[i];
            if (tlx > 0) {
                float tl2 = sl2 - w * L[i] * L[i];
                int nl = clampi(round_magic(x[i] * tl2 / tlx), -nmax, nmax - 1);
                if (nl != L[i]) {
                    tlx += w * x[i] * nl;
                    tl2 += w * nl * nl;
                    if (tl2 > 0 && tlx * tlx * sl2 > slx * slx * tl2) {
                        L[i] = (int8_t)nl;
                        slx = tlx;
                        sl2 = tl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return sl2 > 0.0f ? slx / sl2 : 0.0f;
}

// ---------------------------------------------------------------------------------------------
// The same three searches on eight groups at once (AVX2): lane g works on group g and performs,
// in order, exactly the float operations the scalar function performs on that group (mul, add,
// sub, div and sqrt are correctly rounded in both; nothing is fused or reassociated; branches
// become per-lane blends). Inputs are transposed: value i of group g at xt[8 * i + g].
// A scalar early exit ("no value changed in this pass") is a fixed point, so running the
// remaining passes leaves a lane as it was.

#define V8 __attribute__((target("avx2")))

V8 static inline __m256i round_magic8(__m256 v) {
    __m256i u = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(12582912.f)));
    return _mm256_sub_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x007FFFFF)), _mm256_set1_epi32(0x00400000));
}

V8 static inline __m256i clamp8(__m256i v, int lo, int hi) {
    return _mm256_max_epi32(_mm256_min_epi32(v, _mm256_set1_epi32(hi)), _mm256_set1_epi32(lo));
}

V8 static inline __m256 sel8(__m256 a, __m256 b, __m256 take_b) { return _mm256_blendv_ps(a, b, take_b); }
V8 static inline __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
#define LT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define GT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)

/// fit_affine on eight groups of `n` values. `L` gets the levels as L[8 * i + g].
V8 static void fit_affine8(int n, int nmax, const float *xt, const float *wt, int32_t *L, float *scale_out, float *neg_min_out,
                           float first, float delta, int steps, int absolute) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 lo = _mm256_loadu_ps(xt), hi = lo;
    __m256 sw = _mm256_loadu_ps(wt);
    __m256 sx = _mm256_mul_ps(sw, lo);
    for (int i = 1; i < n; i++) {
        const __m256 x = _mm256_loadu_ps(xt + 8 * i), w = _mm256_loadu_ps(wt + 8 * i);
        lo = sel8(lo, x, LT(x, lo));
        hi = sel8(hi, x, GT(x, hi));
        sw = _mm256_add_ps(sw, w);
        sx = _mm256_add_ps(sx, _mm256_mul_ps(w, x));
    }
    lo = sel8(lo, zero, GT(lo, zero));
    const __m256 lo0 = lo;
    const __m256 flat = _mm256_cmp_ps(hi, lo, _CMP_EQ_OQ);
    __m256 inv = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(hi, lo));
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), inv);
    __m256 best = zero;
    for (int i = 0; i < n; i++) {
        const __m256 x = _mm256_loadu_ps(xt + 8 * i), w = _mm256_loadu_ps(wt + 8 * i);
        const __m256i l = clamp8(round_magic8(_mm256_mul_ps(inv, _mm256_sub_ps(x, lo))), 0, nmax);
        _mm256_storeu_si256((__m256i *)(L + 8 * i), l);
        __m256 e = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(l)), lo), x);
        e = absolute ? abs8(e) : _mm256_mul_ps(e, e);
        best = _mm256_add_ps(best, _mm256_mul_ps(w, e));
    }
    int32_t trial[8 * 32];
    for (int s = 0; s <= steps; s++) {
        inv = _mm256_div_ps(_mm256_set1_ps(first + delta * s + nmax), _mm256_sub_ps(hi, lo));
        __m256 sl = zero, sl2 = zero, sxl = zero;
        for (int i = 0; i < n; i++) {
            const __m256 x = _mm256_loadu_ps(xt + 8 * i), w = _mm256_loadu_ps(wt + 8 * i);
            const __m256i l = clamp8(round_magic8(_mm256_mul_ps(inv, _mm256_sub_ps(x, lo))), 0, nmax);
            _mm256_storeu_si256((__m256i *)(trial + 8 * i), l);
            const __m256 lf = _mm256_cvtepi32_ps(l), wl = _mm256_mul_ps(w, lf);
            sl = _mm256_add_ps(sl, wl);
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(wl, lf));
            sxl = _mm256_add_ps(sxl, _mm256_mul_ps(wl, x));
        }
        const __m256 det = _mm256_sub_ps(_mm256_mul_ps(sw, sl2), _mm256_mul_ps(sl, sl));
        __m256 s_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sw, sxl), _mm256_mul_ps(sx, sl)), det);
        __m256 s_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sl2, sx), _mm256_mul_ps(sl, sxl)), det);
        const __m256 positive = GT(s_min, zero);
        s_min = sel8(s_min, zero, positive);
        s_scale = sel8(s_scale, _mm256_div_ps(sxl, sl2), positive);
        __m256 err = zero;
        for (int i = 0; i < n; i++) {
            const __m256 x = _mm256_loadu_ps(xt + 8 * i), w = _mm256_loadu_ps(wt + 8 * i);
            const __m256 lf = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(trial + 8 * i)));
            __m256 e = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(s_scale, lf), s_min), x);
            e = absolute ? abs8(e) : _mm256_mul_ps(e, e);
            err = _mm256_add_ps(err, _mm256_mul_ps(w, e));
        }
        const __m256 better = _mm256_and_ps(GT(det, zero), LT(err, best));
        if (_mm256_movemask_ps(better)) {
            const __m256i take = _mm256_castps_si256(better);
            for (int i = 0; i < n; i++) {
                const __m256i old = _mm256_loadu_si256((const __m256i *)(L + 8 * i));
                const __m256i t = _mm256_loadu_si256((const __m256i *)(trial + 8 * i));
                _mm256_storeu_si256((__m256i *)(L + 8 * i), _mm256_blendv_epi8(old, t, take));
            }
            best = sel8(best, err, better);
            scale = sel8(scale, s_scale, better);
            lo = sel8(lo, s_min, better);
        }
    }
    // Groups whose values are all equal (after clipping the minimum to 0) stop at the start.
    scale = sel8(scale, zero, flat);
    lo = sel8(lo, lo0, flat);
    const int flat_mask = _mm256_movemask_ps(flat);
    if (flat_mask) {
        for (int i = 0; i < n; i++)
            for (int g = 0; g < 8; g++)
                if (flat_mask & (1 << g)) L[8 * i + g] = 0;
    }
    _mm256_storeu_ps(scale_out, scale);
    _mm256_storeu_ps(neg_min_out, _mm256_xor_ps(lo, _mm256_set1_ps(-0.0f)));
}

/// The extreme (largest magnitude, first on ties) of each lane's group; `amax` gets its magnitude.
V8 static inline __m256 extreme8(int n, const float *xt, __m256 *amax_out) {
    __m256 amax = _mm256_setzero_ps(), ext = _mm256_setzero_ps();
    for (int i = 0; i < n; i++) {
        const __m256 x = _mm256_loadu_ps(xt + 8 * i), a = abs8(x);
        const __m256 m = GT(a, amax);
        amax = sel8(amax, a, m);
        ext = sel8(ext, x, m);
    }
    *amax_out = amax;
    return ext;
}

/// fit_symmetric on eight groups. `L` gets l + nmax as L[8 * i + g].
V8 static void fit_symmetric8(int n, int nmax, const float *xt, int32_t *L, float *scale_out) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 amax;
    const __m256 ext = extreme8(n, xt, &amax);
    const __m256 tiny = LT(amax, _mm256_set1_ps(EPS_ZERO));
    __m256 inv = _mm256_div_ps(_mm256_set1_ps((float)-nmax), ext);
    __m256 slx = zero, sl2 = zero;
    for (int i = 0; i < n; i++) {
        const __m256 x = _mm256_loadu_ps(xt + 8 * i);
        const __m256i l = clamp8(round_magic8(_mm256_mul_ps(inv, x)), -nmax, nmax - 1);
        _mm256_storeu_si256((__m256i *)(L + 8 * i), _mm256_add_epi32(l, _mm256_set1_epi32(nmax)));
        const __m256 lf = _mm256_cvtepi32_ps(l), w = _mm256_mul_ps(x, x);
        slx = _mm256_add_ps(slx, _mm256_mul_ps(_mm256_mul_ps(w, x), lf));
        sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w, lf), lf));
    }
    __m256 scale = sel8(zero, _mm256_div_ps(slx, sl2), _mm256_cmp_ps(sl2, zero, _CMP_NEQ_UQ));
    __m256 best = _mm256_mul_ps(scale, slx);
    int32_t trial[8 * 16];
    for (int k = -9; k <= 9; k++) {
        if (k == 0) continue;
        inv = _mm256_div_ps(_mm256_set1_ps(-(nmax + 0.1f * k)), ext);
        slx = sl2 = zero;
        for (int i = 0; i < n; i++) {
            const __m256 x = _mm256_loadu_ps(xt + 8 * i);
            const __m256i l = clamp8(round_magic8(_mm256_mul_ps(inv, x)), -nmax, nmax - 1);
            _mm256_storeu_si256((__m256i *)(trial + 8 * i), _mm256_add_epi32(l, _mm256_set1_epi32(nmax)));
            const __m256 lf = _mm256_cvtepi32_ps(l), w = _mm256_mul_ps(x, x);
            slx = _mm256_add_ps(slx, _mm256_mul_ps(_mm256_mul_ps(w, x), lf));
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w, lf), lf));
        }
        const __m256 better = _mm256_and_ps(GT(sl2, zero), GT(_mm256_mul_ps(slx, slx), _mm256_mul_ps(best, sl2)));
        if (_mm256_movemask_ps(better)) {
            const __m256i take = _mm256_castps_si256(better);
            for (int i = 0; i < n; i++) {
                const __m256i old = _mm256_loadu_si256((const __m256i *)(L + 8 * i));
                const __m256i t = _mm256_loadu_si256((const __m256i *)(trial + 8 * i));
                _mm256_storeu_si256((__m256i *)(L + 8 * i), _mm256_blendv_epi8(old, t, take));
            }
            scale = sel8(scale, _mm256_div_ps(slx, sl2), better);
            best = sel8(best, _mm256_mul_ps(scale, slx), better);
        }
    }
    const int tiny_mask = _mm256_movemask_ps(tiny);
    if (tiny_mask) {
        for (int i = 0; i < n; i++)
            for (int g = 0; g < 8; g++)
                if (tiny_mask & (1 << g)) L[8 * i + g] = 0;
    }
    _mm256_storeu_ps(scale_out, sel8(scale, zero, tiny));
}

/// fit_symmetric_refined on eight groups. `L` gets l + nmax as L[8 * i + g].
V8 static void fit_symmetric_refined8(int n, int nmax, const float *xt, int32_t *L, float *scale_out) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 amax;
    const __m256 ext = extreme8(n, xt, &amax);
    const __m256 tiny = LT(amax, _mm256_set1_ps(EPS_ZERO));
    const __m256 inv = _mm256_div_ps(_mm256_set1_ps((float)-nmax), ext);
    __m256 slx = zero, sl2 = zero;
    for (int i = 0; i < n; i++) {
        const __m256 x = _mm256_loadu_ps(xt + 8 * i);
        const __m256i l = clamp8(round_magic8(_mm256_mul_ps(inv, x)), -nmax, nmax - 1);
        _mm256_storeu_si256((__m256i *)(L + 8 * i), l);
        const __m256 lf = _mm256_cvtepi32_ps(l), w = _mm256_mul_ps(x, x);
        slx = _mm256_add_ps(slx, _mm256_mul_ps(_mm256_mul_ps(w, x), lf));
        sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w, lf), lf));
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const __m256 x = _mm256_loadu_ps(xt + 8 * i), w = _mm256_mul_ps(x, x), wx = _mm256_mul_ps(w, x);
            const __m256i li = _mm256_loadu_si256((const __m256i *)(L + 8 * i));
            const __m256 lf = _mm256_cvtepi32_ps(li);
            __m256 tlx = _mm256_sub_ps(slx, _mm256_mul_ps(wx, lf));
            __m256 tl2 = _mm256_sub_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w, lf), lf));
            const __m256i nl = clamp8(round_magic8(_mm256_div_ps(_mm256_mul_ps(x, tl2), tlx)), -nmax, nmax - 1);
            const __m256 nf = _mm256_cvtepi32_ps(nl);
            const __m256 differs = _mm256_castsi256_ps(_mm256_xor_si256(_mm256_cmpeq_epi32(nl, li), _mm256_set1_epi32(-1)));
            tlx = _mm256_add_ps(tlx, _mm256_mul_ps(wx, nf));
            tl2 = _mm256_add_ps(tl2, _mm256_mul_ps(_mm256_mul_ps(w, nf), nf));
            const __m256 gain = GT(_mm256_mul_ps(_mm256_mul_ps(tlx, tlx), sl2), _mm256_mul_ps(_mm256_mul_ps(slx, slx), tl2));
            const __m256 take = _mm256_and_ps(_mm256_and_ps(GT(_mm256_sub_ps(slx, _mm256_mul_ps(wx, lf)), zero), differs),
                                              _mm256_and_ps(GT(tl2, zero), gain));
            if (_mm256_movemask_ps(take)) {
                changed = 1;
                _mm256_storeu_si256((__m256i *)(L + 8 * i), _mm256_blendv_epi8(li, nl, _mm256_castps_si256(take)));
                slx = sel8(slx, tlx, take);
                sl2 = sel8(sl2, tl2, take);
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < 8 * n; i++) L[i] += nmax;
    const int tiny_mask = _mm256_movemask_ps(tiny);
    if (tiny_mask) {
        for (int i = 0; i < n; i++)
            for (int g = 0; g < 8; g++)
                if (tiny_mask & (1 << g)) L[8 * i + g] = 0;
    }
    const __m256 scale = sel8(zero, _mm256_div_ps(slx, sl2), GT(sl2, zero));
    _mm256_storeu_ps(scale_out, sel8(scale, zero, tiny));
}

/// Transposes eight groups of `n` values (group g at x + n * g) to xt[8 * i + g].
static inline void transpose8(const float *x, int n, float *xt) {
    for (int g = 0; g < 8; g++)
        for (int i = 0; i < n; i++) xt[8 * i + g] = x[n * g + i];
}

/// Fits the 16 groups of 16 values of a super-block symmetrically, with Q3_K's refined search
/// (`refined`) or Q6_K's, eight groups at a time on AVX2. `L` gets the levels (l + nmax), `scales`
/// the group scales. Returns the scale of largest magnitude (the first on ties); `*amax` gets it.
static float fit_symmetric_groups(const float *x, int nmax, int refined, int8_t *L, float *scales, float *amax) {
    if (ditkit_kernels_vectorised()) {
        float xt[8 * 16];
        int32_t Lt[8 * 16];
        for (int half = 0; half < 2; half++) {
            transpose8(x + 128 * half, 16, xt);
            if (refined) fit_symmetric_refined8(16, nmax, xt, Lt, scales + 8 * half);
            else fit_symmetric8(16, nmax, xt, Lt, scales + 8 * half);
            for (int g = 0; g < 8; g++)
                for (int i = 0; i < 16; i++) L[128 * half + 16 * g + i] = (int8_t)Lt[8 * i + g];
        }
    } else {
        for (int g = 0; g < 16; g++)
            scales[g] = refined ? fit_symmetric_refined(16, nmax, x + 16 * g, L + 16 * g) : fit_symmetric(16, nmax, x + 16 * g, L + 16 * g);
    }
    float best = 0, top = 0;
    for (int g = 0; g < 16; g++) {
        const float a = fabsf(scales[g]);
        if (a > top) { top = a; best = scales[g]; }
    }
    *amax = top;
    return best;
}

/// Packs 2-bit levels: byte l of each 32-byte group holds values l, l+32, l+64, l+96 of a 128-run.
static inline void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int r = 0; r < SUPER; r += 128) {
        for (int l = 0; l < 32; l++) {
            qs[r / 4 + l] = (uint8_t)(L[r + l] | (L[r + l + 32] << 2) | (L[r + l + 64] << 4) | (L[r + l + 96] << 6));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q2_K: {u8 scales[16] (low nibble scale, high nibble min); u8 qs[64]; f16 d; f16 dmin} = 84 bytes.
// 16 groups of 16: x = d * (sc & 15) * q - dmin * (sc >> 4).

static void q2_k_quantize(const float *x, uint8_t *out, size_t nb) {
    uint8_t L[SUPER], trial[16];
    float w[16], mins[16], scales[16];
    for (size_t b = 0; b < nb; b++, x += SUPER, out += 84) {
        uint8_t *sc = out, *qs = out + 16;
        float max_scale = 0, max_min = 0;
        if (ditkit_kernels_vectorised()) {
            float xt[8 * 16], wt[8 * 16];
            int32_t Lt[8 * 16];
            for (int half = 0; half < 2; half++) {
                transpose8(x + 128 * half, 16, xt);
                for (int i = 0; i < 8 * 16; i++) wt[i] = fabsf(xt[i]);
                fit_affine8(16, 3, xt, wt, Lt, scales + 8 * half, mins + 8 * half, -0.5f, 0.1f, 15, 1);
                for (int g = 0; g < 8; g++)
                    for (int i = 0; i < 16; i++) L[128 * half + 16 * g + i] = (uint8_t)Lt[8 * i + g];
            }
        } else {
            for (int g = 0; g < 16; g++) {
                for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * g + l]);
                scales[g] = fit_affine(16, 3, x + 16 * g, w, L + 16 * g, &mins[g], trial, -0.5f, 0.1f, 15, 1);
            }
        }
        for (int g = 0; g < 16; g++) {
            if (scales[g] > max_scale) max_scale = scales[g];
            if (mins[g] > max_min) max_min = mins[g];
        }
        if (max_scale > 0) {
            const float inv = 15.f / max_scale;
            for (int g = 0; g < 16; g++) sc[g] = (uint8_t)round_magic(inv * scales[g]);
            store_half(out + 80, max_scale / 15.f);
        } else {
            for (int g = 0; g < 16; g++) sc[g] = 0;
            store_half(out + 80, 0.f);
        }
        if (max_min > 0) {
            const float inv = 15.f / max_min;
            for (int g = 0; g < 16; g++) sc[g] = (uint8_t)(sc[g] | (uint8_t)(round_magic(inv * mins[g]) << 4));
            store_half(out + 82, max_min / 15.f);
        } else {
            store_half(out + 82, 0.f);
        }
        const float d_all = load_half(out + 80), m_all = load_half(out + 82);
        for (int g = 0; g < 16; g++) {
            const float d = d_all * (sc[g] & 0xF);
            if (!d) continue;
            const float dm = m_all * (sc[g] >> 4);
            for (int i = 0; i < 16; i++) L[16 * g + i] = (uint8_t)clampi(round_magic((x[16 * g + i] + dm) / d), 0, 3);
        }
        pack_2bit(L, qs);
    }
}

static void q2_k_dequantize(const uint8_t *in, float *y, size_t nb) {
    for (size_t b = 0; b < nb; b++, in += 84, y += SUPER) {
        const uint8_t *sc = in;
        const float d = load_half(in + 80), m = load_half(in + 82);
        // Value e = 128 r + 32 j + l: bits 2j of qs[32 r + l]; group e / 16 = 8 r + 2 j + l / 16.
        for (int r = 0; r < 2; r++) {
            const uint8_t *qs = in + 16 + 32 * r;
            for (int j = 0; j < 4; j++) {
                for (int h = 0; h < 2; h++) {
                    const uint8_t s = sc[8 * r + 2 * j + h];
                    const float dl = d * (float)(s & 0xF), ml = m * (float)(s >> 4);
                    float *o = y + 128 * r + 32 * j + 16 * h;
                    for (int l = 0; l < 16; l++) o[l] = dl * (float)((qs[16 * h + l] >> (2 * j)) & 3) - ml;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q3_K: {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d} = 110 bytes. 16 groups of 16 with 6-bit
// signed scales (stored + 32): low nibbles of groups 0-7 in scales[0-7] low, 8-15 in scales[0-7]
// high; the top two bits of group g in scales[8 + g % 4] at bit 2 * (g / 4). Value e has its low
// two bits in qs like Q2_K and its third bit in hmask[e % 32] bit e / 32 (set = no offset);
// x = d * (scale - 32) * (q - 4).

static inline int q3_scale(const uint8_t *s, int g) {
    int low = g < 8 ? (s[g] & 0xF) : (s[g - 8] >> 4);
    int high = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
    return (int)(int8_t)(uint8_t)(low | (high << 4)) - 32;
}

static void q3_k_quantize(const float *x, uint8_t *out, size_t nb) {
    int8_t L[SUPER];
    float scales[16];
    for (size_t b = 0; b < nb; b++, x += SUPER, out += 110) {
        uint8_t *hmask = out, *qs = out + 32, *sc = out + 96;
        float amax;
        const float max_scale = fit_symmetric_groups(x, 4, 1, L, scales, &amax);
        memset(sc, 0, 12);
        if (max_scale) {
            const float inv = -32.f / max_scale;
            for (int g = 0; g < 16; g++) {
                int8_t l = (int8_t)round_magic(inv * scales[g]);
                l = (int8_t)(clampi(l, -32, 31) + 32);
                if (g < 8) sc[g] = (uint8_t)(l & 0xF);
                else sc[g - 8] = (uint8_t)(sc[g - 8] | ((l & 0xF) << 4));
                l = (int8_t)(l >> 4);
                sc[g % 4 + 8] = (uint8_t)(sc[g % 4 + 8] | (l << (2 * (g / 4))));
            }
            store_half(out + 108, 1 / inv);
        } else {
            store_half(out + 108, 0.f);
        }
        const float d_all = load_half(out + 108);
        for (int g = 0; g < 16; g++) {
            const int8_t s = (int8_t)q3_scale(sc, g);
            const float d = d_all * s;
            if (!d) continue;
            for (int i = 0; i < 16; i++) L[16 * g + i] = (int8_t)(clampi(round_magic(x[16 * g + i] / d), -4, 3) + 4);
        }
        memset(hmask, 0, 32);
        uint8_t low[SUPER];
        for (int e = 0; e < SUPER; e++) {
            int l = L[e];
            if (l > 3) { hmask[e % 32] = (uint8_t)(hmask[e % 32] | (1u << (e / 32))); l -= 4; }
            low[e] = (uint8_t)l;
        }
        pack_2bit(low, qs);
    }
}

static void q3_k_dequantize(const uint8_t *in, float *y, size_t nb) {
    for (size_t b = 0; b < nb; b++, in += 110, y += SUPER) {
        const uint8_t *hmask = in, *sc = in + 96;
        const float d = load_half(in + 108);
        for (int r = 0; r < 2; r++) {
            const uint8_t *qs = in + 32 + 32 * r;
            for (int j = 0; j < 4; j++) {
                const int bit = 4 * r + j;
                for (int h = 0; h < 2; h++) {
                    const float dl = d * (float)q3_scale(sc, 8 * r + 2 * j + h);
                    float *o = y + 128 * r + 32 * j + 16 * h;
                    for (int l = 0; l < 16; l++) {
                        const int low = (qs[16 * h + l] >> (2 * j)) & 3;
                        const int high = (hmask[16 * h + l] >> bit) & 1;
                        o[l] = dl * (float)(low - ((high ^ 1) << 2));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q4_K / Q5_K: {f16 d; f16 dmin; u8 scales[12]; [Q5_K: u8 qh[32]]; u8 qs[128]} = 144 / 176 bytes.
// 8 groups of 32 with 6-bit scales and mins: groups 0-3 in the low six bits of scales[g] (scale) and
// scales[g + 4] (min); groups 4-7 in the nibbles of scales[g + 4] (scale low, min high) with their
// top two bits in the high bits of scales[g - 4] (scale) and scales[g] (min).
// x = d * scale * q - dmin * min.

static inline void k4_scale_min(const uint8_t *s, int g, uint8_t *scale, uint8_t *min) {
    if (g < 4) {
        *scale = s[g] & 63;
        *min = s[g + 4] & 63;
    } else {
        *scale = (uint8_t)((s[g + 4] & 0xF) | ((s[g - 4] >> 6) << 4));
        *min = (uint8_t)((s[g + 4] >> 4) | ((s[g] >> 6) << 4));
    }
}

/// The shared part of Q4_K and Q5_K: fits every group, writes d, dmin and the packed scales,
/// and leaves the final levels (0..nmax) in L.
static void k_affine_block(const float *x, uint8_t *head, uint8_t *L, int nmax, float first, int steps) {
    float w[32], mins[8], scales[8];
    uint8_t trial[32];
    uint8_t *sc = head + 4;
    float max_scale = 0, max_min = 0;
    if (ditkit_kernels_vectorised()) {
        float xt[8 * 32], wt[8 * 32], av[8];
        int32_t Lt[8 * 32];
        transpose8(x, 32, xt);
        for (int g = 0; g < 8; g++) {
            float sum2 = 0;
            for (int l = 0; l < 32; l++) sum2 += x[32 * g + l] * x[32 * g + l];
            av[g] = sqrtf(sum2 / 32);
        }
        for (int i = 0; i < 32; i++)
            for (int g = 0; g < 8; g++) wt[8 * i + g] = av[g] + fabsf(xt[8 * i + g]);
        fit_affine8(32, nmax, xt, wt, Lt, scales, mins, first, 0.1f, steps, 0);
        for (int g = 0; g < 8; g++)
            for (int i = 0; i < 32; i++) L[32 * g + i] = (uint8_t)Lt[8 * i + g];
    } else {
        for (int g = 0; g < 8; g++) {
            const float *xg = x + 32 * g;
            float sum2 = 0;
            for (int l = 0; l < 32; l++) sum2 += xg[l] * xg[l];
            const float av = sqrtf(sum2 / 32);
            for (int l = 0; l < 32; l++) w[l] = av + fabsf(xg[l]);
            scales[g] = fit_affine(32, nmax, xg, w, L + 32 * g, &mins[g], trial, first, 0.1f, steps, 0);
        }
    }
    for (int g = 0; g < 8; g++) {
        if (scales[g] > max_scale) max_scale = scales[g];
        if (mins[g] > max_min) max_min = mins[g];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int g = 0; g < 8; g++) {
        uint8_t ls = (uint8_t)round_magic(inv_scale * scales[g]);
        uint8_t lm = (uint8_t)round_magic(inv_min * mins[g]);
        if (ls > 63) ls = 63;
        if (lm > 63) lm = 63;
        if (g < 4) {
            sc[g] = ls;
            sc[g + 4] = lm;
        } else {
            sc[g + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            sc[g - 4] = (uint8_t)(sc[g - 4] | ((ls >> 4) << 6));
            sc[g] = (uint8_t)(sc[g] | ((lm >> 4) << 6));
        }
    }
    store_half(head, max_scale / 63.f);
    store_half(head + 2, max_min / 63.f);
    const float d_all = load_half(head), m_all = load_half(head + 2);
    for (int g = 0; g < 8; g++) {
        uint8_t s, m;
        k4_scale_min(sc, g, &s, &m);
        const float d = d_all * s;
        if (!d) continue;
        const float dm = m_all * m;
        for (int i = 0; i < 32; i++) L[32 * g + i] = (uint8_t)clampi(round_magic((x[32 * g + i] + dm) / d), 0, nmax);
    }
}

static void q4_k_quantize(const float *x, uint8_t *out, size_t nb) {
    uint8_t L[SUPER];
    for (size_t b = 0; b < nb; b++, x += SUPER, out += 144) {
        k_affine_block(x, out, L, 15, -1.f, 20);
        uint8_t *qs = out + 16;
        for (int r = 0; r < SUPER; r += 64, qs += 32) {
            for (int l = 0; l < 32; l++) qs[l] = (uint8_t)(L[r + l] | (L[r + l + 32] << 4));
        }
    }
}

static void q4_k_dequantize(const uint8_t *in, float *y, size_t nb) {
    for (size_t b = 0; b < nb; b++, in += 144, y += SUPER) {
        const float d = load_half(in), dmin = load_half(in + 2);
        const uint8_t *sc = in + 4, *qs = in + 16;
        for (int g = 0; g < 8; g++) {
            uint8_t s, m;
            k4_scale_min(sc, g, &s, &m);
            const float d1 = d * (float)s, m1 = dmin * (float)m;
            const uint8_t *q = qs + 32 * (g / 2);
            const int shift = 4 * (g % 2);
            for (int l = 0; l < 32; l++) y[32 * g + l] = d1 * (float)((q[l] >> shift) & 0xF) - m1;
        }
    }
}

static void q5_k_quantize(const float *x, uint8_t *out, size_t nb) {
    uint8_t L[SUPER];
    for (size_t b = 0; b < nb; b++, x += SUPER, out += 176) {
        k_affine_block(x, out, L, 31, -0.5f, 15);
        uint8_t *qh = out + 16, *qs = out + 48;
        memset(qh, 0, 32);
        for (int g = 0; g < 8; g += 2, qs += 32) {
            for (int l = 0; l < 32; l++) {
                int a = L[32 * g + l], c = L[32 * g + 32 + l];
                if (a > 15) { a -= 16; qh[l] = (uint8_t)(qh[l] | (1u << g)); }
                if (c > 15) { c -= 16; qh[l] = (uint8_t)(qh[l] | (1u << (g + 1))); }
                qs[l] = (uint8_t)(a | (c << 4));
            }
        }
    }
}

static void q5_k_dequantize(const uint8_t *in, float *y, size_t nb) {
    for (size_t b = 0; b < nb; b++, in += 176, y += SUPER) {
        const float d = load_half(in), dmin = load_half(in + 2);
        const uint8_t *sc = in + 4, *qh = in + 16, *qs = in + 48;
        #pragma clang loop unroll(full)   // constant shifts: vectorised without -O3
        for (int g = 0; g < 8; g++) {
            uint8_t s, m;
            k4_scale_min(sc, g, &s, &m);
            const float d1 = d * (float)s, m1 = dmin * (float)m;
            const uint8_t *q = qs + 32 * (g / 2);
            const int shift = 4 * (g % 2);
            for (int l = 0; l < 32; l++) {
                const int v = ((q[l] >> shift) & 0xF) | (((qh[l] >> g) & 1) << 4);
                y[32 * g + l] = d1 * (float)v - m1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q6_K: {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d} = 210 bytes. 16 groups of 16, x = d * scale *
// (q - 32). In each 128-run r (ql + 64 r, qh + 32 r), value l (0..31) has its low nibble in
// ql[l] low, l + 32 in ql[l + 32] low, l + 64 in ql[l] high, l + 96 in ql[l + 32] high; its top two
// bits in qh[l] at bits 0, 2, 4, 6 for l, l + 32, l + 64, l + 96.

static void q6_k_quantize(const float *x, uint8_t *out, size_t nb) {
    int8_t L[SUPER];
    float scales[16];
    for (size_t b = 0; b < nb; b++, x += SUPER, out += 210) {
        int8_t *sc = (int8_t *)(out + 192);
        float max_abs;
        const float max_scale = fit_symmetric_groups(x, 32, 0, L, scales, &max_abs);
        if (max_abs < EPS_ZERO) {
            memset(out, 0, 210);
            continue;
        }
        const float inv = -128.f / max_scale;
        store_half(out + 208, 1 / inv);
        for (int g = 0; g < 16; g++) {
            int v = round_magic(inv * scales[g]);
            sc[g] = (int8_t)(v < 127 ? v : 127);
        }
        const float d_all = load_half(out + 208);
        for (int g = 0; g < 16; g++) {
            const float d = d_all * sc[g];
            if (!d) continue;
            for (int i = 0; i < 16; i++) L[16 * g + i] = (int8_t)(clampi(round_magic(x[16 * g + i] / d), -32, 31) + 32);
        }
        uint8_t *ql = out, *qh = out + 128;
        for (int r = 0; r < SUPER; r += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const uint8_t a = (uint8_t)L[r + l], c = (uint8_t)L[r + l + 32], e = (uint8_t)L[r + l + 64], f = (uint8_t)L[r + l + 96];
                ql[l] = (uint8_t)((a & 0xF) | ((e & 0xF) << 4));
                ql[l + 32] = (uint8_t)((c & 0xF) | ((f & 0xF) << 4));
                qh[l] = (uint8_t)((a >> 4) | ((c >> 4) << 2) | ((e >> 4) << 4) | ((f >> 4) << 6));
            }
        }
    }
}

static void q6_k_dequantize(const uint8_t *in, float *y, size_t nb) {
    for (size_t b = 0; b < nb; b++, in += 210, y += SUPER) {
        const int8_t *sc = (const int8_t *)(in + 192);
        const float d = load_half(in + 208);
        float ds[16];
        for (int g = 0; g < 16; g++) ds[g] = d * (float)sc[g];
        // Value 128 run + i: nibble i / 64 of ql[64 run + i % 64], bits 2 (i / 32) of qh[32 run + i % 32].
        for (int run = 0; run < 2; run++) {
            const uint8_t *ql = in + 64 * run, *qh = in + 128 + 32 * run;
            for (int k = 0; k < 4; k++) {
                for (int h = 0; h < 2; h++) {
                    const float dg = ds[8 * run + 2 * k + h];
                    float *o = y + 128 * run + 32 * k + 16 * h;
                    for (int l = 0; l < 16; l++) {
                        const int i = 32 * k + 16 * h + l;
                        const int low = (ql[i % 64] >> (4 * (k / 2))) & 0xF;
                        const int high = (qh[16 * h + l] >> (2 * k)) & 3;
                        o[l] = dg * (float)((low | (high << 4)) - 32);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatch.

size_t ditkit_quant_block_elements(int type) {
    switch (type) {
    case DITKIT_GGML_Q4_0: case DITKIT_GGML_Q4_1: case DITKIT_GGML_Q5_0: case DITKIT_GGML_Q5_1: case DITKIT_GGML_Q8_0: return 32;
    case DITKIT_GGML_Q2_K: case DITKIT_GGML_Q3_K: case DITKIT_GGML_Q4_K: case DITKIT_GGML_Q5_K: case DITKIT_GGML_Q6_K: return SUPER;
    default: return 0;
    }
}

size_t ditkit_quant_block_bytes(int type) {
    switch (type) {
    case DITKIT_GGML_Q4_0: return 18;
    case DITKIT_GGML_Q4_1: return 20;
    case DITKIT_GGML_Q5_0: return 22;
    case DITKIT_GGML_Q5_1: return 24;
    case DITKIT_GGML_Q8_0: return 34;
    case DITKIT_GGML_Q2_K: return 84;
    case DITKIT_GGML_Q3_K: return 110;
    case DITKIT_GGML_Q4_K: return 144;
    case DITKIT_GGML_Q5_K: return 176;
    case DITKIT_GGML_Q6_K: return 210;
    default: return 0;
    }
}

int ditkit_quantize_blocks(int type, const float *src, void *dst, size_t nblocks) {
    uint8_t *o = (uint8_t *)dst;
    switch (type) {
    case DITKIT_GGML_Q4_0: q4_0_quantize(src, o, nblocks); return 0;
    case DITKIT_GGML_Q4_1: q4_1_quantize(src, o, nblocks); return 0;
    case DITKIT_GGML_Q5_0: q5_0_quantize(src, o, nblocks); return 0;
    case DITKIT_GGML_Q5_1: q5_1_quantize(src, o, nblocks); return 0;
    case DITKIT_GGML_Q8_0: q8_0_quantize(src, o, nblocks); return 0;
    case DITKIT_GGML_Q2_K: q2_k_quantize(src, o, nblocks); return 0;
    case DITKIT_GGML_Q3_K: q3_k_quantize(src, o, nblocks); return 0;
    case DITKIT_GGML_Q4_K: q4_k_quantize(src, o, nblocks); return 0;
    case DITKIT_GGML_Q5_K: q5_k_quantize(src, o, nblocks); return 0;
    case DITKIT_GGML_Q6_K: q6_k_quantize(src, o, nblocks); return 0;
    default: return -1;
    }
}

int ditkit_dequantize_blocks(int type, const void *src, float *dst, size_t nblocks) {
    const uint8_t *i = (const uint8_t *)src;
    switch (type) {
    case DITKIT_GGML_Q4_0: q4_0_dequantize(i, dst, nblocks); return 0;
    case DITKIT_GGML_Q4_1: q4_1_dequantize(i, dst, nblocks); return 0;
    case DITKIT_GGML_Q5_0: q5_0_dequantize(i, dst, nblocks); return 0;
    case DITKIT_GGML_Q5_1: q5_1_dequantize(i, dst, nblocks); return 0;
    case DITKIT_GGML_Q8_0: q8_0_dequantize(i, dst, nblocks); return 0;
    case DITKIT_GGML_Q2_K: q2_k_dequantize(i, dst, nblocks); return 0;
    case DITKIT_GGML_Q3_K: q3_k_dequantize(i, dst, nblocks); return 0;
    case DITKIT_GGML_Q4_K: q4_k_dequantize(i, dst, nblocks); return 0;
    case DITKIT_GGML_Q5_K: q5_k_dequantize(i, dst, nblocks); return 0;
    case DITKIT_GGML_Q6_K: q6_k_dequantize(i, dst, nblocks); return 0;
    default: return -1;
    }
}
