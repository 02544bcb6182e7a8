// The vector and portable conversion kernels must agree bit for bit, values and statistics.
import Testing
import DiTKitCore

@Suite(.serialized) struct KernelTests {
    func values(_ n: Int) -> [Float] {
        var rng = SeededRandom(seed: 42)
        var v = rng.normals(n).map { $0 * 3 }
        // Edge cases: ties, overflow, subnormals, zeros, NaN-free extremes.
        v[0] = 65520; v[1] = -1e6; v[2] = 65504; v[3] = 0x1p-25; v[4] = 3 * 0x1p-26; v[5] = 0; v[6] = -0.0
        v[7] = 1 + 0x1p-11; v[8] = 1 + 3 * 0x1p-11; v[9] = 1 + 0x1p-8; v[10] = 6e-8; v[11] = .greatestFiniteMagnitude
        return v
    }

    func run(_ portable: Bool, _ src: [Float]) -> ([UInt16], NarrowingStats, [UInt16], NarrowingStats, [Int8], [Float], NarrowingStats) {
        Narrow.forcePortable(portable)
        defer { Narrow.forcePortable(false) }
        var h = [UInt16](repeating: 0, count: src.count), b = h
        var sh = NarrowingStats.zero, sb = NarrowingStats.zero, sq = NarrowingStats.zero
        Narrow.f16(src, &h, count: src.count, stats: &sh)
        Narrow.bf16(src, &b, count: src.count, stats: &sb)
        let rows = 7, cols = src.count / rows
        var q = [Int8](repeating: 0, count: rows * cols)
        var scales = [Float](repeating: 0, count: rows)
        src.withUnsafeBufferPointer { s in
            q.withUnsafeMutableBufferPointer { qp in
                for r in 0..<rows { scales[r] = Narrow.int8Row(s.baseAddress! + r * cols, qp.baseAddress! + r * cols, count: cols, stats: &sq) }
            }
        }
        return (h, sh, b, sb, q, scales, sq)
    }

    @Test func vectorAndPortablePathsAgreeBitForBit() {
        let src = values(7 * 1531)   // not a multiple of 8 or of the 1024-element block
        let v = run(false, src), p = run(true, src)
        #expect(v.0 == p.0)
        #expect(v.2 == p.2)
        #expect(v.4 == p.4)
        #expect(v.5 == p.5)
        for (a, b) in [(v.1, p.1), (v.3, p.3), (v.6, p.6)] {
            #expect(a.sum_sq_err == b.sum_sq_err && a.sum_sq_src == b.sum_sq_src && a.max_abs == b.max_abs)
            #expect(a.overflow == b.overflow && a.flushed == b.flushed)
        }
        // Values agree with Swift's own float16 rounding and torch's bfloat16 rule.
        for (i, x) in src.enumerated() {
            #expect(v.0[i] == Float16(x).bitPattern, "f16 of \(x)")
            #expect(v.2[i] == HalfPrecision.bf16Bits(x), "bf16 of \(x)")
        }
        #expect(v.1.overflow == 3)      // 65520, -1e6 and greatestFiniteMagnitude overflow float16
        #expect(v.3.overflow == 1)      // bfloat16 rounds float32 max up to infinity, as torch does
    }

