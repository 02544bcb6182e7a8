// Narrowing float32 to the stored dtypes, and the error figures of each lossy conversion.
import DiTKitCore
import DiTKitFormats

/// Accumulates error figures of stored values against source values.
struct ErrorAccumulator {
    var sumSquaredError = 0.0
    var sumSquaredSource = 0.0
    var maxAbs = 0.0
    var overflow = 0
    var flushed = 0

    @inline(__always)
    mutating func add(source s: Float, stored t: Float) {
        if s.isFinite && !t.isFinite { overflow += 1; return }
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
        var acc = ErrorAccumulator()
        for i in 0..<src.count {
            let h = Float16(src[i])
            dst[i] = h.bitPattern
            acc.add(source: src[i], stored: Float(h))
        }
        return acc
    }

    /// float32 -> BF16 bits (round to nearest even, as torch), with error figures.
    static func toBF16(_ src: UnsafeBufferPointer<Float>, _ dst: UnsafeMutablePointer<UInt16>) -> ErrorAccumulator {
        var acc = ErrorAccumulator()
        for i in 0..<src.count {
            let b = HalfPrecision.bf16Bits(src[i])
            dst[i] = b
            acc.add(source: src[i], stored: HalfPrecision.float(bf16: b))
        }
        return acc
    }

    /// Symmetric per-row int8: `scale[r] = max|w[r]| / 127`, `q = round_half_even(w / scale)`.
    static func toInt8(_ src: UnsafeBufferPointer<Float>, rows: Int, _ q: UnsafeMutablePointer<Int8>, _ scales: UnsafeMutablePointer<Float>) -> ErrorAccumulator {
        var acc = ErrorAccumulator()
        let cols = rows == 0 ? 0 : src.count / rows
        for r in 0..<rows {
            let row = UnsafeBufferPointer(rebasing: src[(r * cols)..<((r + 1) * cols)])
            var amax: Float = 0
            for v in row { amax = max(amax, abs(v)) }
            let scale = amax / 127
            scales[r] = scale
            for c in 0..<cols {
                let v = row[c]
                var qv: Float = 0
                if scale > 0 { qv = min(127, max(-127, (v / scale).rounded(.toNearestOrEven))) }
                q[r * cols + c] = Int8(qv)
                acc.add(source: v, stored: qv * scale)
            }
        }
        return acc
    }

    /// Error figures of float32 rounding (from an F64 source).
    static func toF32(_ src: UnsafeBufferPointer<Double>, _ dst: UnsafeMutablePointer<Float>) -> ErrorAccumulator {
        var acc = ErrorAccumulator()
        for i in 0..<src.count {
            let f = Float(src[i])
            dst[i] = f
            let e = Double(f) - src[i]
            if src[i].isFinite && !f.isFinite { acc.overflow += 1; continue }
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
