// Vectorised dtype conversion kernels with runtime CPU dispatch (AVX2 + F16C where the CPU has
// them, portable C otherwise). Both paths give bit-identical values AND bit-identical error
// statistics: the portable path emulates the 8-lane accumulation order of the vector path.
#ifndef DITKIT_KERNELS_H
#define DITKIT_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Error figures of narrowed values against their float32 sources. Sources that are NaN or
/// +-inf are left out of every figure and counted (`nonfinite`), as ditkit_count_nonfinite_f32
/// would count them, so a conversion to F16 or BF16 need not read its values once more for that.
typedef struct {
    double sum_sq_err;    ///< sum of (stored - source)^2 over finite sources that did not overflow
    double sum_sq_src;    ///< sum of source^2 over the same elements
    float max_abs;        ///< max |stored - source| over the same elements
    uint64_t overflow;    ///< finite sources stored as +-inf
    uint64_t flushed;     ///< non-zero finite sources stored as 0
    uint64_t nonfinite;   ///< sources that are NaN or +-inf
} ditkit_error_stats;

/// 1 when the vector path (AVX2 + F16C) is used on this CPU.
int ditkit_kernels_vectorised(void);
/// Forces the portable path (for tests): 1 = portable only, 0 = automatic.
void ditkit_kernels_force_portable(int on);

/// float32 -> float16 bits (round to nearest even, overflow to inf), accumulating error figures.
void ditkit_f32_to_f16(const float *src, uint16_t *dst, size_t n, ditkit_error_stats *stats);
/// float32 -> bfloat16 bits (round to nearest even; NaN -> 0x7FC0), accumulating error figures.
void ditkit_f32_to_bf16(const float *src, uint16_t *dst, size_t n, ditkit_error_stats *stats);
/// Symmetric int8 of one row: scale = max|x| / 127, q = round_half_even(x / scale) clamped to
/// [-127, 127] (all zero when scale is 0). Returns the scale; accumulates error figures.
float ditkit_f32_to_i8_row(const float *src, int8_t *dst, size_t n, ditkit_error_stats *stats);
/// float16 bits -> float32 (exact).
void ditkit_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/// bfloat16 bits -> float32 (exact).
void ditkit_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/// Symmetric per-row int8 -> float32: dst[r, c] = (float)q[r, c] * scale[r] for `rows` rows of
/// `cols` values (one exact conversion and one multiply, as the portable expression).
void ditkit_i8_rows_to_f32(const int8_t *q, const float *scale, size_t rows, size_t cols, float *dst);

/// Number of NaN and +-inf values among `n` little-endian elements at `src` (any alignment).
size_t ditkit_count_nonfinite_f32(const void *src, size_t n);
size_t ditkit_count_nonfinite_f64(const void *src, size_t n);
/// For 16-bit formats: an element is non-finite when all bits of `exponent_mask` are set
/// (0x7C00 for float16, 0x7F80 for bfloat16).
size_t ditkit_count_nonfinite_16(const void *src, size_t n, uint16_t exponent_mask);

/// x * sigmoid(x), in place. Vector and portable paths compute the same polynomial exp.
void ditkit_silu(float *x, size_t n);
/// GELU with the tanh approximation, in place.
void ditkit_gelu_tanh(float *x, size_t n);
/// Softmax of each of `rows` rows of `cols` values, in place (the same polynomial exp, a sum in
/// 8 lanes folded in order, one reciprocal; vector and portable paths give the same bits).
void ditkit_softmax_rows(float *x, size_t rows, size_t cols);
/// RMSNorm of each row of `dim` values: y = x · (float)(1 / sqrt(mean(x²) + eps)) · weight (no
/// weight when NULL), the mean of squares summed in double in 4 lanes (same bits in both paths).
void ditkit_rms_norm_rows(const float *x, size_t rows, size_t dim, double eps, const float *weight, float *y);


/// Most rows of `x` the direct products take in one pass over the weights (more are done in groups).
#define DITKIT_DIRECT_MAX_ROWS 8
/// Few-row products straight from stored weights, without widening them first:
/// y[r * ldy + j] = sum_c x[r * ldx + c] * W[j, c] for r < rows, j < n, with `w` [n, k] row-major
/// and W[j, c] its float32 value (an int8 times scale[j]). Each output is 16 chains of fused
/// multiply-adds over the columns (column c in chain c mod 16, for every whole group of 16
/// columns), folded in a fixed order, then the remaining columns in order. A product depends on
/// the weights' float32 values only (an int8 or float16 weight gives the bits its float32 widening
/// gives with ditkit_direct_f32), and the vector (AVX2 + FMA + F16C) and portable paths give the
/// same bits.
void ditkit_direct_i8(const int8_t *w, const float *scale, size_t n, size_t k, const float *x, size_t ldx, size_t rows, float *y, size_t ldy);
void ditkit_direct_f16(const uint16_t *w, size_t n, size_t k, const float *x, size_t ldx, size_t rows, float *y, size_t ldy);
void ditkit_direct_bf16(const uint16_t *w, size_t n, size_t k, const float *x, size_t ldx, size_t rows, float *y, size_t ldy);
void ditkit_direct_f32(const float *w, size_t n, size_t k, const float *x, size_t ldx, size_t rows, float *y, size_t ldy);

#endif