    @Test func nonFiniteSourcesAreCountedAndLeftOutOfTheFigures() {
        var src = values(7 * 1531)
        let finite = src
        for (k, i) in [100, 2048, 3000, 5001, 9000].enumerated() { src[i] = [Float.nan, .infinity, -.infinity, -.nan, .nan][k] }
        let v = run(false, src), p = run(true, src)
        for (a, b) in [(v.1, p.1), (v.3, p.3)] {
            #expect(a.sum_sq_err == b.sum_sq_err && a.sum_sq_src == b.sum_sq_src && a.max_abs == b.max_abs)
            #expect(a.sum_sq_err.isFinite && a.sum_sq_src.isFinite && a.max_abs.isFinite)
            #expect(a.overflow == b.overflow && a.flushed == b.flushed)
            #expect(a.nonfinite == 5 && b.nonfinite == 5)
        }
        // Same overflow count as without them (none of them is counted as an overflow).
        #expect(v.1.overflow == run(false, finite).1.overflow)
        src.withUnsafeBytes { #expect(NonFinite.count($0.baseAddress!, dtype: .f32, count: src.count) == 5) }
        let half = src.map { Float16($0).bitPattern }, brain = src.map { HalfPrecision.bf16Bits($0) }, double = src.map { Double($0) }
        half.withUnsafeBytes { #expect(NonFinite.count($0.baseAddress!, dtype: .f16, count: half.count) == 5 + 3) }   // + 3 overflows
        brain.withUnsafeBytes { #expect(NonFinite.count($0.baseAddress!, dtype: .bf16, count: brain.count) == 5 + 1) }
        double.withUnsafeBytes { #expect(NonFinite.count($0.baseAddress! + 1, dtype: .f64, count: 0) == 0) }
        double.withUnsafeBytes { #expect(NonFinite.count($0.baseAddress!, dtype: .f64, count: double.count) == 5) }
    }

    /// Values at the edges of what the vector path's short loop takes (a block of finite values
    /// that neither overflow nor flush to zero), each alone in a block of ordinary values: the
    /// values, figures and counts must be those of the portable path and of Swift's own rounding.
    @Test func blocksWithOneValueAtAnEdgeAgreeWithThePortablePath() {
        let f16Edges: [Float] = [65503.99, 65504, 65519.996, 65520, 65536, 0x1p-24, Float(0x1p-24).nextDown, 0x1p-25, Float(0x1p-25).nextUp,
                                 0x1p-26, 0x1p-14, Float(0x1p-14).nextDown, .leastNonzeroMagnitude, .leastNormalMagnitude, 0, -0.0]
        let bf16Edges: [Float] = [0x7F7F_7FFF, 0x7F7F_8000, 0x7F7E_FFFF, 0x7F7F_0000, 0x7F7F_FFFF, 0x8000, 0x8001, 0xFFFF, 0x1_0000, 0x7FFF, 1]
            .map { Float(bitPattern: $0) }
        let specials: [Float] = [.nan, .infinity, .signalingNaN]
        let edges = f16Edges + bf16Edges + specials
        var rng = SeededRandom(seed: 7)
        var src = rng.normals(1024 * (2 * edges.count + 1) + 5).map { $0 * 0.02 }
        for (k, x) in edges.enumerated() {
            src[1024 * (2 * k) + 517] = x
            src[1024 * (2 * k + 1) + 3] = -x
        }
        let v = run(false, src), p = run(true, src)
        #expect(v.0 == p.0)
        #expect(v.2 == p.2)
        for (a, b) in [(v.1, p.1), (v.3, p.3)] {
            #expect(a.sum_sq_err == b.sum_sq_err && a.sum_sq_src == b.sum_sq_src && a.max_abs == b.max_abs)
            #expect(a.overflow == b.overflow && a.flushed == b.flushed && a.nonfinite == b.nonfinite)
        }
        // The counts as Swift's own float16 rounding and torch's bfloat16 rule give them.
        let finite = src.filter { $0.isFinite }
        #expect(v.1.overflow == UInt64(finite.count { Float16($0).isInfinite }))
        #expect(v.1.flushed == UInt64(finite.count { $0 != 0 && Float16($0) == 0 }))
        let bf16 = { (x: Float) in Float(bitPattern: UInt32(HalfPrecision.bf16Bits(x)) << 16) }
        #expect(v.3.overflow == UInt64(finite.count { bf16($0).isInfinite }))
        #expect(v.3.flushed == UInt64(finite.count { $0 != 0 && bf16($0) == 0 }))
        #expect(v.1.overflow > 0 && v.1.flushed > 0 && v.3.overflow > 0 && v.3.flushed > 0)
        #expect(v.1.nonfinite == 6 && v.3.nonfinite == 6)
        #expect(v.1.sum_sq_err.isFinite)   // (bfloat16: squares of values near float32 max overflow the sums)
        for (i, x) in src.enumerated() where x.isFinite {
            #expect(v.0[i] == Float16(x).bitPattern, "f16 of \(x)")
            #expect(v.2[i] == HalfPrecision.bf16Bits(x), "bf16 of \(x)")
        }
        // The same counts for the non-finite values as the counting kernels, vector and portable.
        for portable in [false, true] {
            Narrow.forcePortable(portable)
            src.withUnsafeBytes { #expect(NonFinite.count($0.baseAddress!, dtype: .f32, count: src.count) == 6) }
            src.withUnsafeBytes { #expect(NonFinite.count($0.baseAddress! + 4, dtype: .f32, count: src.count - 1) == 6) }
            let half = src.map { Float16($0).bitPattern }
            half.withUnsafeBytes { #expect(NonFinite.count($0.baseAddress! + 2, dtype: .f16, count: half.count - 1) == 6 + Int(v.1.overflow)) }
            Narrow.forcePortable(false)
        }
    }

    @Test func widening() {
        let src = values(1001)
        var h = [UInt16](repeating: 0, count: src.count)
        var s = NarrowingStats.zero
        Narrow.f16(src, &h, count: src.count, stats: &s)
        var back = [Float](repeating: 0, count: src.count)
        h.withUnsafeBytes { ElementConversion.toFloat32($0.baseAddress!, dtype: .f16, count: src.count, into: &back) }
        for i in 0..<src.count { #expect(back[i] == Float(Float16(bitPattern: h[i])) || (back[i].isNaN && Float16(bitPattern: h[i]).isNaN)) }
    }
}
