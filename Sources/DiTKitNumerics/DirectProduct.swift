// Few-row products straight from stored weights. A batch-1 modulation layer multiplies one row by
// a weight used once: widening that weight to float32 for BLAS costs a pass that writes four bytes
// per weight, where these kernels read the stored one or two bytes and multiply. Every few-row
// product goes through them, float32 weights included, and a product depends on the weights'
// float32 values only: a bfloat16 bundle and its bfloat16 source give the same bits whether a
// weight is read as stored or assembled and widened first.
import CDiTKitKernels
import Dispatch

/// `y[r, j] = Σ_c x[r, c] · W[j, c]` for a few rows of `x`, with `W` (`[n, k]`) as stored.
public enum DirectProduct {
    /// Most rows of `x` a direct product takes: beyond this, BLAS on the widened weight is faster.
    public static let maxRows = Int(DITKIT_DIRECT_MAX_ROWS)

    /// A stored weight the kernels read.
    public enum Weight {
        /// Symmetric per-row int8: `W[j, c] = q[j, c] × scales[j]`.
        case int8(UnsafePointer<Int8>, scales: UnsafePointer<Float>)
        /// IEEE float16 bits.
        case f16(UnsafePointer<UInt16>)
        /// bfloat16 bits.
        case bf16(UnsafePointer<UInt16>)
        /// float32.
        case f32(UnsafePointer<Float>)
    }

    /// Writes `y[r · ldy + j]` for `r < rows`, `j < n` (no bias). Work is split across `threads`
    /// by output columns; every output is computed the same way whatever the split (see
    /// `ditkit_direct_i8`), so results do not depend on the thread count.
    public static func multiply(_ x: UnsafePointer<Float>, rows: Int, inFeatures k: Int, weight: Weight, outFeatures n: Int,
                                into y: UnsafeMutablePointer<Float>, ldx: Int? = nil, ldy: Int? = nil,
                                threads: Int) {
        guard rows > 0, n > 0 else { return }
        let ldx = ldx ?? k, ldy = ldy ?? n
        // Parts of at least 256 K weights: below that a thread costs more than it saves.
        let parts = max(1, min(threads, n, n &* k / (1 << 18)))
        func run(_ first: Int, _ count: Int) {
            switch weight {
            case let .int8(q, scales):
                ditkit_direct_i8(q + first &* k, scales + first, count, k, x, ldx, rows, y + first, ldy)
            case .f16(let w):
                ditkit_direct_f16(w + first &* k, count, k, x, ldx, rows, y + first, ldy)
            case .bf16(let w):
                ditkit_direct_bf16(w + first &* k, count, k, x, ldx, rows, y + first, ldy)
            case .f32(let w):
                ditkit_direct_f32(w + first &* k, count, k, x, ldx, rows, y + first, ldy)
            }
        }
        if parts == 1 { run(0, n); return }
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let first = n &* p / parts, end = n &* (p &+ 1) / parts
            run(first, end - first)
        }
    }

    /// Like `multiply`, for weights the kernels cannot read as stored (block types): each thread
    /// widens its output rows `chunk` rows at a time into a small buffer of its own (`widen(first,
    /// count, into)` writes rows `first..<first + count` of `W` as float32) and multiplies them while
    /// they are in the cache. Gives the bits `multiply` gives on the whole widened weight.
    public static func multiplyWidening(_ x: UnsafePointer<Float>, rows: Int, inFeatures k: Int, outFeatures n: Int,
                                        into y: UnsafeMutablePointer<Float>, ldx: Int? = nil, ldy: Int? = nil, threads: Int,
                                        widen: (_ first: Int, _ count: Int, _ into: UnsafeMutablePointer<Float>) -> Void) {
        guard rows > 0, n > 0, k > 0 else { return }
        let ldx = ldx ?? k, ldy = ldy ?? n
        // 128 KB of float32 rows: they stay in the core's cache between the widening and the product.
        let chunk = max(1, min(n, (128 << 10) / (4 &* k)))
        let parts = max(1, min(threads, (n + chunk - 1) / chunk, n &* k / (1 << 18)))
        withoutActuallyEscaping(widen) { widen in
            DispatchQueue.concurrentPerform(iterations: parts) { p in
                let end = n &* (p &+ 1) / parts
                var first = n &* p / parts
                let buffer = UnsafeMutablePointer<Float>.allocate(capacity: chunk &* k)
                defer { buffer.deallocate() }
                while first < end {
                    let count = min(chunk, end - first)
                    widen(first, count, buffer)
                    ditkit_direct_f32(buffer, count, k, x, ldx, rows, y + first, ldy)
                    first += count
                }
            }
        }
    }
}
