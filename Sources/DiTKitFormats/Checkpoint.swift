// The common face of every container DiTKit reads: a list of named tensors in file order,
// non-tensor objects, string metadata, and a way to get a tensor's C-contiguous
// little-endian bytes. Containers are recognised by content, never by extension.
import DiTKitCore

/// Container formats DiTKit reads.
public enum ContainerFormat: String, Sendable, Codable {
    case torchZip = "torch-zip"
    case torchLegacy = "torch-legacy"
    case safetensors
    case gguf
    case ditkit
}

/// A tensor's name, type and shape as listed by a container.
public struct TensorEntry: Sendable, Equatable {
    /// Dotted path from the root (`blocks.0.attn.qkv.weight`, `opt.state.0.exp_avg`).
    public var name: String
    public var dtype: DType
    /// Sizes, outermost first (C order).
    public var shape: [Int]
    /// Product of `shape` (1 for a 0-d tensor).
    public var elementCount: Int
    /// Stored bytes: `elementCount * dtype.itemSize`, or whole blocks for a ggml block type.
    public var byteCount: Int

    /// Creates an entry; throws `ArithmeticOverflow` when the sizes overflow and
    /// `BlockQuantizationError` when a block type's last dimension does not divide into blocks.
    public init(name: String, dtype: DType, shape: [Int]) throws {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        elementCount = try Checked.product(shape, "the element count of \(TerminalText.quoted(name))")
        do { byteCount = try dtype.byteCount(shape: shape) } catch is ArithmeticOverflow { throw ArithmeticOverflow("the byte count of \(TerminalText.quoted(name))") }
    }
}

/// Something that holds named tensors.
public protocol TensorContainer: AnyObject, Sendable {
    /// The file or bundle this was read from.
    var path: String { get }
    var format: ContainerFormat { get }
    /// Tensors in file order.
    var tensors: [TensorEntry] { get }
    /// Non-tensor leaves (`args.lr` -> `0.0001`), in file order.
    var objects: [(name: String, value: String)] { get }
    /// Container metadata (`__metadata__` of safetensors, the archive version of a torch file).
    var metadata: [(key: String, value: String)] { get }
    /// The bytes of tensor `index` of `tensors`, C-contiguous and little-endian. Zero-copy
    /// where the file allows it. Throws when the data is missing or inconsistent.
    func bytes(of index: Int) throws -> RawBytes
    /// Drops the mapped pages behind tensor `index` from resident memory (a hint; data stays
    /// readable). Streaming readers call it after each tensor to keep memory flat.
    func release(_ index: Int)
    /// When tensor `index` is stored verbatim (C-contiguous, little-endian) in a file, that file
    /// and the byte range: writers can then copy it inside the kernel.
    func verbatimRange(of index: Int) -> (file: MappedFile, range: Range<Int>)?
    /// Throws `FileChangedWhileReading` when the mapped file shrank since it was opened: bytes read
    /// from it since then may be zeros instead of the file's (see `MappedFile`).
    func checkUnchanged() throws
    /// The mapped files the tensors are read from, in order (one, or every shard), so a whole-file
    /// hash can read them through the same mapping; empty when there is none to offer.
    var mappedFiles: [MappedFile] { get }
}

extension TensorContainer {
    public func release(_ index: Int) {}
    public func verbatimRange(of index: Int) -> (file: MappedFile, range: Range<Int>)? { nil }
    public func checkUnchanged() throws {}
    public var mappedFiles: [MappedFile] { [] }

    /// Index of the tensor called `name`.
    public func index(of name: String) -> Int? { tensors.firstIndex { $0.name == name } }

    /// The checksum of a tensor's C-contiguous little-endian bytes (`ditkit inspect --hash` for
    /// XXH3-128, `--sha256` for SHA-256). Throws when the file shrank while it was read (the hash
    /// would be of zeros).
    public func checksum(of index: Int, _ algorithm: ChecksumAlgorithm) throws -> String {
        let hex = algorithm.hex(try bytes(of: index))
        release(index)
        try checkUnchanged()
        return hex
    }

    /// SHA-256 of a tensor's C-contiguous little-endian bytes (`ditkit inspect --sha256`).
    public func sha256(of index: Int) throws -> String { try checksum(of: index, .sha256) }
}

