// GGUF v3 writer (ggml docs/gguf.md). Layout:
//   1. magic "GGUF", u32 version 3, u64 tensor_count, u64 kv_count
//   2. kv pairs: gguf string key (u64 length + UTF-8), u32 value type, value
//   3. tensor infos: name, u32 n_dims, u64 ne[n_dims] (ggml order: innermost first), u32 ggml type,
//      u64 offset (relative to the data section, a multiple of the alignment)
//   4. zero padding to the alignment, then the tensor data, each tensor padded to the alignment.
// Everything little-endian. Block types (Q8_0 ... Q6_K) are written as ggml-common.h lays out
// their blocks (FORMAT.md), which is how the bundle stores them: their bytes are copied verbatim.
import DiTKitCore

/// A GGUF metadata value (value types 0-12 of the GGUF spec).
public enum GGUFValue: Sendable, Equatable {
    case u8(UInt8)
    case i8(Int8)
    case u16(UInt16)
    case i16(Int16)
    case u32(UInt32)
    case i32(Int32)
    case u64(UInt64)
    case i64(Int64)
    case f32(Float)
    case f64(Double)
    case bool(Bool)
    case string(String)
    /// Elements of one type (`elementType`, a GGUF value type code, says which when empty).
    case array([GGUFValue], elementType: UInt32)

    /// An array whose element type is that of its first element (u32 when empty).
    public static func array(_ items: [GGUFValue]) -> GGUFValue {
        .array(items, elementType: items.first.map(GGUFWriter.typeCode) ?? 4)
    }
}

/// A tensor to write: bytes produced on demand in the given type.
public struct GGUFTensor: Sendable {
    public var name: String
    /// numpy/PyTorch order (outermost first); written reversed as ggml `ne`.
    public var shape: [Int]
    /// A dtype with a ggml type code (`DType.ggmlType`): F32, F16, BF16, F64, I8-I64 or a block type.
    public var type: DType
    public var bytes: @Sendable () throws -> RawBytes
    public init(name: String, shape: [Int], type: DType, bytes: @escaping @Sendable () throws -> RawBytes) {
        self.name = name
        self.shape = shape
        self.type = type
        self.bytes = bytes
    }
}

public enum GGUFWriter {
    public static let alignment = 32

    private static func le<T: FixedWidthInteger>(_ v: T, _ out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    private static func string(_ s: String, _ out: inout [UInt8]) {
        let b = Array(s.utf8)
        le(UInt64(b.count), &out)
        out += b
    }

    static func typeCode(_ v: GGUFValue) -> UInt32 {
        switch v {
        case .u8: return 0
        case .i8: return 1
        case .u16: return 2
        case .i16: return 3
        case .i64: return 11
        case .u32: return 4
        case .i32: return 5
        case .f32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .u64: return 10
        case .f64: return 12
        }
    }

    private static func value(_ v: GGUFValue, _ out: inout [UInt8]) {
        switch v {
        case .u8(let x): le(x, &out)
        case .i8(let x): le(x, &out)
        case .u16(let x): le(x, &out)
        case .i16(let x): le(x, &out)
        case .i64(let x): le(x, &out)
        case .u32(let x): le(x, &out)
        case .i32(let x): le(x, &out)
        case .u64(let x): le(x, &out)
        case .f32(let x): le(x.bitPattern, &out)
        case .f64(let x): le(x.bitPattern, &out)
        case .bool(let b): out.append(b ? 1 : 0)
        case .string(let s): string(s, &out)
        case .array(let items, let elementType):
            le(elementType, &out)
            le(UInt64(items.count), &out)
            for i in items { value(i, &out) }
        }
    }

    /// Writes `metadata` (keys in the given order) and `tensors` to `file`.
    public static func write(metadata: [(String, GGUFValue)], tensors: [GGUFTensor], to file: OutputFile) throws {
        var head: [UInt8] = Array("GGUF".utf8)
        le(UInt32(3), &head)
        le(UInt64(tensors.count), &head)
        le(UInt64(metadata.count), &head)
        for (k, v) in metadata {
            string(k, &head)
            le(typeCode(v), &head)
            value(v, &head)
        }
        var offset = 0
        var offsets: [Int] = []
        var sizes: [Int] = []
        for t in tensors {
            guard t.name.utf8.count <= 64 else { throw CheckpointError.inconsistent("GGUF tensor name '\(t.name)' is longer than 64 bytes") }
            guard let code = t.type.ggmlType else { throw CheckpointError.inconsistent("GGUF has no type for \(t.type.name) (tensor '\(t.name)')") }
            let size = try t.type.byteCount(shape: t.shape)
            string(t.name, &head)
            le(UInt32(t.shape.count), &head)
            for d in t.shape.reversed() { le(UInt64(d), &head) }
            le(code, &head)
            le(UInt64(offset), &head)
            offsets.append(offset)
            sizes.append(size)
            offset = try Checked.alignUp(try Checked.add(offset, size), alignment)
        }
        try file.write(head)
        try file.pad(to: alignment)
        let dataStart = file.offset
        for (k, (t, o)) in zip(tensors, offsets).enumerated() {
            let pad = dataStart + o - file.offset
            if pad > 0 { try file.write([UInt8](repeating: 0, count: pad)) }
            let b = try t.bytes()
            let expected = sizes[k]
            guard b.count == expected else { throw CheckpointError.inconsistent("GGUF tensor '\(t.name)' produced \(b.count) bytes, expected \(expected)") }
            try withExtendedLifetime(b) { try file.write(b.buffer) }
        }
        try file.pad(to: alignment)
    }
}
