// Scaled dot-product attention in bands of query rows, one head at a time: the scores of a band
// (`Attention.bandFloats` at most, a few MB) stay in the cache between the product that writes
// them, the softmax and the product that reads them, where a whole T×T matrix (85 MB for a
// 1024-px FLUX sequence) would go to memory and back three times. For long sequences the bands
// of all heads go to workers side by side instead, each product on one thread.
import CDiTKitKernels
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

public enum Attention {
    /// How `multiHead` shares the cores.
    public enum Scheduling: Sendable {
        /// `headsInParallel` when OpenBLAS has more than one thread and one head has at least
        /// `parallelScores` scores (FLUX's 4608 tokens: 2 × 10⁷); else `oneHeadAtATime`, which
        /// is as fast or faster for short sequences, whatever the batch (DiT-XL/2's 256 tokens,
        /// 16 heads: 8.4 against 9.8 ms a layer; 64 heads: 43 against 48 ms).
        case automatic
        /// One band after another, each product on all of OpenBLAS's threads.
        case oneHeadAtATime
        /// The bands of every head (and batch item) handed out to as many workers as OpenBLAS
        /// has threads, each running its products on one thread (`Gemm.oneThreadEach`) with a
        /// scores band of its own: no product waits for another thread's half, as in PyTorch's
        /// CPU attention, which splits the work over heads and blocks of queries the same way.
        case headsInParallel
    }

    /// The scheduling `multiHead` uses (benchmarks set it to compare the two; the values are the
    /// same either way, each output row being computed by one job).
    nonisolated(unsafe) public static var scheduling: Scheduling = .automatic

    /// Scores of one head (query × key tokens) from which `automatic` runs heads in parallel.
    public static let parallelScores = 1 << 22

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

    /// `multiHead` in bands of `band` query rows (tests choose narrow ones and the scheduling).
    static func multiHead(q: UnsafePointer<Float>, qStride: Int, qTokens: Int,
                          k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int, kvTokens: Int,
                          batch: Int, heads: Int, headDim: Int, scale: Float, keyBias: UnsafePointer<Float>?,
                          into out: UnsafeMutablePointer<Float>, band: Int, scheduling: Scheduling = Attention.scheduling) {
        let d = heads * headDim
        let band = max(band, 1)
        let bands = (qTokens + band - 1) / band
        let jobs = batch * heads * bands
        guard jobs > 0, kvTokens > 0 else { return }
        // One job: band `b` of head `h` of batch item `n`, its scores written to `scores`. The
        // bands of one head are consecutive jobs, so workers side by side read the same keys and values.
        func run(_ job: Int, _ scores: UnsafeMutablePointer<Float>, onAllCores: Bool) {
            let b = job % bands, h = (job / bands) % heads, n = job / (bands * heads)
            let first = b * band, rows = min(band, qTokens - first)
            let ko = n * kvTokens * kvStride + h * headDim
            let qo = (n * qTokens + first) * qStride + h * headDim
            Gemm.multiply(q + qo, k + ko, scores, m: rows, n: kvTokens, k: headDim, transB: true,
                          alpha: scale, lda: qStride, ldb: kvStride)
            if let keyBias {
                let bias = keyBias + n * kvTokens
                for r in 0..<rows {
                    let row = scores + r * kvTokens
                    for c in 0..<kvTokens { row[c] += bias[c] }
                }
            }
            if onAllCores { Ops.softmaxRows(scores, rows: rows, cols: kvTokens) } else { ditkit_softmax_rows(scores, rows, kvTokens) }
            Gemm.multiply(scores, v + ko, out + (n * qTokens + first) * d + h * headDim, m: rows, n: headDim, k: kvTokens,
                          ldb: kvStride, ldc: d)
        }
        let parallel: Bool
        switch scheduling {
        case .oneHeadAtATime: parallel = false
        case .headsInParallel: parallel = true
        case .automatic: parallel = jobs > 1 && qTokens * kvTokens >= parallelScores && Gemm.threads > 1
        }
        guard parallel else {
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: band * kvTokens)
            defer { scores.deallocate() }
            for job in 0..<jobs { run(job, scores, onAllCores: true) }
            return
        }
        Gemm.oneThreadEach { workers in
            let next = JobCounter()
            DispatchQueue.concurrentPerform(iterations: max(1, min(workers, jobs))) { _ in
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: band * kvTokens)
                defer { scores.deallocate() }
                while true {
                    let job = next.take()
                    guard job < jobs else { return }
                    run(job, scores, onAllCores: false)
                }
            }
        }
    }
}

/// Hands out 0, 1, 2, ... to the workers of `Attention.multiHead` (DiTKitCore's `AtomicCounter`
/// does the same, but DiTKitNumerics depends on no DiTKit module: only on BLAS and the C kernels).
private final class JobCounter: @unchecked Sendable {
    private var value = 0
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func take() -> Int {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        value += 1
        return value - 1
    }
}
