// Conversions between float32 and float16 / bfloat16 / float64, in bulk, bit-exact with torch.
//
// float32 -> float16 and float32 -> bfloat16 round to nearest, ties to even, exactly as
// `Tensor.half()` and `Tensor.bfloat16()` do on CPU. NaN becomes a quiet NaN.

/// Bit-level helpers for half-precision formats.
public enum HalfPrecision {
    /// float32 -> bfloat16 bits, round to nearest even; NaN -> 0x7FC0 (torch's `round_to_nearest_even`).
    @inlinable @inline(__always)
    public static func bf16Bits(_ f: Float) -> UInt16 {
        if f.isNaN { return 0x7FC0 }
        let u = f.bitPattern
        let rounding = 0x7FFF &+ ((u >> 16) & 1)
        return UInt16(truncatingIfNeeded: (u &+ rounding) >> 16)
    }

    /// bfloat16 bits -> float32 (exact).
    @inlinable @inline(__always)
    public static func float(bf16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// float32 -> float16 bits, round to nearest even, overflow to infinity, NaN kept NaN.
    @inlinable @inline(__always)
    public static func f16Bits(_ f: Float) -> UInt16 {
        Float16(f).bitPattern
    }

    /// float16 bits -> float32 (exact).
    @inlinable @inline(__always)
    public static func float(f16 bits: UInt16) -> Float {
        Float(Float16(bitPattern: bits))
    }
}

import CDiTKitKernels

/// Error figures of a narrowing (see `ditkit_error_stats`).
public typealias NarrowingStats = ditkit_error_stats

extension NarrowingStats {
    /// Empty statistics.
    public static var zero: NarrowingStats { NarrowingStats(sum_sq_err: 0, sum_sq_src: 0, max_abs: 0, overflow: 0, flushed: 0, nonfinite: 0) }

    /// Adds another set of statistics (used to merge the rows of a tensor).
    public mutating func merge(_ o: NarrowingStats) {
        sum_sq_err += o.sum_sq_err
        sum_sq_src += o.sum_sq_src
        if o.max_abs > max_abs || o.max_abs.isNaN { max_abs = o.max_abs }
        overflow += o.overflow
        flushed += o.flushed
        nonfinite += o.nonfinite
    }
}

/// Vectorised narrowing kernels (AVX2 + F16C when the CPU has them; a portable path that gives
/// bit-identical values and statistics otherwise).
public enum Narrow {
    /// float32 -> float16 bits, round to nearest even, with error figures.
    public static func f16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int, stats: inout NarrowingStats) {
        ditkit_f32_to_f16(src, dst, count, &stats)
    }
    /// float32 -> bfloat16 bits, round to nearest even (NaN -> 0x7FC0), with error figures.
    public static func bf16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int, stats: inout NarrowingStats) {
        ditkit_f32_to_bf16(src, dst, count, &stats)
    }
    /// One row of symmetric int8; returns its scale (max|x| / 127).
    public static func int8Row(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Int8>, count: Int, stats: inout NarrowingStats) -> Float {
        ditkit_f32_to_i8_row(src, dst, count, &stats)
    }
    /// Whether the vector path is in use.
    public static var vectorised: Bool { ditkit_kernels_vectorised() != 0 }
    /// Forces the portable path (tests compare both).
    public static func forcePortable(_ on: Bool) { ditkit_kernels_force_portable(on ? 1 : 0) }
}

/// Counting NaN and infinite values.
public enum NonFinite {
    /// NaN and ±inf values among `count` little-endian elements of `dtype` at `src` (any
    /// alignment); 0 for types that have none (integers, 8-bit floats carried as raw bytes). Block
    /// types are dequantized to count them (`count` a multiple of the block size).
    public static func count(_ src: UnsafeRawPointer, dtype: DType, count: Int) -> Int {
        if let b = dtype.block {
            // Blocks (whole blocks only) are dequantized a chunk at a time and their values counted.
            let chunk = 64 * b.elements
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
            defer { buffer.deallocate() }
            var bad = 0, done = 0
            while done + b.elements <= count {
                let n = min(chunk, (count - done) / b.elements * b.elements)
                BlockQuantizer.dequantize(dtype, src + done / b.elements * b.bytes, count: n, into: buffer)
                bad += BlockQuantizer.countNonFinite(buffer, count: n)
                done += n
            }
            return bad
        }
        switch dtype {
        case .f32: return ditkit_count_nonfinite_f32(src, count)
        case .f64: return ditkit_count_nonfinite_f64(src, count)
        case .f16: return ditkit_count_nonfinite_16(src, count, 0x7C00)
        case .bf16: return ditkit_count_nonfinite_16(src, count, 0x7F80)
        default: return 0
        }
    }
}

