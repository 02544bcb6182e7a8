// Elementwise and normalisation kernels, float32, on raw pointers. Matrix products go to BLAS.
//
// The module is compiled with Swift's checks on, like every other: index arithmetic inside the
// loops uses wrapping operators (`&+`, `&*`) on sizes the callers validated, so the inner loops
// carry no overflow checks (pointer subscripts carry no bounds checks either).
import Dispatch
import CDiTKitKernels
#if canImport(Glibc)
import Glibc
#endif

public enum Ops {
    /// `y[m, n] = sum_k x[m, k] * w[n, k] + b[n]`: a PyTorch `nn.Linear` with weight `[out, in]`.
    /// With a bias, as PyTorch's `addmm`: every row of `y` starts as the bias and the product is
    /// added to it (BLAS's beta = 1), one pass over `y` where zeroing it (what beta = 0 makes OpenBLAS
    /// do first) and adding the bias afterwards take two.
    public static func linear(_ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int, weight w: UnsafePointer<Float>,
                              bias: UnsafePointer<Float>?, outFeatures n: Int, into y: UnsafeMutablePointer<Float>, ldx: Int? = nil,
                              ldy: Int? = nil) {
        guard let bias, k > 0 else {
            Gemm.multiply(x, w, y, m: m, n: n, k: k, transB: true, lda: ldx ?? k, ldc: ldy ?? n)
            if let bias { addRowVector(y, rows: m, cols: n, bias, ld: ldy ?? n) }
            return
        }
        let ld = ldy ?? n
        for r in 0..<m { (y + r &* ld).update(from: bias, count: n) }
        Gemm.multiply(x, w, y, m: m, n: n, k: k, transB: true, beta: 1, lda: ldx ?? k, ldc: ld)
    }

    /// Adds `v[c]` to every row of `x[rows, cols]` (rows `ld` floats apart, `cols` by default).
    public static func addRowVector(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, _ v: UnsafePointer<Float>, ld: Int? = nil) {
        let stride = ld ?? cols
        for r in 0..<rows {
            let p = x + r &* stride
            for c in 0..<cols { p[c] += v[c] }
        }
    }

