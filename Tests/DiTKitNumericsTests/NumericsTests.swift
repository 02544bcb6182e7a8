// Every kernel against a direct (naive, obviously correct) computation or hand-checked values.
import Testing
@testable import DiTKitNumerics
import CDiTKitKernels
import CDiTKitSupport
import Foundation

func randomValues(_ n: Int, seed: UInt64) -> [Float] {
    var s = seed
    return (0..<n).map { _ in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: s >> 11) % 2000) / 1000 - 1
    }
}

func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

@Suite struct NumericsTests {
    @Test func activationsMatchHandCheckedValues() {
        var x: [Float] = [-2, -1, 0, 1, 2]
        Ops.silu(&x, count: 5)
        // x * sigmoid(x)
        let silu: [Float] = [-0.23840584, -0.26894142, 0, 0.7310586, 1.7615942]
        #expect(maxDifference(x, silu) < 1e-6)
        var g: [Float] = [-2, -1, 0, 1, 2]
        Ops.geluTanh(&g, count: 5)
        // torch.nn.GELU(approximate="tanh")
        let gelu: [Float] = [-0.04540230, -0.15880801, 0, 0.84119199, 1.95459769]
        #expect(maxDifference(g, gelu) < 1e-6)
    }

    @Test func softmaxAndLayerNorm() {
        var s: [Float] = [1, 2, 3, 0, 0, 0]
        Ops.softmaxRows(&s, rows: 2, cols: 3)
        #expect(maxDifference(s, [0.09003057, 0.24472847, 0.66524096, 1.0 / 3, 1.0 / 3, 1.0 / 3]) < 1e-6)
        let x: [Float] = [1, 2, 3, 4]
        var y = [Float](repeating: 0, count: 4)
        Ops.layerNorm(x, rows: 1, dim: 4, eps: 1e-6, into: &y)
        // mean 2.5, biased variance 1.25
        let inv = 1 / (1.25 + 1e-6).squareRoot()
        #expect(maxDifference(y, [-1.5, -0.5, 0.5, 1.5].map { Float($0 * inv) }) < 1e-6)
    }

