// Storing a float32 tensor in a ggml block type: the stored bytes and the error figures, measured
// against the source values the way every other lossy conversion is (Quantization.swift). This is
// the building block a per-tensor type policy uses: it can try every candidate type on a tensor
// and compare the figures.
import Dispatch
import DiTKitCore
import DiTKitFormats

/// A tensor quantized into a block type.
public struct BlockQuantizedTensor: @unchecked Sendable {
    public let dtype: DType
    public let shape: [Int]
    /// The stored bytes (`dtype.byteCount(shape:)` of them), as the bundle and GGUF hold them.
    public let bytes: OwnedBuffer
    /// Error of the dequantized values against the source values.
    public let error: ConversionError
}

public enum BlockConversion {
    /// Blocks quantized and measured per task; fixed, so the figures do not depend on `threads`.
    static let blocksPerTask = 2048

    /// Quantizes `values` (C order, `shape`) into `type`. Throws `BlockQuantizationError` when the
    /// last dimension does not divide into blocks, the tensor is 0-d, or a value is not finite.
    /// `threads` > 1 splits the work; bytes and figures are the same for any thread count.
    public static func quantize(_ values: UnsafeBufferPointer<Float>, shape: [Int], to type: DType, threads: Int = 1) throws -> BlockQuantizedTensor {
        guard let layout = type.block else { preconditionFailure("\(type) is not a block type") }
        let size = try type.byteCount(shape: shape)
        let n = values.count
        precondition(n == shape.reduce(1, *), "values and shape disagree")
        let out = OwnedBuffer(uninitializedCount: max(size, 1))
        guard let src = values.baseAddress, n > 0 else {
            return BlockQuantizedTensor(dtype: type, shape: shape, bytes: out, error: ErrorAccumulator().figures)
        }
        let bad = BlockQuantizer.countNonFinite(src, count: n)
        if bad > 0 { throw BlockQuantizationError.nonFinite(type, count: bad) }
        let blocks = n / layout.elements
        let tasks = (blocks + blocksPerTask - 1) / blocksPerTask
        let dst = out.pointer
        let partial = parallelMap(tasks, workers: max(1, min(threads, tasks))) { t -> ErrorAccumulator in
            let first = t * blocksPerTask, count = min(blocksPerTask, blocks - first)
            let values = count * layout.elements
            let x = src + first * layout.elements
            BlockQuantizer.quantize(type, x, count: values, into: dst + first * layout.bytes)
            let back = UnsafeMutablePointer<Float>.allocate(capacity: values)
            defer { back.deallocate() }
            BlockQuantizer.dequantize(type, dst + first * layout.bytes, count: values, into: back)
            var acc = ErrorAccumulator()
            for i in 0..<values { acc.add(source: x[i], stored: back[i]) }
            return acc
        }
        var total = ErrorAccumulator()
        for p in partial { total.merge(p) }
        return BlockQuantizedTensor(dtype: type, shape: shape, bytes: out, error: total.figures)
    }

    /// Quantizes one step of a streamed conversion: `values` (a whole number of blocks, finite)
    /// into `type` at `out`, reading the blocks back into `readBack` (room for `values.count`
    /// floats) to measure them. Returns the error figures of the step. Throws
    /// `BlockQuantizationError.nonFinite` for NaN or infinite values.
    static func quantizeStep(_ values: UnsafeBufferPointer<Float>, to type: DType, into out: UnsafeMutableRawPointer,
                             readBack: UnsafeMutablePointer<Float>) throws -> ErrorAccumulator {
        var acc = ErrorAccumulator()
        guard let layout = type.block, let x = values.baseAddress, values.count > 0 else { return acc }
        precondition(values.count % layout.elements == 0, "a step of whole blocks")
        let bad = BlockQuantizer.countNonFinite(x, count: values.count)
        if bad > 0 { throw BlockQuantizationError.nonFinite(type, count: bad) }
        BlockQuantizer.quantize(type, x, count: values.count, into: out)
        BlockQuantizer.dequantize(type, out, count: values.count, into: readBack)
        for i in 0..<values.count { acc.add(source: x[i], stored: readBack[i]) }
        return acc
    }
}
