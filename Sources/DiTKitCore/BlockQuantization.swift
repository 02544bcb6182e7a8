// ggml block quantization types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K ... Q6_K): their layouts,
// byte counts of tensors stored in them, and bulk quantization and dequantization.
//
// Quantization gives the bytes ggml's reference quantizers give (`quantize_row_*_ref`, the
// imatrix-free path); dequantization gives the values gguf-py's `dequantize` gives. The kernels
// are portable C (CDiTKitKernels/quants.c) with one float32 operation order on every CPU.
// A tensor stored in a block type is split into blocks along its last dimension: that
// dimension must be a multiple of the block size (32, or 256 for the K-quants). Tensors whose
// rows do not divide are refused for that type; callers keep them in another type.
import CDiTKitKernels
import Dispatch

/// The shape of one block of a ggml block type.
public struct BlockLayout: Sendable, Equatable {
    /// Values per block (32, or 256 for the K-quants).
    public let elements: Int
    /// Bytes per block.
    public let bytes: Int
    /// Bits per stored value, scales included (`8 × bytes / elements`).
    public var bitsPerValue: Double { Double(bytes * 8) / Double(elements) }
}

/// Why a tensor cannot be stored in a block type, or why its values cannot be quantized.
public enum BlockQuantizationError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The last dimension is not a multiple of the block size.
    case rowNotMultiple(DType, rowLength: Int, blockElements: Int)
    /// A 0-d tensor has no row to split into blocks.
    case scalar(DType)
    /// The values include NaN or infinity, which block scales cannot represent.
    case nonFinite(DType, count: Int)

    public var description: String {
        switch self {
        case let .rowNotMultiple(d, n, b):
            return "rows of \(n) values cannot be stored as \(d.name): the last dimension must be a multiple of \(b)"
        case .scalar(let d): return "a 0-d tensor cannot be stored as \(d.name)"
        case let .nonFinite(d, n): return "\(n) value\(n == 1 ? " is" : "s are") NaN or infinite; \(d.name) can only store finite values"
        }
    }
}

extension DType {
    /// The block types, in ggml type-code order.
    public static let blockTypes: [DType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    /// The block layout of a ggml block type; `nil` for element types.
    public var block: BlockLayout? {
        guard let code = ggmlBlockCode else { return nil }
        return BlockLayout(elements: ditkit_quant_block_elements(code), bytes: ditkit_quant_block_bytes(code))
    }

    /// Whether values of this type can be widened or dequantized to float32.
    public var isDequantizable: Bool { isConvertibleFloat || block != nil }

    private var ggmlBlockCode: Int32? {
        switch self {
        case .q4_0: return Int32(DITKIT_GGML_Q4_0)
        case .q4_1: return Int32(DITKIT_GGML_Q4_1)
        case .q5_0: return Int32(DITKIT_GGML_Q5_0)
        case .q5_1: return Int32(DITKIT_GGML_Q5_1)
        case .q8_0: return Int32(DITKIT_GGML_Q8_0)
        case .q2_K: return Int32(DITKIT_GGML_Q2_K)
        case .q3_K: return Int32(DITKIT_GGML_Q3_K)
        case .q4_K: return Int32(DITKIT_GGML_Q4_K)
        case .q5_K: return Int32(DITKIT_GGML_Q5_K)
        case .q6_K: return Int32(DITKIT_GGML_Q6_K)
        default: return nil
        }
    }

    /// The ggml type code (`enum ggml_type`, the `type` of a GGUF tensor info) of this dtype;
    /// `nil` for dtypes ggml has no code for (unsigned integers, BOOL, float8, complex).
    public var ggmlType: UInt32? {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .i8: return 24
        case .i16: return 25
        case .i32: return 26
        case .i64: return 27
        case .f64: return 28
        case .bf16: return 30
        default: return ggmlBlockCode.map { UInt32($0) }
        }
    }

    /// The dtype of a ggml type code; `nil` for codes DiTKit does not read.
    public init?(ggmlType code: UInt32) {
        guard let d = DType.allCases.first(where: { $0.ggmlType == code }) else { return nil }
        self = d
    }

    /// ggml's name for a type code (`IQ2_XXS` for 16), for messages about types DiTKit does not read.
    public static func ggmlTypeName(_ code: UInt32) -> String {
        let names: [UInt32: String] = [
            0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K",
            12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
            20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
            29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
        ]
        return names[code] ?? "unknown"
    }

    /// Bytes of a C-order tensor of `shape` stored in this type. Block types need a last
    /// dimension that is a multiple of the block size. Throws `BlockQuantizationError` or
    /// `ArithmeticOverflow`.
    public func byteCount(shape: [Int]) throws -> Int {
        let n = try Checked.product(shape, "the element count")
        guard let b = block else { return try Checked.mul(n, itemSize, "a byte count") }
        guard let row = shape.last else { throw BlockQuantizationError.scalar(self) }
        guard row % b.elements == 0 else { throw BlockQuantizationError.rowNotMultiple(self, rowLength: row, blockElements: b.elements) }
        return try Checked.mul(n / b.elements, b.bytes, "a byte count")
    }
}

/// Bulk quantization into and dequantization from the block types.
public enum BlockQuantizer {
    /// Blocks per task when a call is split across threads (a few hundred KB of input each).
    static let blocksPerTask = 4096

    /// Quantizes `count` float32 values at `src` into `type` blocks at `dst`
    /// (`count / elements × bytes` bytes). `count` must be a multiple of the block size and
    /// the values finite (see `countNonFinite`); `threads` > 1 splits the blocks across threads,
    /// with the same bytes as one thread.
    public static func quantize(_ type: DType, _ src: UnsafePointer<Float>, count: Int, into dst: UnsafeMutableRawPointer, threads: Int = 1) {
        guard let b = type.block, let code = type.ggmlType else { preconditionFailure("\(type) is not a block type") }
        precondition(count % b.elements == 0, "count must be a multiple of the block size")
        split(blocks: count / b.elements, threads: threads) { first, n in
            _ = ditkit_quantize_blocks(Int32(code), src + first * b.elements, dst + first * b.bytes, n)
        }
    }

    /// Dequantizes the `count` values (a multiple of the block size) of the `type` blocks at `src`
    /// into float32 at `dst`. Any bytes are accepted (garbage gives garbage values, never an
    /// out-of-bounds access).
    public static func dequantize(_ type: DType, _ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>, threads: Int = 1) {
        guard let b = type.block, let code = type.ggmlType else { preconditionFailure("\(type) is not a block type") }
        precondition(count % b.elements == 0, "count must be a multiple of the block size")
        split(blocks: count / b.elements, threads: threads) { first, n in
            _ = ditkit_dequantize_blocks(Int32(code), src + first * b.bytes, dst + first * b.elements, n)
        }
    }

    /// How many of `count` values are NaN or infinite.
    public static func countNonFinite(_ src: UnsafePointer<Float>, count: Int) -> Int {
        var bad = 0
        for i in 0..<count where !src[i].isFinite { bad += 1 }
        return bad
    }

    private static func split(blocks: Int, threads: Int, _ body: @escaping (Int, Int) -> Void) {
        let tasks = (blocks + blocksPerTask - 1) / blocksPerTask
        if threads <= 1 || tasks <= 1 {
            body(0, blocks)
            return
        }
        let next = AtomicCounter()
        DispatchQueue.concurrentPerform(iterations: min(threads, tasks)) { _ in
            while true {
                let t = next.increment()
                if t >= tasks { return }
                let first = t * blocksPerTask
                body(first, min(blocksPerTask, blocks - first))
            }
        }
    }
}
