// Scaled dot-product attention, one head and one band of query rows at a time: the scores of a
// band (`Attention.bandFloats` at most, a few MB) stay in the cache between the product that
// writes them, the softmax and the product that reads them, where a whole T×T matrix (85 MB
// for a 1024-px FLUX sequence) would go to memory and back three times.

public enum Attention {
    /// Scores per band of query rows, at most (4 MiB of float32), unless one row is longer.
    public static let bandFloats = 1 << 20

    /// Query rows per band for `kvTokens` keys: all of them when they fit in `bandFloats` scores,
    /// else equal bands of at least 64 rows (narrower products lose more to packing the keys).
    static func bandRows(qTokens: Int, kvTokens: Int, budget: Int = bandFloats, least: Int = 64) -> Int {
        guard qTokens > 0, kvTokens > 0, qTokens * kvTokens > budget else { return max(qTokens, 1) }
        let most = max(least, budget / kvTokens)
        let bands = (qTokens + most - 1) / most
        return (qTokens + bands - 1) / bands
    }

    /// For each batch item and head: `out_h = softmax(q_h k_hᵀ · scale) v_h`.
    ///
    /// `q`, `k`, `v` are `[batch, tokens, heads * headDim]` views with row stride `rowStride`
    /// (3·D when they are the thirds of a fused qkv output); `out` is `[batch, tokens, heads * headDim]`.
    public static func multiHead(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, rowStride: Int,
                                 batch: Int, tokens: Int, heads: Int, headDim: Int, scale: Float,
                                 into out: UnsafeMutablePointer<Float>) {
        multiHead(q: q, qStride: rowStride, qTokens: tokens, k: k, v: v, kvStride: rowStride, kvTokens: tokens,
                  batch: batch, heads: heads, headDim: headDim, scale: scale, keyBias: nil, into: out)
    }

    /// Attention of `qTokens` queries over `kvTokens` keys (self- or cross-attention), with an
    /// optional additive bias per key (`bias[batch, kvTokens]`, e.g. 0 keep / -10000 discard):
    /// `out_h = softmax(q_h k_hᵀ · scale + bias) v_h` for each batch item and head.
    ///
    /// `q` is `[batch, qTokens, heads * headDim]` with row stride `qStride`; `k` and `v` are
    /// `[batch, kvTokens, heads * headDim]` with row stride `kvStride`; `out` is
    /// `[batch, qTokens, heads * headDim]`. Each output row depends on its own query row only, so
    /// the bands give the values a single product would.
    public static func multiHead(q: UnsafePointer<Float>, qStride: Int, qTokens: Int,
                                 k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int, kvTokens: Int,
                                 batch: Int, heads: Int, headDim: Int, scale: Float, keyBias: UnsafePointer<Float>?,
                                 into out: UnsafeMutablePointer<Float>) {
        multiHead(q: q, qStride: qStride, qTokens: qTokens, k: k, v: v, kvStride: kvStride, kvTokens: kvTokens, batch: batch,
                  heads: heads, headDim: headDim, scale: scale, keyBias: keyBias, into: out,
                  band: bandRows(qTokens: qTokens, kvTokens: kvTokens))
    }

    /// `multiHead` in bands of `band` query rows (tests choose narrow ones).
    static func multiHead(q: UnsafePointer<Float>, qStride: Int, qTokens: Int,
                          k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int, kvTokens: Int,
                          batch: Int, heads: Int, headDim: Int, scale: Float, keyBias: UnsafePointer<Float>?,
                          into out: UnsafeMutablePointer<Float>, band: Int) {
        let d = heads * headDim
        let band = max(band, 1)
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(band * kvTokens, 1))
        defer { scores.deallocate() }
        for n in 0..<batch {
            for h in 0..<heads {
                let ko = n * kvTokens * kvStride + h * headDim
                var first = 0
                while first < qTokens {
                    let rows = min(band, qTokens - first)
                    let qo = (n * qTokens + first) * qStride + h * headDim
                    Gemm.multiply(q + qo, k + ko, scores, m: rows, n: kvTokens, k: headDim, transB: true,
                                  alpha: scale, lda: qStride, ldb: kvStride)
                    if let keyBias {
                        let b = keyBias + n * kvTokens
                        for r in 0..<rows {
                            let row = scores + r * kvTokens
                            for c in 0..<kvTokens { row[c] += b[c] }
                        }
                    }
                    Ops.softmaxRows(scores, rows: rows, cols: kvTokens)
                    Gemm.multiply(scores, v + ko, out + (n * qTokens + first) * d + h * headDim, m: rows, n: headDim, k: kvTokens,
                                  ldb: kvStride, ldc: d)
                    first += rows
                }
            }
        }
    }
}
