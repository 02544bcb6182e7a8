// Element types, spelled as safetensors spells them everywhere the tool prints one.

/// An element type of a stored tensor.
///
/// Raw values are the safetensors spellings (`F32`, `BF16`, `F8_E4M3`, ...), which is
/// how every DiTKit command prints a dtype. Float8 types (`F8_E4M3` = torch's
/// `float8_e4m3fn`, `F8_E5M2`) widen exactly to float32; nothing is stored as float8.
///
/// The ggml block types (`Q8_0` ... `Q6_K`, spelled as ggml spells them) store blocks of 32 or
/// 256 values along the last dimension (BlockQuantization.swift); they have no per-element
/// size, so byte counts come from `byteCount(shape:)`, never from `itemSize`.
public enum DType: String, Sendable, CaseIterable, Codable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    case c64 = "C64", c128 = "C128"
    case q8_0 = "Q8_0", q4_0 = "Q4_0", q4_1 = "Q4_1", q5_0 = "Q5_0", q5_1 = "Q5_1"
    case q2_K = "Q2_K", q3_K = "Q3_K", q4_K = "Q4_K", q5_K = "Q5_K", q6_K = "Q6_K"

    /// Bytes per element; 0 for the block types (use `byteCount(shape:)`).
    public var itemSize: Int {
        switch self {
        case .f64, .i64, .u64, .c64: return 8
        case .c128: return 16
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: return 1
        case .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K: return 0
        }
    }

    /// Whether the type is a floating-point type that DiTKit can widen to `Float`.
    public var isConvertibleFloat: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16, .f8e4m3, .f8e5m2: return true
        default: return false
        }
    }

    /// Whether values of this type are floating point (including float8).
    public var isFloatingPoint: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16, .f8e4m3, .f8e5m2: return true
        default: return false
        }
    }

    /// The safetensors spelling; same as `rawValue`.
    public var name: String { rawValue }

    /// Parses a safetensors dtype name; `nil` when unknown (the block types are not safetensors dtypes).
    public init?(safetensorsName: String) {
        guard let d = DType(rawValue: safetensorsName), d.block == nil else { return nil }
        self = d
    }

    /// Maps a torch legacy storage class name (`FloatStorage`, `HalfStorage`, ...) to its dtype.
    public init?(torchStorageClass name: String) {
        switch name {
        case "DoubleStorage": self = .f64
        case "FloatStorage": self = .f32
        case "HalfStorage": self = .f16
        case "BFloat16Storage": self = .bf16
        case "LongStorage": self = .i64
        case "IntStorage": self = .i32
        case "ShortStorage": self = .i16
        case "CharStorage": self = .i8
        case "ByteStorage": self = .u8
        case "BoolStorage": self = .bool
        case "ComplexFloatStorage": self = .c64
        case "ComplexDoubleStorage": self = .c128
        default: return nil
        }
    }

    /// Maps a torch dtype attribute name (`float32`, `half`, `float8_e4m3fn`, ...) to its dtype.
    public init?(torchDTypeName name: String) {
        switch name {
        case "float64", "double": self = .f64
        case "float32", "float": self = .f32
        case "float16", "half": self = .f16
        case "bfloat16": self = .bf16
        case "int64", "long": self = .i64
        case "int32", "int": self = .i32
        case "int16", "short": self = .i16
        case "int8": self = .i8
        case "uint8": self = .u8
        case "uint16": self = .u16
        case "uint32": self = .u32
        case "uint64": self = .u64
        case "bool": self = .bool
        case "float8_e4m3fn": self = .f8e4m3
        case "float8_e5m2": self = .f8e5m2
        case "complex64", "cfloat": self = .c64
        case "complex128", "cdouble": self = .c128
        default: return nil
        }
    }

    /// Size in bytes of the unit a byte swap works on (complex swaps each half).
    public var swapUnit: Int {
        switch self {
        case .c64: return 4
        case .c128: return 8
        default: return itemSize
        }
    }
}
