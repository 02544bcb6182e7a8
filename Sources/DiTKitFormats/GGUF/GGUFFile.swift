// GGUF reader (ggml docs/gguf.md, versions 2 and 3, little-endian). Layout:
//   1. magic "GGUF", u32 version, u64 tensor_count, u64 kv_count
//   2. kv_count pairs: key (u64 length + UTF-8), u32 value type (0-12), value; strings are
//      u64 length + UTF-8, arrays u32 element type + u64 count + elements (arrays may nest)
//   3. tensor_count infos: name, u32 n_dims (<= 4), u64 ne[n_dims] (innermost first), u32 ggml type,
//      u64 offset (relative to the data section, a multiple of the alignment)
//   4. zero padding to `general.alignment` (default 32), then the data section
//
// Just enough GGUF to list and read tensors: every length read from the file is checked against
// the bytes left and a hard cap before anything is allocated, every size is overflow-checked,
// each tensor's data must be aligned, inside the file and not overlap another's. Types DiTKit does
// not read (IQ*, TQ*, Q8_K, MXFP4, ...) are refused, naming the tensor and the byte offset of its
// info. Shapes are reported in PyTorch order (ggml's `ne` reversed); tensors are zero-copy views.
import DiTKitCore

/// Why a GGUF file was refused. `offset` is the byte offset in the file where the problem is.
public enum GGUFError: Error, CustomStringConvertible, Sendable {
    case truncated(what: String, offset: Int, needed: Int, available: Int)
    case badMagic
    case bigEndian(UInt32)
    case unsupportedVersion(UInt32)
    case tooMany(what: String, count: UInt64, limit: Int, offset: Int)
    case tooLong(what: String, length: UInt64, limit: Int, offset: Int)
    case invalid(String, offset: Int)
    case tensor(String, String, offset: Int)

    public var description: String {
        switch self {
        case let .truncated(what, o, n, a): return "truncated GGUF: \(what) at byte \(o) needs \(n) bytes, \(a) remain"
        case .badMagic: return "not a GGUF file (no 'GGUF' magic)"
        case .bigEndian(let v): return "big-endian GGUF (version field reads 0x\(String(v, radix: 16))) is not supported"
        case .unsupportedVersion(let v): return "GGUF version \(v) is not supported (DiTKit reads versions 2 and 3)"
        case let .tooMany(what, c, l, o): return "\(what) count \(c) at byte \(o) exceeds the limit of \(l)"
        case let .tooLong(what, n, l, o): return "\(what) of \(n) bytes at byte \(o) exceeds the limit of \(l)"
        case let .invalid(s, o): return "\(s) at byte \(o)"
        case let .tensor(name, s, o): return "tensor '\(name)' (info at byte \(o)): \(s)"
        }
    }
}

/// A validated, memory-mapped GGUF file.
public final class GGUFFile: TensorContainer, @unchecked Sendable {
    /// Hard caps, applied before allocating.
    public static let maxTensors = 1 << 20
    public static let maxKeyValues = 1 << 20
    /// ggml's GGML_MAX_DIMS.
    public static let maxDimensions = 4
    /// Tensor names: the spec's 64 bytes.
    public static let maxNameLength = 64
    /// Keys: the spec's 65,535 bytes.
    public static let maxKeyLength = 65_535
    /// Any one string value.
    public static let maxStringLength = 16 << 20
    /// Elements of one array, and of all arrays of a file together (a large LLM vocabulary is a few
    /// hundred thousand strings; each element costs about 24 bytes in memory).
    public static let maxArrayElements = 8 << 20
    public static let maxTotalArrayElements = 8 << 20
    /// Arrays inside arrays.
    public static let maxArrayDepth = 4
    /// `general.alignment` must be a power of two, at least 8, no larger than this.
    public static let maxAlignment = 1 << 30