/// Why a file is not something DiTKit reads.
public enum CheckpointError: Error, CustomStringConvertible, Sendable {
    case unrecognised(String)
    case unsupported(String)
    case inconsistent(String)

    public var description: String {
        switch self {
        case .unrecognised(let s), .unsupported(let s), .inconsistent(let s): return s
        }
    }
}

/// Opens any supported container, detected by content.
public enum Checkpoint {
    /// The container kind of the file at `path`, from its first bytes.
    public static func detect(_ bytes: UnsafeRawBufferPointer) throws -> ContainerFormat {
        func starts(_ prefix: [UInt8]) -> Bool { bytes.count >= prefix.count && bytes.prefix(prefix.count).elementsEqual(prefix) }
        if starts(Array("PYTORCH1".utf8)) {
            throw CheckpointError.unsupported("a pre-release 'PYTORCH1' archive; not supported")
        }
        if starts([0x50, 0x4B, 0x03, 0x04]) { return .torchZip }
        if starts(Array("GGUF".utf8)) { return .gguf }
        if starts([0x50, 0x4B, 0x05, 0x06]) { throw CheckpointError.unrecognised("an empty zip archive, not a checkpoint") }
        if bytes.count > 262, bytes[257..<262].elementsEqual(Array("ustar".utf8)) {
            throw CheckpointError.unsupported("a tar-format PyTorch checkpoint (torch < 0.4); not supported: load it with a recent torch and save it again")
        }
        if TorchLegacyFile.hasMagicNumber(bytes) { return .torchLegacy }
        if bytes.count >= 10 {
            var n: UInt64 = 0
            for k in (0..<8).reversed() { n = n << 8 | UInt64(bytes[k]) }
            let c = bytes[8]
            // A JSON object right after the length is safetensors, whatever the length says (the
            // validator then reports a bad length precisely); whitespace counts only with a sane length.
            if c == UInt8(ascii: "{") { return .safetensors }
            if n >= 2, n <= UInt64(SafetensorsFile.maxHeaderSize), c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { return .safetensors }
        }
        if starts([0x80]) || starts([UInt8(ascii: "(")]) || starts([UInt8(ascii: "}")]) || starts([UInt8(ascii: "c")]) || starts([UInt8(ascii: "]")]) {
            throw CheckpointError.unrecognised("a bare pickle, not a torch.save checkpoint (no zip container and no legacy magic number)")
        }
        if let first = bytes.first, first == UInt8(ascii: "<") {
            throw CheckpointError.unrecognised("starts with '<': looks like an HTML or XML page, not a checkpoint (a failed download?)")
        }
        let head = bytes.prefix(8).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
        throw CheckpointError.unrecognised("not a recognised checkpoint (torch zip, torch legacy, safetensors, GGUF or a .ditkit bundle); first bytes: \(head.isEmpty ? "(empty file)" : head)")
    }

    /// Opens the checkpoint at `path`: a file, a sharded-safetensors index, a `.ditkit` bundle, or a
    /// diffusers model folder (its `config.json` beside its weights). Errors are wrapped in
    /// `FileError` naming `path`.
    public static func open(_ path: String) throws -> any TensorContainer {
        try FileError.wrapping(path) {
            if FileSystem.isDirectory(path) {
                if FileSystem.exists(path + "/manifest.json") { return try NativeBundle(path: path) }
                if let weights = DiffusersFolder.weights(in: path) { return try open(weights) }
                let parts = DiffusersFolder.components(of: path)
                if !parts.isEmpty {
                    throw CheckpointError.unrecognised("a diffusers pipeline folder: give one of its models (\(parts.map { FileSystem.join(path, $0) }.joined(separator: ", ")))")
                }
                return try NativeBundle(path: path)
            }
            if ShardedSafetensors.isIndex(path) { return try ShardedSafetensors(index: path) }
            let file = try MappedFile(path: path)
            switch try detect(file.bytes) {
            case .torchZip: return try TorchArchive(file: file)
            case .torchLegacy: return try TorchLegacyFile(file: file)
            case .safetensors: return try SafetensorsFile(file: file)
            case .gguf: return try GGUFFile(file: file)
            case .ditkit: throw CheckpointError.unrecognised("a bundle must be a directory")
            }
        }
    }
}
