// Narrowing float32 to the stored dtypes, and the error figures of each lossy conversion.
import DiTKitCore
import DiTKitFormats

/// Accumulates error figures of stored values against source values.
struct ErrorAccumulator {
    init() {}

    init(_ s: NarrowingStats) {
        sumSquaredError = s.sum_sq_err
        sumSquaredSource = s.sum_sq_src
        maxAbs = Double(s.max_abs)
        overflow = Int(s.overflow)
        flushed = Int(s.flushed)
    }

    var sumSquaredError = 0.0
    var sumSquaredSource = 0.0
    var maxAbs = 0.0
    var overflow = 0
    var flushed = 0

    @inline(__always)
    mutating func add(source s: Float, stored t: Float) {
        if !s.isFinite { return }
        if !t.isFinite { overflow += 1; return }
        if s != 0 && t == 0 { flushed += 1 }
        let e = Double(t) - Double(s)
        sumSquaredError += e * e
        sumSquaredSource += Double(s) * Double(s)
        maxAbs = max(maxAbs, abs(e))
    }

    mutating func merge(_ o: ErrorAccumulator) {
        sumSquaredError += o.sumSquaredError
        sumSquaredSource += o.sumSquaredSource
        maxAbs = max(maxAbs, o.maxAbs)
        overflow += o.overflow
        flushed += o.flushed
    }

    var figures: ConversionError {
        let err = sumSquaredError.squareRoot(), ref = sumSquaredSource.squareRoot()
        let rel = ref > 0 ? err / ref : (err > 0 ? .infinity : 0)
        let sqnr: Double? = err > 0 && ref > 0 ? 20 * log10(ref / err) : nil
        return ConversionError(maxAbs: maxAbs, relL2: rel, sqnrDB: sqnr, overflow: overflow, flushedToZero: flushed)
    }
}

enum Narrowing {
    /// float32 -> F16 bits, with error figures.
    static func toF16(_ src: UnsafeBufferPointer<Float>, _ dst: UnsafeMutablePointer<UInt16>) -> ErrorAccumulator {
        var s = NarrowingStats.zero
        if let b = src.baseAddress { Narrow.f16(b, dst, count: src.count, stats: &s) }
        return ErrorAccumulator(s)
    }

    /// float32 -> BF16 bits (round to nearest even, as torch), with error figures.
    static func toBF16(_ src: UnsafeBufferPointer<Float>, _ dst: UnsafeMutablePointer<UInt16>) -> ErrorAccumulator {
        var s = NarrowingStats.zero
        if let b = src.baseAddress { Narrow.bf16(b, dst, count: src.count, stats: &s) }
        return ErrorAccumulator(s)
    }

    /// Symmetric per-row int8: `scale[r] = max|w[r]| / 127`, `q = round_half_even(w / scale)`.
    static func toInt8(_ src: UnsafeBufferPointer<Float>, rows: Int, _ q: UnsafeMutablePointer<Int8>, _ scales: UnsafeMutablePointer<Float>) -> ErrorAccumulator {
        var s = NarrowingStats.zero
        let cols = rows == 0 ? 0 : src.count / rows
        guard let base = src.baseAddress else { return ErrorAccumulator(s) }
        for r in 0..<rows {
            scales[r] = Narrow.int8Row(base + r * cols, q + r * cols, count: cols, stats: &s)
        }
        return ErrorAccumulator(s)
    }

    /// Error figures of float32 rounding (from an F64 source). Non-finite sources are left out of
    /// the figures, as in the narrowing kernels.
    static func toF32(_ src: UnsafeBufferPointer<Double>, _ dst: UnsafeMutablePointer<Float>) -> ErrorAccumulator {
        var acc = ErrorAccumulator()
        for i in 0..<src.count {
            let f = Float(src[i])
            dst[i] = f
            let e = Double(f) - src[i]
            if !src[i].isFinite { continue }
            if !f.isFinite { acc.overflow += 1; continue }
            if src[i] != 0 && f == 0 { acc.flushed += 1 }
            acc.sumSquaredError += e * e
            acc.sumSquaredSource += src[i] * src[i]
            acc.maxAbs = max(acc.maxAbs, abs(e))
        }
        return acc
    }
}

#if canImport(Glibc)
import Glibc
#endif