    public let path: String
    public var format: ContainerFormat { .gguf }
    /// Tensors in file (tensor-info) order, with PyTorch-order shapes.
    public let tensors: [TensorEntry]
    public var objects: [(name: String, value: String)] { [] }
    /// Every key/value pair in file order, values rendered as text (arrays of more than 16 elements
    /// summarised as `[N × type]`).
    public let metadata: [(key: String, value: String)]
    /// Every key/value pair in file order, typed.
    public let values: [(key: String, value: GGUFValue)]
    public let version: UInt32
    public let alignment: Int
    /// Offset of the data section in the file.
    public let dataStart: Int
    /// Byte range of each tensor in the file, parallel to `tensors`.
    public let ranges: [Range<Int>]

    private let file: MappedFile

    /// Validates `file`. Throws `GGUFError` (or `ArithmeticOverflow`).
    public init(file: MappedFile) throws {
        self.file = file
        path = file.path
        var r = Reader(bytes: file.bytes)
        guard file.count >= 4, file.bytes.prefix(4).elementsEqual(Array("GGUF".utf8)) else { throw GGUFError.badMagic }
        r.position = 4
        let v = try r.u32("the version")
        if v & 0xFFFF == 0 && v != 0 { throw GGUFError.bigEndian(v) }
        guard v == 2 || v == 3 else { throw GGUFError.unsupportedVersion(v) }
        version = v
        let countAt = r.position
        let tensorCount = try r.u64("the tensor count")
        let kvCount = try r.u64("the key/value count")
        // Smallest tensor info: empty name (8) + n_dims (4) + type (4) + offset (8); smallest pair:
        // empty key (8) + type (4) + one byte.
        try GGUFFile.checkCount(tensorCount, "tensor", limit: GGUFFile.maxTensors, minBytes: 24, remaining: r.remaining, offset: countAt)
        try GGUFFile.checkCount(kvCount, "key/value", limit: GGUFFile.maxKeyValues, minBytes: 13, remaining: r.remaining, offset: countAt + 8)

        var values: [(key: String, value: GGUFValue)] = []
        var keys = Set<String>()
        var budget = GGUFFile.maxTotalArrayElements
        var alignment = 32
        for _ in 0..<Int(kvCount) {
            let at = r.position
            let key = try r.string("a key", limit: GGUFFile.maxKeyLength)
            guard keys.insert(key).inserted else { throw GGUFError.invalid("duplicate key '\(key)'", offset: at) }
            let typeAt = r.position
            let type = try r.u32("the type of '\(key)'")
            let value = try r.value(type: type, at: typeAt, depth: 0, budget: &budget)
            if key == "general.alignment" {
                guard case .u32(let a) = value else { throw GGUFError.invalid("general.alignment is not a u32", offset: typeAt) }
                // The spec asks for a multiple of 8; ggml for a power of two.
                guard a >= 8, a & (a - 1) == 0, Int(a) <= GGUFFile.maxAlignment else {
                    throw GGUFError.invalid("general.alignment \(a) is not a power of two from 8 to \(GGUFFile.maxAlignment)", offset: typeAt)
                }
                alignment = Int(a)
            }
            values.append((key, value))
        }
        self.values = values
        self.alignment = alignment
        metadata = values.map { ($0.key, GGUFFile.render($0.value)) }

        var infos: [(entry: TensorEntry, offset: Int, infoAt: Int)] = []
        var names = Set<String>()
        for _ in 0..<Int(tensorCount) {
            let at = r.position
            let name = try r.string("a tensor name", limit: GGUFFile.maxNameLength)
            guard names.insert(name).inserted else { throw GGUFError.tensor(name, "duplicate tensor name", offset: at) }
            let nd = try r.u32("the dimension count of '\(name)'")
            guard nd <= UInt32(GGUFFile.maxDimensions) else {
                throw GGUFError.tensor(name, "\(nd) dimensions (at most \(GGUFFile.maxDimensions))", offset: at)
            }
            var ne: [Int] = []
            for _ in 0..<Int(nd) {
                let d = try r.u64("a dimension of '\(name)'")
                guard d <= UInt64(Int64.max) else { throw GGUFError.tensor(name, "dimension \(d) is out of range", offset: at) }
                ne.append(Int(d))
            }
            let code = try r.u32("the type of '\(name)'")
            guard let dtype = DType(ggmlType: code) else {
                throw GGUFError.tensor(name, "ggml type \(code) (\(DType.ggmlTypeName(code))) is not supported", offset: at)
            }
            let offset = try r.u64("the data offset of '\(name)'")
            guard offset <= UInt64(Int.max) else { throw GGUFError.tensor(name, "data offset \(offset) is out of range", offset: at) }
            let entry: TensorEntry
            do { entry = try TensorEntry(name: name, dtype: dtype, shape: ne.reversed()) } catch let e as BlockQuantizationError {
                throw GGUFError.tensor(name, "\(e)", offset: at)
            } catch {
                throw GGUFError.tensor(name, "shape \(Array(ne.reversed())) overflows", offset: at)
            }
            guard Int(offset) % alignment == 0 else {
                throw GGUFError.tensor(name, "data offset \(offset) is not a multiple of the alignment \(alignment)", offset: at)
            }
            infos.append((entry, Int(offset), at))
        }

        let infoEnd = r.position
        let start = try Checked.alignUp(infoEnd, alignment)
        dataStart = start
        var ranges: [Range<Int>] = []
        for info in infos {
            let begin = try Checked.add(start, info.offset, "the data start of \(info.entry.name)")
            let end = try Checked.add(begin, info.entry.byteCount, "the data end of \(info.entry.name)")
            guard end <= file.count else {
                throw GGUFError.tensor(info.entry.name, "data \(begin)..<\(end) runs past the end of the \(file.count)-byte file", offset: info.infoAt)
            }
            ranges.append(begin..<end)
        }
        // Empty tensors hold no bytes and overlap nothing.
        let order = ranges.indices.filter { !ranges[$0].isEmpty }
            .sorted { (ranges[$0].lowerBound, ranges[$0].upperBound) < (ranges[$1].lowerBound, ranges[$1].upperBound) }
        for (a, b) in zip(order, order.dropFirst()) where ranges[b].lowerBound < ranges[a].upperBound {
            throw GGUFError.tensor(infos[b].entry.name, "data \(ranges[b]) overlaps the data of '\(infos[a].entry.name)' (\(ranges[a]))", offset: infos[b].infoAt)
        }
        tensors = infos.map(\.entry)
        self.ranges = ranges
    }

