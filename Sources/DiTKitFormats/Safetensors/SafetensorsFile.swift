// safetensors: an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data.
//
// Validation follows the reference implementation (huggingface/safetensors `tensor.rs`
// `read_metadata` / `Metadata::validate`), in its order, and adds what it lets through:
// duplicate names, unknown dtypes, unknown fields, non-integer or negative shapes and
// non-string metadata are refused. Beyond the reference's 100 MB header limit, a header may list
// at most `maxTensors` tensors of at most `maxRank` dimensions, and it is parsed one tensor at a
// time (memory follows the tensors, not the JSON tree); offsets are added with overflow checks.
// The file is memory-mapped; tensors are zero-copy views.
import DiTKitCore

/// Why a safetensors file was refused (names follow the reference `SafeTensorError`).
public enum SafetensorsError: Error, CustomStringConvertible, Sendable {
    case headerTooSmall
    case headerTooLarge(Int, limit: Int)
    case invalidHeaderLength(Int, fileSize: Int)
    case invalidHeader(String)
    case invalidHeaderDeserialization(String)
    case invalidTensor(String, String)
    case invalidOffset(String, expectedBegin: Int, found: Int)
    case tensorInvalidInfo(String, expectedBytes: Int, found: Int)
    case metadataIncompleteBuffer(dataEnd: Int, fileSize: Int)
    case tooManyTensors(limit: Int)

    public var description: String {
        switch self {
        case .headerTooSmall: return "safetensors file too small for its 8-byte header length"
        case let .headerTooLarge(n, l): return "safetensors header length \(n) exceeds the limit of \(l) bytes"
        case let .invalidHeaderLength(n, f): return "safetensors header length \(n) runs past the end of the \(f)-byte file"
        case .invalidHeader(let w): return "invalid safetensors header: \(w)"
        case .invalidHeaderDeserialization(let w): return "invalid safetensors header JSON: \(w)"
        case let .invalidTensor(name, w): return "tensor \(TerminalText.quoted(name)): \(w)"
        case let .invalidOffset(name, e, f): return "tensor \(TerminalText.quoted(name)): data begins at \(f) but must begin at \(e) (holes and overlaps are not allowed)"
        case let .tensorInvalidInfo(name, e, f): return "tensor \(TerminalText.quoted(name)): data_offsets span \(f) bytes but dtype and shape need \(e)"
        case let .metadataIncompleteBuffer(end, size): return "tensor data ends at byte \(end) but the file has \(size) bytes"
        case let .tooManyTensors(l): return "safetensors header lists more than \(l) tensors (DiTKit's limit)"
        }
    }
}

/// A validated, memory-mapped safetensors file.
public final class SafetensorsFile: TensorContainer, @unchecked Sendable {
    /// The reference limit on the header size (the safetensors library's `MAX_HEADER_SIZE`).
    public static let maxHeaderSize = 100_000_000
    /// Most tensors a file may list (the reference has no limit; a header of 100 MB could list
    /// 1.5 million). Sharded checkpoints of the largest models hold a few thousand per file.
    public static let maxTensors = 200_000
    /// Most JSON values in one member of the header: a tensor with up to `maxRank` dimensions,
    /// or `__metadata__` with up to ~65,000 entries.
    static let maxMemberValues = 1 << 17
    /// Most dimensions a tensor may have (NumPy's limit; torch's kernels stop earlier).
    public static let maxRank = 64
    /// Longest tensor name, in UTF-8 bytes (the same limit as for torch checkpoints).
    public static let maxNameBytes = 4096
    /// Largest dimension the schema allows (2^48 - 1).
    static let maxDimension = (1 << 48) - 1

    public let path: String
    public var format: ContainerFormat { .safetensors }
    /// Tensors in data-offset order.
    public let tensors: [TensorEntry]
    public var objects: [(name: String, value: String)] { [] }
    /// `__metadata__`, in header order.
    public let metadata: [(key: String, value: String)]
    /// Offset of the data buffer in the file (8 + N).
    public let dataStart: Int
    /// Byte range of each tensor relative to `dataStart`, parallel to `tensors`.
    public let ranges: [Range<Int>]

    private let file: MappedFile