    /// `x[i] = x[i] * sigmoid(x[i])` (vectorised kernel, polynomial exp).
    public static func silu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        parallelChunks(count) { range in ditkit_silu(x + range.lowerBound, range.count) }
    }

    /// GELU with the tanh approximation (`nn.GELU(approximate="tanh")`), vectorised.
    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        parallelChunks(count) { range in ditkit_gelu_tanh(x + range.lowerBound, range.count) }
    }

    /// LayerNorm over the last dimension without affine parameters (biased variance).
    public static func layerNorm(_ x: UnsafePointer<Float>, rows: Int, dim: Int, eps: Float, into y: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let p = x + r &* dim, q = y + r &* dim
            var sum = 0.0
            for i in 0..<dim { sum += Double(p[i]) }
            let mean = sum / Double(dim)
            var sq = 0.0
            for i in 0..<dim { let d = Double(p[i]) - mean; sq += d * d }
            let inv = Float(1 / (sq / Double(dim) + Double(eps)).squareRoot())
            let m = Float(mean)
            for i in 0..<dim { q[i] = (p[i] - m) * inv }
        }
    }

    /// GroupNorm of `x[n, c, hw]` with per-channel affine `gamma`, `beta`.
    public static func groupNorm(_ x: UnsafePointer<Float>, batch: Int, channels: Int, spatial: Int, groups: Int, eps: Float,
                                 gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        let perGroup = channels / groups
        let jobs = batch * groups
        DispatchQueue.concurrentPerform(iterations: jobs) { job in
            let n = job / groups, g = job % groups
            let base = (n &* channels &+ g &* perGroup) &* spatial
            let count = perGroup &* spatial
            let mean = blockedSum(x + base, count) / Double(count)
            let sq = blockedSquaredDeviation(x + base, count, Float(mean))
            let inv = Float(1 / (sq / Double(count) + Double(eps)).squareRoot())
            let m = Float(mean)
            for c in 0..<perGroup {
                let ch = g &* perGroup &+ c
                let a = gamma[ch] * inv, b = beta[ch] - m * gamma[ch] * inv
                let xo = x + (base &+ c &* spatial), yo = y + (base &+ c &* spatial)
                for i in 0..<spatial { yo[i] = xo[i] * a + b }
            }
        }
    }

    /// Sum in float over blocks of 256, blocks folded in double (fast and accurate).
    @inline(__always)
    static func blockedSum(_ p: UnsafePointer<Float>, _ n: Int) -> Double {
        var total = 0.0
        var i = 0
        while i < n {
            let end = min(n, i &+ 256)
            var s: Float = 0
            for k in i..<end { s += p[k] }
            total += Double(s)
            i = end
        }
        return total
    }

    /// Sum of (x - mean)^2, blocked like `blockedSum`.
    @inline(__always)
    static func blockedSquaredDeviation(_ p: UnsafePointer<Float>, _ n: Int, _ mean: Float) -> Double {
        var total = 0.0
        var i = 0
        while i < n {
            let end = min(n, i &+ 256)
            var s: Float = 0
            for k in i..<end { let d = p[k] - mean; s += d * d }
            total += Double(s)
            i = end
        }
        return total
    }

    /// Softmax over each row of `x[rows, cols]`, in place.
    public static func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        parallelRows(rows, width: cols) { range in ditkit_softmax_rows(x + range.lowerBound &* cols, range.count, cols) }
    }

    /// RMSNorm over the last dimension, `y = x / sqrt(mean(x²) + eps) · weight` (diffusers'
    /// `RMSNorm`; no weight when `weight` is nil), the mean of squares in double (vectorised).
    public static func rmsNorm(_ x: UnsafePointer<Float>, rows: Int, dim: Int, eps: Double, weight: UnsafePointer<Float>?,
                               into y: UnsafeMutablePointer<Float>) {
        parallelRows(rows, width: dim) { range in
            ditkit_rms_norm_rows(x + range.lowerBound &* dim, range.count, dim, eps, weight, y + range.lowerBound &* dim)
        }
    }

    /// Online processors (at least 1).
    static let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// Runs `body` over row ranges on all cores when there are enough values to pay for it.
    static func parallelRows(_ rows: Int, width: Int, _ body: (Range<Int>) -> Void) {
        let parts = rows &* width < 65536 ? 1 : min(rows, 2 &* Ops.cores)
        if parts <= 1 { body(0..<rows); return }
        withoutActuallyEscaping(body) { b in
            DispatchQueue.concurrentPerform(iterations: parts) { k in
                b((rows &* k / parts)..<(rows &* (k &+ 1) / parts))
            }
        }
    }

    /// `x = x * (1 + scale[c]) + shift[c]` over rows of `x[rows, dim]` (DiT's `modulate`).
    public static func modulate(_ x: UnsafeMutablePointer<Float>, rows: Int, dim: Int, shift: UnsafePointer<Float>, scale: UnsafePointer<Float>) {
        for r in 0..<rows {
            let p = x + r &* dim
            for i in 0..<dim { p[i] = p[i] * (1 + scale[i]) + shift[i] }
        }
    }

    /// `x += gate[c] * y` over rows (DiT's gated residual).
    public static func gatedAdd(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, rows: Int, dim: Int, gate: UnsafePointer<Float>) {
        for r in 0..<rows {
            let p = x + r &* dim, q = y + r &* dim
            for i in 0..<dim { p[i] += gate[i] * q[i] }
        }
    }

    /// `x += y`.
    public static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
        parallelChunks(count) { range in for i in range { x[i] += y[i] } }
    }

    /// Nearest-neighbour ×2 upsampling of `x[planes, h, w]` into `y[planes, 2h, 2w]`.
    public static func upsampleNearest2x(_ x: UnsafePointer<Float>, planes: Int, height h: Int, width w: Int, into y: UnsafeMutablePointer<Float>) {
        DispatchQueue.concurrentPerform(iterations: planes) { p in
            let src = x + p &* h &* w, dst = y + p &* 4 &* h &* w
            for r in 0..<h {
                let row = dst + 4 &* r &* w, line = src + r &* w
                for c in 0..<w { let v = line[c]; row[2 &* c] = v; row[2 &* c &+ 1] = v }
                (row + 2 &* w).update(from: row, count: 2 &* w)
            }
        }
    }

    /// Runs `body` over `0..<count` split into a few contiguous ranges on all cores.
    public static func parallelChunks(_ count: Int, _ body: (Range<Int>) -> Void) {
        let parts = count < 65536 ? 1 : 8
        if parts == 1 { body(0..<count); return }
        withoutActuallyEscaping(body) { b in
            DispatchQueue.concurrentPerform(iterations: parts) { k in
                b((count &* k / parts)..<(count &* (k &+ 1) / parts))
            }
        }
    }
}