    private static func checkCount(_ n: UInt64, _ what: String, limit: Int, minBytes: Int, remaining: Int, offset: Int) throws {
        guard n <= UInt64(limit) else { throw GGUFError.tooMany(what: what, count: n, limit: limit, offset: offset) }
        guard n * UInt64(minBytes) <= UInt64(remaining) else {
            throw GGUFError.invalid("\(what) count \(n) cannot fit in the \(remaining) bytes that follow", offset: offset)
        }
    }

    /// A value as text for listings.
    static func render(_ v: GGUFValue) -> String {
        switch v {
        case .u8(let x): return String(x)
        case .i8(let x): return String(x)
        case .u16(let x): return String(x)
        case .i16(let x): return String(x)
        case .u32(let x): return String(x)
        case .i32(let x): return String(x)
        case .u64(let x): return String(x)
        case .i64(let x): return String(x)
        case .f32(let x): return "\(x)"
        case .f64(let x): return "\(x)"
        case .bool(let x): return x ? "true" : "false"
        case .string(let s): return s
        case let .array(items, type):
            if items.count > 16 { return "[\(items.count) × \(Reader.typeName(type))]" }
            return "[" + items.map { if case .string(let s) = $0 { return "\"\(s)\"" } else { return render($0) } }.joined(separator: ", ") + "]"
        }
    }

    /// The typed value of `key`, if present.
    public func value(_ key: String) -> GGUFValue? { values.first { $0.key == key }?.value }

    public func release(_ index: Int) { file.release(ranges[index]) }

    public func checkUnchanged() throws { try file.checkUnchanged() }

    public var mappedFiles: [MappedFile] { [file] }

    public func verbatimRange(of index: Int) -> (file: MappedFile, range: Range<Int>)? { (file, ranges[index]) }

    public func bytes(of index: Int) throws -> RawBytes { file.slice(ranges[index]) }
}

