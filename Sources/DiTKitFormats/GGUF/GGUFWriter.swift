// GGUF v3 writer (ggml docs/gguf.md). Layout:
//   1. magic "GGUF", u32 version 3, u64 tensor_count, u64 kv_count
//   2. kv pairs: gguf string key (u64 length + UTF-8), u32 value type, value
//   3. tensor infos: name, u32 n_dims, u64 ne[n_dims] (ggml order: innermost first), u32 ggml type,
//      u64 offset (relative to the data section, a multiple of the alignment)
//   4. zero padding to the alignment, then the tensor data, each tensor padded to the alignment.
// Everything little-endian. Q8_0 blocks are {fp16 d; int8 qs[32]} as ggml-common.h defines them.
import DiTKitCore

/// ggml tensor types DiTKit writes.
public enum GGMLType: UInt32, Sendable {
    case f32 = 0, f16 = 1, q8_0 = 8, bf16 = 30

    /// Bytes for `n` elements (`n` a multiple of 32 for Q8_0).
    public func byteCount(_ n: Int) -> Int {
        switch self {
        case .f32: return n * 4
        case .f16, .bf16: return n * 2
        case .q8_0: return n / 32 * 34
        }
    }
}

/// A GGUF metadata value.
public indirect enum GGUFValue: Sendable {
    case u32(UInt32)
    case i32(Int32)
    case u64(UInt64)
    case f32(Float)
    case f64(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])
}

/// A tensor to write: bytes produced on demand in the given ggml type.
public struct GGUFTensor: Sendable {
    public var name: String
    /// numpy/PyTorch order (outermost first); written reversed as ggml `ne`.
    public var shape: [Int]
    public var type: GGMLType
    public var bytes: @Sendable () throws -> RawBytes
    public init(name: String, shape: [Int], type: GGMLType, bytes: @escaping @Sendable () throws -> RawBytes) {
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

    private static func typeCode(_ v: GGUFValue) -> UInt32 {
        switch v {
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
        case .u32(let x): le(x, &out)
        case .i32(let x): le(x, &out)
        case .u64(let x): le(x, &out)
        case .f32(let x): le(x.bitPattern, &out)
        case .f64(let x): le(x.bitPattern, &out)
        case .bool(let b): out.append(b ? 1 : 0)
        case .string(let s): string(s, &out)
        case .array(let items):
            le(items.first.map(typeCode) ?? 4, &out)
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
        for t in tensors {
            guard t.name.utf8.count <= 64 else { throw CheckpointError.inconsistent("GGUF tensor name '\(t.name)' is longer than 64 bytes") }
            string(t.name, &head)
            le(UInt32(t.shape.count), &head)
            for d in t.shape.reversed() { le(UInt64(d), &head) }
            le(t.type.rawValue, &head)
            le(UInt64(offset), &head)
            offsets.append(offset)
            offset = try Checked.alignUp(offset + t.type.byteCount(t.shape.reduce(1, *)), alignment)
        }
        try file.write(head)
        try file.pad(to: alignment)
        let dataStart = file.offset
        for (t, o) in zip(tensors, offsets) {
            let pad = dataStart + o - file.offset
            if pad > 0 { try file.write([UInt8](repeating: 0, count: pad)) }
            let b = try t.bytes()
            let expected = t.type.byteCount(t.shape.reduce(1, *))
            guard b.count == expected else { throw CheckpointError.inconsistent("GGUF tensor '\(t.name)' produced \(b.count) bytes, expected \(expected)") }
            try withExtendedLifetime(b) { try file.write(b.buffer) }
        }
        try file.pad(to: alignment)
    }

    /// Q8_0 exactly as ggml's `quantize_row_q8_0_ref`: per block of 32, `d = amax / 127`,
    /// `id = d != 0 ? 1/d : 0` (from the float32 d), `q = roundf(x * id)` (half away from zero),
    /// `d` stored as float16 (round to nearest even). `count` must be a multiple of 32.
    public static func quantizeQ8_0(_ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<UInt8>) {
        for b in 0..<(count / 32) {
            let src = x + b * 32
            var amax: Float = 0
            for i in 0..<32 { amax = max(amax, abs(src[i])) }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            let block = out + b * 34
            let h = Float16(d).bitPattern
            block[0] = UInt8(h & 0xFF)
            block[1] = UInt8(h >> 8)
            for i in 0..<32 {
                let q = (src[i] * id).rounded(.toNearestOrAwayFromZero)
                block[2 + i] = UInt8(bitPattern: Int8(max(-128, min(127, q))))
            }
        }
    }
}