    /// The vectorised softmax and RMSNorm against double-precision definitions on wide rows (an
    /// attention row of FLUX at 1024 px has 4608 values), and the vector and portable paths
    /// against each other bit for bit; rows run on several threads.
    @Test func softmaxAndRMSNormOnWideRows() {
        let rows = 40, cols = 4608 + 5
        let x = randomValues(rows * cols, seed: 11).map { $0 * 12 }
        var vector = x, portable = x
        Ops.softmaxRows(&vector, rows: rows, cols: cols)
        ditkit_kernels_force_portable(1)
        Ops.softmaxRows(&portable, rows: rows, cols: cols)
        ditkit_kernels_force_portable(0)
        #expect(vector == portable)
        for r in 0..<rows {
            let row = x[(r * cols)..<((r + 1) * cols)].map(Double.init)
            let m = row.max()!
            let e = row.map { Foundation.exp($0 - m) }
            let sum = e.reduce(0, +)
            for c in 0..<cols { #expect(abs(Double(vector[r * cols + c]) - e[c] / sum) <= 2e-6 * (e[c] / sum) + 1e-12) }
        }
        let w = randomValues(cols, seed: 12)
        var y = [Float](repeating: 0, count: rows * cols), yp = y
        Ops.rmsNorm(x, rows: rows, dim: cols, eps: 1e-6, weight: w, into: &y)
        ditkit_kernels_force_portable(1)
        Ops.rmsNorm(x, rows: rows, dim: cols, eps: 1e-6, weight: w, into: &yp)
        ditkit_kernels_force_portable(0)
        #expect(y == yp)
        for r in 0..<rows {
            let row = x[(r * cols)..<((r + 1) * cols)].map(Double.init)
            let inv = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(cols) + 1e-6).squareRoot()
            for c in 0..<cols { #expect(abs(Double(y[r * cols + c]) - row[c] * inv * Double(w[c])) <= 1e-6 * abs(row[c] * inv) + 1e-7) }
        }
    }

    @Test func groupNormMatchesDefinition() {
        let n = 2, c = 4, hw = 6, groups = 2
        let x = randomValues(n * c * hw, seed: 1)
        let gamma: [Float] = [1, 2, 0.5, -1], beta: [Float] = [0, 0.1, -0.2, 0.3]
        var y = [Float](repeating: 0, count: x.count)
        Ops.groupNorm(x, batch: n, channels: c, spatial: hw, groups: groups, eps: 1e-6, gamma: gamma, beta: beta, into: &y)
        for b in 0..<n { for g in 0..<groups {
            let idx = (0..<(c / groups * hw)).map { (b * c + g * 2) * hw + $0 }
            let vals = idx.map { Double(x[$0]) }
            let mean = vals.reduce(0, +) / Double(vals.count)
            let v = vals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(vals.count)
            for i in idx {
                let ch = (i / hw) % c
                let want = Float((Double(x[i]) - mean) / (v + 1e-6).squareRoot()) * gamma[ch] + beta[ch]
                #expect(abs(y[i] - want) < 1e-5)
            }
        } }
    }

    func naiveConv(_ x: [Float], n: Int, cin: Int, h: Int, w: Int, weight: [Float], cout: Int, k: Int, bias: [Float], stride: Int, pad: Padding) -> [Float] {
        let oh = (h + pad.top + pad.bottom - k) / stride + 1, ow = (w + pad.left + pad.right - k) / stride + 1
        var y = [Float](repeating: 0, count: n * cout * oh * ow)
        for b in 0..<n { for co in 0..<cout { for oy in 0..<oh { for ox in 0..<ow {
            var s = Double(bias[co])
            for ci in 0..<cin { for ky in 0..<k { for kx in 0..<k {
                let iy = oy * stride - pad.top + ky, ix = ox * stride - pad.left + kx
                if iy >= 0 && iy < h && ix >= 0 && ix < w {
                    s += Double(weight[((co * cin + ci) * k + ky) * k + kx]) * Double(x[((b * cin + ci) * h + iy) * w + ix])
                }
            } } }
            y[((b * cout + co) * oh + oy) * ow + ox] = Float(s)
        } } } }
        return y
    }

    @Test(arguments: [(3, 1, Padding.same(1)), (3, 2, Padding(top: 0, left: 0, bottom: 1, right: 1)), (1, 1, Padding.same(0)), (2, 2, Padding.same(0))])
    func convolutionMatchesDirectSum(_ k: Int, _ stride: Int, _ pad: Padding) {
        let n = 2, cin = 3, h = 7, w = 6, cout = 5
        let x = randomValues(n * cin * h * w, seed: 2), weight = randomValues(cout * cin * k * k, seed: 3), bias = randomValues(cout, seed: 4)
        let oh = (h + pad.top + pad.bottom - k) / stride + 1, ow = (w + pad.left + pad.right - k) / stride + 1
        var y = [Float](repeating: 0, count: n * cout * oh * ow)
        Convolution.conv2d(x, batch: n, channels: cin, height: h, width: w, weight: weight, outChannels: cout, kernel: k, k,
                           bias: bias, stride: stride, padding: pad, into: &y)
        #expect(maxDifference(y, naiveConv(x, n: n, cin: cin, h: h, w: w, weight: weight, cout: cout, k: k, bias: bias, stride: stride, pad: pad)) < 1e-5)
    }

    @Test func convolutionInRowBlocksMatchesOneBlock() {
        // Wide enough that the column buffer is split into several row blocks.
        let cin = 64, h = 96, w = 96, cout = 8
        let x = randomValues(cin * h * w, seed: 5), weight = randomValues(cout * cin * 9, seed: 6), bias = [Float](repeating: 0, count: cout)
        var y = [Float](repeating: 0, count: cout * h * w)
        Convolution.conv2d(x, batch: 1, channels: cin, height: h, width: w, weight: weight, outChannels: cout, kernel: 3, 3,
                           bias: bias, stride: 1, padding: .same(1), into: &y)
        #expect(Convolution.columnBudget < cin * 9 * h * w)
        #expect(maxDifference(y, naiveConv(x, n: 1, cin: cin, h: h, w: w, weight: weight, cout: cout, k: 3, bias: bias, stride: 1, pad: .same(1))) < 1e-4)
    }

    @Test func attentionMatchesDefinition() {
        let batch = 2, tokens = 5, heads = 3, hd = 4, d = heads * hd
        let qkv = randomValues(batch * tokens * 3 * d, seed: 7)
        var out = [Float](repeating: 0, count: batch * tokens * d)
        qkv.withUnsafeBufferPointer { q in
            Attention.multiHead(q: q.baseAddress!, k: q.baseAddress! + d, v: q.baseAddress! + 2 * d, rowStride: 3 * d, batch: batch,
                                tokens: tokens, heads: heads, headDim: hd, scale: 0.5, into: &out)
        }
        for b in 0..<batch { for h in 0..<heads { for i in 0..<tokens {
            var scores = (0..<tokens).map { j -> Double in
                (0..<hd).reduce(0.0) { $0 + Double(qkv[(b * tokens + i) * 3 * d + h * hd + $1]) * Double(qkv[(b * tokens + j) * 3 * d + d + h * hd + $1]) } * 0.5
            }
            let m = scores.max()!
            scores = scores.map { exp($0 - m) }
            let s = scores.reduce(0, +)
            for e in 0..<hd {
                let want = (0..<tokens).reduce(0.0) { $0 + scores[$1] / s * Double(qkv[(b * tokens + $1) * 3 * d + 2 * d + h * hd + e]) }
                #expect(abs(Double(out[(b * tokens + i) * d + h * hd + e]) - want) < 1e-5)
            }
        } } }
    }

    /// Bands of query rows (a long sequence's scores split to stay in the cache) give the values of
    /// one band, with a key bias and different query and key lengths, for uneven and single-row bands.
    @Test func attentionInBandsMatchesOneBand() {
        let batch = 2, qTokens = 37, kvTokens = 23, heads = 3, hd = 5, d = heads * hd
        let q = randomValues(batch * qTokens * d, seed: 11), k = randomValues(batch * kvTokens * d, seed: 12)
        let v = randomValues(batch * kvTokens * d, seed: 13)
        let bias = (0..<(batch * kvTokens)).map { $0 % 7 == 3 ? Float(-10000) : Float($0 % 3) * 0.25 }
        func run(band: Int, _ scheduling: Attention.Scheduling = .oneHeadAtATime) -> [Float] {
            var out = [Float](repeating: 0, count: batch * qTokens * d)
            Attention.multiHead(q: q, qStride: d, qTokens: qTokens, k: k, v: v, kvStride: d, kvTokens: kvTokens, batch: batch,
                                heads: heads, headDim: hd, scale: 0.4, keyBias: bias, into: &out, band: band, scheduling: scheduling)
            return out
        }
        let whole = run(band: qTokens)
        for band in [1, 5, 36] { #expect(maxDifference(run(band: band), whole) < 1e-6) }
        // Bands handed out to workers side by side fill every row, with the same values.
        for band in [1, 5, 36, qTokens] { #expect(maxDifference(run(band: band, .headsInParallel), whole) < 1e-6) }
        // The row in each band: the budget decides, never fewer than the least.
        #expect(Attention.bandRows(qTokens: 4608, kvTokens: 4608) == 220)
        #expect(Attention.bandRows(qTokens: 256, kvTokens: 256) == 256)
        #expect(Attention.bandRows(qTokens: 100, kvTokens: 50, budget: 1000, least: 8) == 20)
        #expect(Attention.bandRows(qTokens: 100, kvTokens: 500, budget: 1000, least: 8) == 8)
    }

    /// Inside a one-thread section OpenBLAS runs on one thread, and a nested (or overlapping)
    /// section is told the same worker count as the outer one: the count OpenBLAS had outside.
    @Test func oneThreadSectionsNest() {
        Gemm.oneThreadEach { outer in
            #expect(outer >= 1)
            #expect(Gemm.threads == 1)
            Gemm.oneThreadEach { inner in
                #expect(inner == outer)
                #expect(Gemm.threads == 1)
            }
            #expect(Gemm.threads == 1)
        }
    }

    @Test func nearestUpsampling() {
        let x: [Float] = [1, 2, 3, 4]
        var y = [Float](repeating: 0, count: 16)
        Ops.upsampleNearest2x(x, planes: 1, height: 2, width: 2, into: &y)
        #expect(y == [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
    }

    @Test func gemmTransposes() {
        // [[1,2],[3,4]] x [[5,6],[7,8]]^T = [[17,23],[39,53]]
        let a: [Float] = [1, 2, 3, 4], b: [Float] = [5, 6, 7, 8]
        var c = [Float](repeating: 0, count: 4)
        Gemm.multiply(a, b, &c, m: 2, n: 2, k: 2, transB: true)
        #expect(c == [17, 23, 39, 53])
    }

    /// `Ops.linear` writing one block of columns of a wider output (as `Layers.linear` does for a
    /// weight read a block of rows at a time), with and without a bias, one row (sgemv) and many:
    /// the block equals `x Wᵀ + b` computed in double, and the columns outside it keep their values.
    @Test func linearIntoAColumnBlockMatchesTheDefinition() {
        let k = 45, n = 23, ldx = k + 4, ldy = 61, first = 17
        let w = randomValues(n * k, seed: 11), bias = randomValues(n, seed: 12)
        for m in [1, 9] {
            let x = randomValues(m * ldx, seed: 13)
            for withBias in [true, false] {
                var y = [Float](repeating: 7, count: m * ldy)
                x.withUnsafeBufferPointer { xp in
                    w.withUnsafeBufferPointer { wp in
                        bias.withUnsafeBufferPointer { bp in
                            y.withUnsafeMutableBufferPointer { yp in
                                Ops.linear(xp.baseAddress!, rows: m, inFeatures: k, weight: wp.baseAddress!, bias: withBias ? bp.baseAddress! : nil,
                                           outFeatures: n, into: yp.baseAddress! + first, ldx: ldx, ldy: ldy)
                            }
                        }
                    }
                }
                for r in 0..<m {
                    for c in 0..<ldy {
                        let got = y[r * ldy + c]
                        guard c >= first, c < first + n else {
                            #expect(got == 7, "row \(r) column \(c) outside the block was overwritten")
                            continue
                        }
                        var s = withBias ? Double(bias[c - first]) : 0
                        for i in 0..<k { s += Double(x[r * ldx + i]) * Double(w[(c - first) * k + i]) }
                        #expect(abs(Double(got) - s) < 1e-5, "m \(m) bias \(withBias) row \(r) column \(c)")
                    }
                }
            }
        }
    }

    /// A single row goes through sgemv: with and without transposed B, alpha, beta and strides,
    /// it equals the naive product (and the first row of a two-row sgemm).
    @Test func oneRowProductsMatchTheDefinition() {
        let k = 37, n = 29, ldb = 41
        let a = randomValues(2 * k, seed: 3)
        let bt = randomValues(n * ldb, seed: 4)    // [N, K] with row stride ldb
        let bn = randomValues(k * ldb, seed: 5)    // [K, N] with row stride ldb
        for transB in [true, false] {
            let b = transB ? bt : bn
            var want = [Float](repeating: 0, count: n)
            for j in 0..<n {
                var s = 0.0
                for i in 0..<k { s += Double(a[i]) * Double(transB ? b[j * ldb + i] : b[i * ldb + j]) }
                want[j] = Float(0.5 * s + 2 * 0.25)
            }
            var c = [Float](repeating: 0.25, count: n)
            Gemm.multiply(a, b, &c, m: 1, n: n, k: k, transB: transB, alpha: 0.5, beta: 2, ldb: ldb)
            #expect(maxDifference(c, want) < 1e-5, "transB \(transB)")
            var two = [Float](repeating: 0.25, count: 2 * n)
            Gemm.multiply(a, b, &two, m: 2, n: n, k: k, transB: transB, alpha: 0.5, beta: 2, ldb: ldb)
            #expect(maxDifference(Array(two[0..<n]), c) < 1e-5)
        }
    }

    /// Few-row products on int8 (per-row scale), float16 and bfloat16 weights against the same
    /// weights widened and multiplied in double, and bit for bit against the float32 kernel on the
    /// widened values (a product depends on the values only, not on their storage); the vector and
    /// portable paths bit for bit; more rows than one pass takes, a ragged last column group and
    /// strided x and y.
    @Test func directProductsMatchTheWidenedWeights() {
        let n = 37, k = 16 * 9 + 5, ldx = k + 3, ldy = n + 2
        let w = randomValues(n * k, seed: 21)
        let q = (0..<(n * k)).map { Int8(clamping: Int((w[$0] * 127).rounded())) }
        let scales = (0..<n).map { Float($0 + 1) / 64 }
        let f16 = w.map { Float16($0).bitPattern }
        let bf16 = w.map { UInt16($0.bitPattern >> 16) }
        let widened: [(String, [Float])] = [
            ("int8", (0..<(n * k)).map { Float(q[$0]) * scales[$0 / k] }),
            ("f16", f16.map { Float(Float16(bitPattern: $0)) }),
            ("bf16", bf16.map { Float(bitPattern: UInt32($0) << 16) }),
        ]
        for rows in [1, 2, 4, DirectProduct.maxRows, DirectProduct.maxRows + 3] {
            let x = randomValues(rows * ldx, seed: UInt64(30 + rows))
            for (kind, wide) in widened {
                func product(threads: Int, widened: Bool = false) -> [Float] {
                    var y = [Float](repeating: -7, count: rows * ldy)
                    x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            q.withUnsafeBufferPointer { qp in
                                scales.withUnsafeBufferPointer { sp in
                                    (kind == "f16" ? f16 : bf16).withUnsafeBufferPointer { hp in
                                        wide.withUnsafeBufferPointer { wp in
                                        let weight: DirectProduct.Weight = widened ? .f32(wp.baseAddress!)
                                            : kind == "int8" ? .int8(qp.baseAddress!, scales: sp.baseAddress!)
                                            : kind == "f16" ? .f16(hp.baseAddress!) : .bf16(hp.baseAddress!)
                                        DirectProduct.multiply(xp.baseAddress!, rows: rows, inFeatures: k, weight: weight, outFeatures: n,
                                                               into: yp.baseAddress!, ldx: ldx, ldy: ldy, threads: threads)
                                        }
                                    }
                                }
                            }
                        }
                    }
                    return y
                }
                let y = product(threads: 1)
                #expect(product(threads: 1, widened: true) == y, "\(kind), \(rows) rows: float32 of the same values")
                ditkit_kernels_force_portable(1)
                let portable = product(threads: 1)
                ditkit_kernels_force_portable(0)
                #expect(portable == y, "\(kind), \(rows) rows: portable path")
                for r in 0..<rows {
                    for j in 0..<n {
                        let exact = (0..<k).reduce(0.0) { $0 + Double(x[r * ldx + $1]) * Double(wide[j * k + $1]) }
                        let magnitude = (0..<k).reduce(0.0) { $0 + abs(Double(x[r * ldx + $1]) * Double(wide[j * k + $1])) }
                        #expect(abs(Double(y[r * ldy + j]) - exact) <= 1e-6 * magnitude + 1e-9, "\(kind) [\(r), \(j)]")
                    }
                    // Padding between rows of y stays untouched.
                    #expect(y[r * ldy + n] == -7 && y[r * ldy + n + 1] == -7)
                }
            }
        }
    }

    /// A product large enough to be split across threads gives the bits it gives on one, and so
    /// does one widened by the caller a few rows at a time.
    @Test func directProductsDoNotDependOnTheThreadCount() {
        let n = 2048, k = 512, rows = 3
        let w = randomValues(n * k, seed: 41).map { Float16($0).bitPattern }
        let x = randomValues(rows * k, seed: 42)
        func product(threads: Int) -> [Float] {
            var y = [Float](repeating: 0, count: rows * n)
            w.withUnsafeBufferPointer { wp in
                DirectProduct.multiply(x, rows: rows, inFeatures: k, weight: .f16(wp.baseAddress!), outFeatures: n, into: &y, threads: threads)
            }
            return y
        }
        let one = product(threads: 1)
        #expect(one.contains { $0 != 0 })
        #expect(product(threads: 3) == one)
        #expect(product(threads: 2) == one)
        // Widened a few rows at a time by the caller (block types), in chunks and on threads: the same bits.
        for threads in [1, 2, 3] {
            var y = [Float](repeating: 0, count: rows * n)
            DirectProduct.multiplyWidening(x, rows: rows, inFeatures: k, outFeatures: n, into: &y, threads: threads) { first, count, buffer in
                for i in 0..<(count * k) { buffer[i] = Float(Float16(bitPattern: w[first * k + i])) }
            }
            #expect(y == one, "widened on \(threads) threads")
        }
    }
}

// After ForwardMemory.keepFreedBuffers, a 48 MiB buffer (above the largest mmap threshold glibc
// picks by itself, 32 MiB) comes from the allocator's heap, not from a mapping of its own. Tried
// three times: a large buffer another test maps at the same moment could hide one.
@Test func forwardBuffersComeFromTheHeap() {
    ForwardMemory.keepFreedBuffers()
    let size = 48 << 20
    let grew = (0..<3).map { _ -> Int in
        let before = ditkit_malloc_mapped_bytes()
        let p = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        let after = ditkit_malloc_mapped_bytes()
        p.deallocate()
        return after >= before ? after - before : 0
    }
    #expect(grew.min()! < size, "mapped bytes grew by \(grew)")
}
