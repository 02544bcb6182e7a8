// ggml block quantization types: quantizers that give the bytes ggml's reference quantizers
// (`quantize_row_*_ref`, the imatrix-free path) give, and dequantizers that give the values
// gguf-py's `dequantize` gives. Written from the block layouts of ggml-common.h and the
// algorithms they are made by; FORMAT.md documents every layout byte by byte.
//
// Type codes are ggml's (`enum ggml_type`). Every function works on whole blocks: `nblocks`
// consecutive blocks of `ditkit_quant_block_elements(type)` floats / `ditkit_quant_block_bytes(type)`
// bytes. Blocks are independent, so callers may split a tensor across threads at any block boundary.
//
// Arithmetic is float32 in a fixed order, with floating-point contraction off (no FMA), so the
// results are the same on every x86-64 and ARM CPU. The quantizers expect finite inputs (the
// Swift layer refuses tensors with NaN or infinity before calling them).
#ifndef DITKIT_QUANTS_H
#define DITKIT_QUANTS_H
#include <stddef.h>
#include <stdint.h>

/// ggml type codes of the block types DiTKit reads and writes.
enum {
    DITKIT_GGML_Q4_0 = 2,
    DITKIT_GGML_Q4_1 = 3,
    DITKIT_GGML_Q5_0 = 6,
    DITKIT_GGML_Q5_1 = 7,
    DITKIT_GGML_Q8_0 = 8,
    DITKIT_GGML_Q2_K = 10,
    DITKIT_GGML_Q3_K = 11,
    DITKIT_GGML_Q4_K = 12,
    DITKIT_GGML_Q5_K = 13,
    DITKIT_GGML_Q6_K = 14,
};

/// Values per block of `type` (32 or 256); 0 for a code that is not one of the types above.
size_t ditkit_quant_block_elements(int type);
/// Bytes per block of `type`; 0 for a code that is not one of the types above.
size_t ditkit_quant_block_bytes(int type);

/// Quantizes `nblocks` blocks of float32 values at `src` into `dst`. Returns 0, or -1 for an
/// unknown type (nothing written).
int ditkit_quantize_blocks(int type, const float *src, void *dst, size_t nblocks);
/// Dequantizes `nblocks` blocks at `src` into float32 values at `dst`. Returns 0, or -1 for an
/// unknown type (nothing written). Any bytes are accepted: a block of garbage gives garbage
/// values (possibly inf or NaN from its float16 scales), never out-of-bounds access.
int ditkit_dequantize_blocks(int type, const void *src, float *dst, size_t nblocks);

#endif