    /// Validates `file`. Throws `SafetensorsError`.
    public init(file: MappedFile) throws {
        self.file = file
        path = file.path
        let bytes = file.bytes
        guard bytes.count >= 8 else { throw SafetensorsError.headerTooSmall }
        var n64: UInt64 = 0
        for k in (0..<8).reversed() { n64 = n64 << 8 | UInt64(bytes[k]) }
        guard n64 <= UInt64(SafetensorsFile.maxHeaderSize) else {
            throw SafetensorsError.headerTooLarge(n64 > UInt64(Int.max) ? Int.max : Int(n64), limit: SafetensorsFile.maxHeaderSize)
        }
        let n = Int(n64)
        guard 8 + n <= bytes.count else { throw SafetensorsError.invalidHeaderLength(n, fileSize: bytes.count) }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + n)])
        guard String(validating: headerBytes, as: UTF8.self) != nil else { throw SafetensorsError.invalidHeader("not valid UTF-8") }

        // The header is read one member at a time, so memory follows the tensors listed rather
        // than the JSON tree (a tree costs ~15 times its text).
        var meta: [(key: String, value: String)] = []
        var infos: [(entry: TensorEntry, range: Range<Int>)] = []
        do {
            try JSONReader.forEachMember(in: headerBytes, maxMembers: SafetensorsFile.maxTensors + 2,
                                         maxMemberValues: SafetensorsFile.maxMemberValues) { name, value in
                if name == "__metadata__" {
                    guard case .object(let m) = value else { throw SafetensorsError.invalidHeaderDeserialization("__metadata__ is not an object") }
                    for (k, v) in m {
                        guard case .string(let s) = v else { throw SafetensorsError.invalidHeaderDeserialization("__metadata__ value \(TerminalText.quoted(k)) is not a string") }
                        meta.append((k, s))
                    }
                    return
                }
                guard infos.count < SafetensorsFile.maxTensors else { throw SafetensorsError.tooManyTensors(limit: SafetensorsFile.maxTensors) }
                guard name.utf8.count <= SafetensorsFile.maxNameBytes else {
                    throw SafetensorsError.invalidTensor(name, "name longer than \(SafetensorsFile.maxNameBytes) bytes")
                }
                infos.append(try SafetensorsFile.tensorInfo(name, value))
            }
        } catch let e as JSONError {
            throw SafetensorsError.invalidHeaderDeserialization("\(e.message) at header byte \(e.offset)")
        }

        infos.sort { ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound) }
        var end = 0
        for info in infos {
            guard info.range.lowerBound == end else { throw SafetensorsError.invalidOffset(info.entry.name, expectedBegin: end, found: info.range.lowerBound) }
            guard info.range.count == info.entry.byteCount else {
                throw SafetensorsError.tensorInvalidInfo(info.entry.name, expectedBytes: info.entry.byteCount, found: info.range.count)
            }
            end = info.range.upperBound
        }
        dataStart = 8 + n
        let (dataEnd, overflow) = dataStart.addingReportingOverflow(end)
        guard !overflow else { throw SafetensorsError.invalidHeader("overflow computing buffer size (data ends at \(end) bytes past byte \(dataStart))") }
        guard dataEnd == bytes.count else { throw SafetensorsError.metadataIncompleteBuffer(dataEnd: dataEnd, fileSize: bytes.count) }
        tensors = infos.map(\.entry)
        ranges = infos.map(\.range)
        metadata = meta
    }

    private static func tensorInfo(_ name: String, _ value: JSONValue) throws -> (entry: TensorEntry, range: Range<Int>) {
        guard case .object(let fields) = value else { throw SafetensorsError.invalidTensor(name, "description is not an object") }
        var dtype: DType?
        var shape: [Int]?
        var offsets: [Int]?
        for (k, v) in fields {
            switch k {
            case "dtype":
                guard case .string(let s) = v else { throw SafetensorsError.invalidTensor(name, "dtype is not a string") }
                guard let d = DType(safetensorsName: s) else { throw SafetensorsError.invalidTensor(name, "unknown dtype \(TerminalText.quoted(s))") }
                dtype = d
            case "shape":
                shape = try integers(v, name: name, what: "shape", max: maxDimension)
            case "data_offsets":
                offsets = try integers(v, name: name, what: "data_offsets", max: Int.max)
            default:
                throw SafetensorsError.invalidTensor(name, "unknown field \(TerminalText.quoted(k))")
            }
        }
        guard let dtype else { throw SafetensorsError.invalidTensor(name, "missing dtype") }
        guard let shape else { throw SafetensorsError.invalidTensor(name, "missing shape") }
        guard shape.count <= maxRank else { throw SafetensorsError.invalidTensor(name, "shape has \(shape.count) dimensions (at most \(maxRank))") }
        guard let offsets else { throw SafetensorsError.invalidTensor(name, "missing data_offsets") }
        guard offsets.count == 2 else { throw SafetensorsError.invalidTensor(name, "data_offsets must hold two numbers") }
        guard offsets[1] >= offsets[0] else { throw SafetensorsError.invalidTensor(name, "data_offsets end before they begin") }
        let entry: TensorEntry
        do { entry = try TensorEntry(name: name, dtype: dtype, shape: shape) } catch {
            throw SafetensorsError.invalidTensor(name, "shape \(shape) overflows")
        }
        return (entry, offsets[0]..<offsets[1])
    }

    private static func integers(_ v: JSONValue, name: String, what: String, max: Int) throws -> [Int] {
        guard case .array(let items) = v else { throw SafetensorsError.invalidTensor(name, "\(what) is not an array") }
        return try items.map { item in
            guard case .int(let i) = item, i >= 0, i <= max else {
                throw SafetensorsError.invalidTensor(name, "\(what) holds a value that is not a non-negative integer in range")
            }
            return i
        }
    }

    public func checkUnchanged() throws { try file.checkUnchanged() }

    public var mappedFiles: [MappedFile] { [file] }

    public func release(_ index: Int) {
        file.release((dataStart + ranges[index].lowerBound)..<(dataStart + ranges[index].upperBound))
    }

    public func verbatimRange(of index: Int) -> (file: MappedFile, range: Range<Int>)? {
        (file, (dataStart + ranges[index].lowerBound)..<(dataStart + ranges[index].upperBound))
    }

    public func bytes(of index: Int) throws -> RawBytes {
        let r = ranges[index]
        return file.slice((dataStart + r.lowerBound)..<(dataStart + r.upperBound))
    }
}