/// A bounds-checked little-endian cursor over the file.
private struct Reader {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    var remaining: Int { bytes.count - position }

    mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else { throw GGUFError.truncated(what: what(), offset: position, needed: n, available: remaining) }
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
    }

    mutating func integer<T: FixedWidthInteger>(_ type: T.Type, _ what: @autoclosure () -> String) throws -> T {
        let b = try take(MemoryLayout<T>.size, what())
        var v: T = 0
        for k in (0..<MemoryLayout<T>.size).reversed() { v = v << 8 | T(truncatingIfNeeded: b[k]) }
        return v
    }

    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 { try integer(UInt32.self, what()) }
    mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 { try integer(UInt64.self, what()) }

    /// A GGUF string: u64 length (checked against `limit` and the bytes left), then UTF-8.
    mutating func string(_ what: @autoclosure () -> String, limit: Int) throws -> String {
        let at = position
        let n = try u64("the length of \(what())")
        guard n <= UInt64(limit) else { throw GGUFError.tooLong(what: what(), length: n, limit: limit, offset: at) }
        let b = try take(Int(n), what())
        guard let s = String(validating: b, as: UTF8.self) else { throw GGUFError.invalid("\(what()) is not valid UTF-8", offset: at + 8) }
        return s
    }

    static func typeName(_ t: UInt32) -> String {
        ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"][safe: Int(t)] ?? "type \(t)"
    }

    /// Smallest encoded size of one value of type `t` (for checking counts before allocating).
    static func minimumSize(_ t: UInt32) -> Int {
        switch t {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 8, 10, 11, 12: return 8
        case 9: return 12
        default: return 1
        }
    }

    mutating func value(type: UInt32, at: Int, depth: Int, budget: inout Int) throws -> GGUFValue {
        switch type {
        case 0: return .u8(try integer(UInt8.self, "a u8"))
        case 1: return .i8(try integer(Int8.self, "an i8"))
        case 2: return .u16(try integer(UInt16.self, "a u16"))
        case 3: return .i16(try integer(Int16.self, "an i16"))
        case 4: return .u32(try integer(UInt32.self, "a u32"))
        case 5: return .i32(try integer(Int32.self, "an i32"))
        case 6: return .f32(Float(bitPattern: try integer(UInt32.self, "an f32")))
        case 7:
            let b = try integer(UInt8.self, "a bool")
            guard b <= 1 else { throw GGUFError.invalid("bool value \(b) (must be 0 or 1)", offset: position - 1) }
            return .bool(b == 1)
        case 8: return .string(try string("a string value", limit: GGUFFile.maxStringLength))
        case 9:
            guard depth < GGUFFile.maxArrayDepth else { throw GGUFError.invalid("arrays nested deeper than \(GGUFFile.maxArrayDepth)", offset: at) }
            let elementAt = position
            let element = try u32("an array element type")
            guard element <= 12 else { throw GGUFError.invalid("unknown array element type \(element)", offset: elementAt) }
            let countAt = position
            let count = try u64("an array length")
            guard count <= UInt64(GGUFFile.maxArrayElements), Int(count) <= budget else {
                throw GGUFError.tooMany(what: "array element", count: count, limit: min(GGUFFile.maxArrayElements, budget), offset: countAt)
            }
            guard count * UInt64(Reader.minimumSize(element)) <= UInt64(remaining) else {
                throw GGUFError.invalid("array of \(count) \(Reader.typeName(element)) cannot fit in the \(remaining) bytes that follow", offset: countAt)
            }
            budget -= Int(count)
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(count))
            for _ in 0..<Int(count) { items.append(try value(type: element, at: position, depth: depth + 1, budget: &budget)) }
            return .array(items, elementType: element)
        case 10: return .u64(try integer(UInt64.self, "a u64"))
        case 11: return .i64(try integer(Int64.self, "an i64"))
        case 12: return .f64(Double(bitPattern: try integer(UInt64.self, "an f64")))
        default: throw GGUFError.invalid("unknown value type \(type)", offset: at)
        }
    }
}

extension Array {
    fileprivate subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
