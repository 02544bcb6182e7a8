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
