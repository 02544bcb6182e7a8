// Narrowing float32 to the stored dtypes, and the error figures of each lossy conversion.
import DiTKitCore
import DiTKitFormats

/// Per-row figures of a narrowed matrix (rows = first dimension): the row with the lowest SQNR,
/// and the rows that lost most of their values (more than half of them non-zero in the source
/// and stored as 0: an int8 row whose scale an outlier sets, an F16 row below its smallest
/// subnormal). The whole tensor's figures do not show such a row: the values that set the scale
/// carry nearly all of the energy.
struct RowTracker {
    var worst: WorstRow?
    var ruinedCount = 0
    /// The ruined row with the largest share of values stored as 0 (the first among equals).
    var ruined: (row: Int, flushed: Int, values: Int)?

    mutating func add(row r: Int, values: Int, _ s: NarrowingStats) {
        if s.sum_sq_err > 0 && s.sum_sq_src > 0 {
            let db = 10 * log10(s.sum_sq_src / s.sum_sq_err)
            if worst.map({ db < $0.sqnrDB }) ?? true { worst = WorstRow(row: r, sqnrDB: db) }
        }
        let flushed = Int(s.flushed)
        if values > 0 && 2 * flushed > values {
            ruinedCount += 1
            // flushed / values larger than the one kept so far (cross-multiplied: exact).
            if ruined.map({ flushed * $0.values > $0.flushed * values }) ?? true { ruined = (r, flushed, values) }
        }
    }

    /// Adds the rows of `other`, whose row 0 is row `firstRow` here (a later step of the same tensor).
    mutating func merge(_ other: RowTracker, firstRow: Int) {
        if let w = other.worst, worst.map({ w.sqnrDB < $0.sqnrDB }) ?? true { worst = WorstRow(row: w.row + firstRow, sqnrDB: w.sqnrDB) }
        ruinedCount += other.ruinedCount
        if let r = other.ruined, ruined.map({ r.flushed * $0.values > $0.flushed * r.values }) ?? true {
            ruined = (r.row + firstRow, r.flushed, r.values)
        }
    }

    var ruinedRows: RuinedRows? {
        ruined.map { RuinedRows(count: ruinedCount, row: $0.row, flushedToZero: $0.flushed, values: $0.values) }
    }
}

/// Accumulates error figures of stored values against source values.
struct ErrorAccumulator {
    init() {}

    init(_ s: NarrowingStats) {
        merge(s)
    }

    var sumSquaredError = 0.0
    var sumSquaredSource = 0.0
    var maxAbs = 0.0
    var overflow = 0
    var flushed = 0
    /// NaN and infinite sources (left out of the figures).
    var nonFinite = 0
    /// Per-row figures, for tensors narrowed row by row.
    var rows: RowTracker?

    mutating func merge(_ s: NarrowingStats) {
        sumSquaredError += s.sum_sq_err
        sumSquaredSource += s.sum_sq_src
        maxAbs = max(maxAbs, Double(s.max_abs))
        overflow += Int(s.overflow)
        flushed += Int(s.flushed)
        nonFinite += Int(s.nonfinite)
    }

    @inline(__always)
    mutating func add(source s: Float, stored t: Float) {
        if !s.isFinite { nonFinite += 1; return }
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
        nonFinite += o.nonFinite
    }

    var figures: ConversionError {
        let err = sumSquaredError.squareRoot(), ref = sumSquaredSource.squareRoot()
        let rel = ref > 0 ? err / ref : (err > 0 ? .infinity : 0)
        let sqnr: Double? = err > 0 && ref > 0 ? 20 * log10(ref / err) : nil
        return ConversionError(maxAbs: maxAbs, relL2: rel, sqnrDB: sqnr, overflow: overflow, flushedToZero: flushed,
                               worstRow: rows?.worst, ruinedRows: rows?.ruinedRows)
    }
}

enum Narrowing {
    /// float32 -> F16 bits, with error figures; with `rows` > 1 (rows of `count / rows` values),
    /// narrowed row by row and each row's figures tracked.
    static func toF16(_ src: UnsafeBufferPointer<Float>, rows: Int = 1, track: Bool? = nil, _ dst: UnsafeMutablePointer<UInt16>) -> ErrorAccumulator {
        byRows(src, rows: rows, track: track) { b, k, n, s in Narrow.f16(b, dst + k, count: n, stats: &s) }
    }

    /// float32 -> BF16 bits (round to nearest even, as torch), with error figures, by rows as `toF16`.
    static func toBF16(_ src: UnsafeBufferPointer<Float>, rows: Int = 1, track: Bool? = nil, _ dst: UnsafeMutablePointer<UInt16>) -> ErrorAccumulator {
        byRows(src, rows: rows, track: track) { b, k, n, s in Narrow.bf16(b, dst + k, count: n, stats: &s) }
    }

    /// Symmetric per-row int8: `scale[r] = max|w[r]| / 127`, `q = round_half_even(w / scale)`.
    static func toInt8(_ src: UnsafeBufferPointer<Float>, rows: Int, track: Bool? = nil, _ q: UnsafeMutablePointer<Int8>, _ scales: UnsafeMutablePointer<Float>) -> ErrorAccumulator {
        var r = 0
        return byRows(src, rows: max(rows, 1), always: true, track: track) { b, k, n, s in
            scales[r] = Narrow.int8Row(b, q + k, count: n, stats: &s)
            r += 1
        }
    }

    /// Runs `narrow(source, offset, count, stats)` over `rows` equal rows of `src` (one call for
    /// the whole buffer when `rows` is 1, unless `always` or `track`), with fresh stats per row;
    /// the rows' figures are tracked when `track` (default: more than one row).
    private static func byRows(_ src: UnsafeBufferPointer<Float>, rows: Int, always: Bool = false, track: Bool? = nil,
                               _ narrow: (UnsafePointer<Float>, Int, Int, inout NarrowingStats) -> Void) -> ErrorAccumulator {
        var acc = ErrorAccumulator()
        guard let base = src.baseAddress else { return acc }
        let tracking = track ?? (rows > 1)
        guard rows > 1 || always || tracking, rows > 0, src.count % rows == 0 else {
            var s = NarrowingStats.zero
            narrow(base, 0, src.count, &s)
            acc.merge(s)
            return acc
        }
        let cols = src.count / rows
        var tracker = RowTracker()
        for r in 0..<rows {
            var s = NarrowingStats.zero
            narrow(base + r * cols, r * cols, cols, &s)
            acc.merge(s)
            if tracking { tracker.add(row: r, values: cols, s) }
        }
        if tracking { acc.rows = tracker }
        return acc
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
