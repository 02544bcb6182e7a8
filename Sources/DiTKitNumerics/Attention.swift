// Scaled dot-product attention, one head at a time (the T×T score matrix of one head is the
// only one ever allocated).

public enum Attention {
    /// For each batch item and head: `out_h = softmax(q_h k_hᵀ · scale) v_h`.
    ///
    /// `q`, `k`, `v` are `[batch, tokens, heads * headDim]` views with row stride `rowStride`
    /// (3·D when they are the thirds of a fused qkv output); `out` is `[batch, tokens, heads * headDim]`.
    public static func multiHead(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, rowStride: Int,
                                 batch: Int, tokens: Int, heads: Int, headDim: Int, scale: Float,
                                 into out: UnsafeMutablePointer<Float>) {
        let d = heads * headDim
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: tokens * tokens)
        defer { scores.deallocate() }
        for n in 0..<batch {
            for h in 0..<heads {
                let off = n * tokens * rowStride + h * headDim
                Gemm.multiply(q + off, k + off, scores, m: tokens, n: tokens, k: headDim, transB: true,
                              alpha: scale, lda: rowStride, ldb: rowStride)
                Ops.softmaxRows(scores, rows: tokens, cols: tokens)
                Gemm.multiply(scores, v + off, out + n * tokens * d + h * headDim, m: tokens, n: headDim, k: tokens,
                              ldb: rowStride, ldc: d)
            }
        }
    }
}

extension Attention {
    /// Attention of `qTokens` queries over `kvTokens` keys (self- or cross-attention), with an
    /// optional additive bias per key (`bias[batch, kvTokens]`, e.g. 0 keep / -10000 discard):
    /// `out_h = softmax(q_h k_hᵀ · scale + bias) v_h` for each batch item and head.
    ///
    /// `q` is `[batch, qTokens, heads * headDim]` with row stride `qStride`; `k` and `v` are
    /// `[batch, kvTokens, heads * headDim]` with row stride `kvStride`; `out` is
    /// `[batch, qTokens, heads * headDim]`.
    public static func multiHead(q: UnsafePointer<Float>, qStride: Int, qTokens: Int,
                                 k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int, kvTokens: Int,
                                 batch: Int, heads: Int, headDim: Int, scale: Float, keyBias: UnsafePointer<Float>?,
                                 into out: UnsafeMutablePointer<Float>) {
        let d = heads * headDim
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(qTokens * kvTokens, 1))
        defer { scores.deallocate() }
        for n in 0..<batch {
            for h in 0..<heads {
                let qo = n * qTokens * qStride + h * headDim
                let ko = n * kvTokens * kvStride + h * headDim
                Gemm.multiply(q + qo, k + ko, scores, m: qTokens, n: kvTokens, k: headDim, transB: true,
                              alpha: scale, lda: qStride, ldb: kvStride)
                if let keyBias {
                    let b = keyBias + n * kvTokens
                    for r in 0..<qTokens {
                        let row = scores + r * kvTokens
                        for c in 0..<kvTokens { row[c] += b[c] }
                    }
                }
                Ops.softmaxRows(scores, rows: qTokens, cols: kvTokens)
                Gemm.multiply(scores, v + ko, out + n * qTokens * d + h * headDim, m: qTokens, n: headDim, k: kvTokens,
                              ldb: kvStride, ldc: d)
            }
        }
    }
}