/// Bulk conversions between element types. Buffers hold little-endian host values.
public enum ElementConversion {
    /// Symmetric per-row int8 to float32: `dst[r, c] = Float(q[r, c]) × scales[r]` for `rows`
    /// rows of `cols` values (vectorised, same bits as the scalar expression).
    public static func int8Rows(_ q: UnsafePointer<Int8>, scales: UnsafePointer<Float>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>) {
        ditkit_i8_rows_to_f32(q, scales, rows, cols, dst)
    }

    /// Widens `count` elements of `dtype` at `src` to float32 at `dst`, or dequantizes them from a
    /// block type (`count` a multiple of its block size). `dtype` must satisfy `isDequantizable`.
    public static func toFloat32(_ src: UnsafeRawPointer, dtype: DType, count: Int, into dst: UnsafeMutablePointer<Float>) {
        if dtype.block != nil {
            BlockQuantizer.dequantize(dtype, src, count: count, into: dst)
            return
        }
        switch dtype {
        case .f32:
            dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)
        case .f16:
            ditkit_f16_to_f32(src.assumingMemoryBound(to: UInt16.self), dst, count)
        case .bf16:
            ditkit_bf16_to_f32(src.assumingMemoryBound(to: UInt16.self), dst, count)
        case .f64:
            let s = src.assumingMemoryBound(to: Double.self)
            for i in 0..<count { dst[i] = Float(s[i]) }
        case .f8e4m3, .f8e5m2:
            let s = src.assumingMemoryBound(to: UInt8.self)
            let table = dtype == .f8e4m3 ? Float8.e4m3fnTable : Float8.e5m2Table
            table.withUnsafeBufferPointer { t in
                for i in 0..<count { dst[i] = t[Int(s[i])] }
            }
        default:
            preconditionFailure("toFloat32 called with \(dtype)")
        }
    }

}

/// float8 -> float32, exactly as torch widens `float8_e4m3fn` and `float8_e5m2` (bit for bit,
/// NaN payloads included: Tests/Fixtures/float8 holds torch's table of all 256 codes).
public enum Float8 {
    /// `float8_e4m3fn` (safetensors `F8_E4M3`): 1 sign, 4 exponent (bias 7), 3 mantissa bits; no
    /// infinities; `S.1111.111` (0x7F, 0xFF) is NaN, which torch widens to `sign | 0x7FF00000`.
    public static func e4m3fn(_ code: UInt8) -> Float {
        let sign: UInt32 = UInt32(code & 0x80) << 24
        let e = Int((code >> 3) & 0xF), m = UInt32(code & 0x7)
        if e == 0xF && m == 0x7 { return Float(bitPattern: sign | 0x7F80_0000 | (m << 20)) }
        // Subnormal: m/8 · 2^-6; normal: (1 + m/8) · 2^(e-7). Both exact in float32.
        let magnitude = e == 0 ? Float(m) * 0x1p-9 : Float(8 + m) * Float(sign: .plus, exponent: e - 10, significand: 1)
        return sign == 0 ? magnitude : -magnitude
    }

    /// `float8_e5m2` (safetensors `F8_E5M2`): the top byte of an IEEE half (1 sign, 5 exponent, 2
    /// mantissa bits): infinities at `S.11111.00`, NaNs widened quiet (`sign | 0x7FC00000 | m << 21`).
    public static func e5m2(_ code: UInt8) -> Float {
        let sign: UInt32 = UInt32(code & 0x80) << 24
        let e = Int((code >> 2) & 0x1F), m = UInt32(code & 0x3)
        if e == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (m == 0 ? 0 : 0x40_0000 | (m << 21))) }
        let magnitude = e == 0 ? Float(m) * 0x1p-16 : Float(4 + m) * Float(sign: .plus, exponent: e - 17, significand: 1)
        return sign == 0 ? magnitude : -magnitude
    }

    /// The 256 widened values of each type, by code.
    public static let e4m3fnTable: [Float] = (0...255).map { e4m3fn(UInt8($0)) }
    public static let e5m2Table: [Float] = (0...255).map { e5m2(UInt8($0)) }
}

/// In-place byte swapping of elements (for big-endian checkpoints).
public enum ByteSwap {
    /// Reverses the bytes of every `unit`-byte element of `buffer` in place. `unit` is 1, 2, 4, 8 or 16.
    public static func swap(_ buffer: UnsafeMutableRawBufferPointer, unit: Int) {
        guard unit > 1, let base = buffer.baseAddress else { return }
        let n = buffer.count / unit
        switch unit {
        case 2:
            let p = base.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { p[i] = p[i].byteSwapped }
        case 4:
            let p = base.assumingMemoryBound(to: UInt32.self)
            for i in 0..<n { p[i] = p[i].byteSwapped }
        case 8:
            let p = base.assumingMemoryBound(to: UInt64.self)
            for i in 0..<n { p[i] = p[i].byteSwapped }
        default:
            let p = base.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n {
                var lo = i * unit, hi = lo + unit - 1
                while lo < hi { let t = p[lo]; p[lo] = p[hi]; p[hi] = t; lo += 1; hi -= 1 }
            }
        }
    }
}
