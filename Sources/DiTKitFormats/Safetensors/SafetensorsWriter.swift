// Writing safetensors deterministically: tensors sorted by dtype alignment (descending) then
// name, as the reference writer does, so every tensor is naturally aligned; the header is
// padded with spaces to a multiple of 8; metadata keys sorted.
import DiTKitCore

/// A tensor to write: its bytes are produced on demand, one tensor at a time.
public struct SafetensorsItem: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Produces the tensor's little-endian C-order bytes (exactly `product(shape) * itemSize`).
    public var bytes: @Sendable () throws -> RawBytes

    public init(name: String, dtype: DType, shape: [Int], bytes: @escaping @Sendable () throws -> RawBytes) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }
}

public enum SafetensorsWriter {
    /// Writes `items` and `metadata` to `file` (an already open output). Throws on duplicate
    /// names, wrong byte counts and write errors.
    public static func write(_ items: [SafetensorsItem], metadata: [(String, String)], to file: OutputFile) throws {
        let sorted = items.sorted { a, b in
            a.dtype.itemSize != b.dtype.itemSize ? a.dtype.itemSize > b.dtype.itemSize : a.name < b.name
        }
        var seen = Set<String>()
        var members: [(String, JSONValue)] = []
        if !metadata.isEmpty {
            members.append(("__metadata__", .object(metadata.sorted { $0.0 < $1.0 }.map { ($0.0, .string($0.1)) })))
        }
        var offset = 0
        for it in sorted {
            guard seen.insert(it.name).inserted else { throw CheckpointError.inconsistent("duplicate tensor name \(TerminalText.quoted(it.name))") }
            let n = try Checked.mul(try Checked.product(it.shape), it.dtype.itemSize)
            members.append((it.name, .object([("dtype", .string(it.dtype.name)), ("shape", .array(it.shape.map { .int($0) })),
                                              ("data_offsets", .array([.int(offset), .int(offset + n)]))])))
            offset += n
        }
        var header = JSONWriter.bytes(.object(members), pretty: false)
        while header.count % 8 != 0 { header.append(0x20) }
        let n = UInt64(header.count)
        try file.write((0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) })
        try file.write(header)
        for it in sorted {
            let b = try it.bytes()
            let expected = it.shape.reduce(1, *) * it.dtype.itemSize
            guard b.count == expected else { throw CheckpointError.inconsistent("tensor \(TerminalText.quoted(it.name)) produced \(b.count) bytes, expected \(expected)") }
            try withExtendedLifetime(b) { try file.write(b.buffer) }
        }
    }
}
