// The pre-1.6 `torch.save` stream (`_use_new_zipfile_serialization=False`).
//
// Layout (torch/serialization.py `_legacy_save` / `_legacy_load`), five pickles and then raw storages:
//   1. magic number 0x1950a86a20f9469cfc6c (LONG1 of 10 bytes; decimal text at protocols 0-1)
//   2. protocol version 1001
//   3. sys_info {protocol_version, little_endian, type_sizes}
//   4. the main pickle; persistent ids ('storage', type, root_key, location, numel, view), where
//      view is None or (view_key, offset, size) in elements of the storage's type
//   5. the list of root storage keys, in the order their data follows
//   then for each key: int64 LE element count, then count * itemsize bytes, little-endian.
// The pickles may use any protocol torch.save was given (`pickle_protocol`).
import DiTKitCore

/// A legacy-stream torch checkpoint.
public final class TorchLegacyFile: TensorContainer, @unchecked Sendable {
    public let path: String
    public var format: ContainerFormat { .torchLegacy }
    public let tensors: [TensorEntry]
    public let objects: [(name: String, value: String)]
    public let metadata: [(key: String, value: String)]

    static let magicNumber: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    /// Whether `bytes` starts with the legacy magic number pickled at any protocol.
    public static func hasMagicNumber(_ bytes: UnsafeRawBufferPointer) -> Bool {
        // The magic pickle is at most 33 bytes (protocol 0 text, or PROTO + FRAME + LONG1 + STOP).
        var limits = PickleLimits()
        limits.maxStack = 8
        limits.maxMemo = 8
        limits.maxNodes = 8
        limits.maxStringBytes = 64
        let head = UnsafeRawBufferPointer(rebasing: bytes.prefix(64))
        guard let magic = try? PickleMachine.load(head, from: 0, limits: limits), case .bigInt(let m) = magic.root else { return false }
        return m == magicNumber
    }

    private let file: MappedFile
    private let resolved: [ResolvedTensor]
    /// Byte range in the file of the storage each tensor reads (a view: its slice of the root).
    private let spans: [Range<Int>]
    /// Root storage key -> byte range of its data in the file.
    private let storages: [String: Range<Int>]

    /// Parses the stream in `file`. Throws `TorchError`, `PickleError`, `WalkError`.
    public init(file: MappedFile) throws {
        self.file = file
        path = file.path
        let bytes = file.bytes

        let magic = try PickleMachine.load(bytes, from: 0)
        guard case .bigInt(let m) = magic.root, m == TorchLegacyFile.magicNumber else {
            throw TorchError.legacy("wrong magic number", offset: 0)
        }
        let proto = try PickleMachine.load(bytes, from: magic.endOffset)
        guard case .int(1001) = proto.root else { throw TorchError.legacy("unsupported protocol version (expected 1001)", offset: magic.endOffset) }
        let sysInfo = try PickleMachine.load(bytes, from: proto.endOffset)
        guard case .dict = sysInfo.root else { throw TorchError.legacy("sys_info is not a dict", offset: proto.endOffset) }
        let main = try PickleMachine.load(bytes, from: sysInfo.endOffset, storageIDs: .legacy)
        let keysTree = try PickleMachine.load(bytes, from: main.endOffset)
        guard case .list(let keyList) = keysTree.root else { throw TorchError.legacy("storage key list is not a list", offset: main.endOffset) }

        let contents = try PickleTreeWalker.walk(main.root)
        // Every reference to a root storage must agree on its type and size, and a view key must
        // name one view only and no root storage. torch resolves such conflicts by whichever
        // reference its unpickler met first (or drops the data); DiTKit refuses them rather than
        // guess (no torch.save writes them).
        var rootTypes: [String: (dtype: DType, count: Int)] = [:]
        var views: [String: StorageReference] = [:]
        for (_, t) in contents.tensors {
            let s = t.storage
            guard let d = s.dtype else { throw TorchError.legacy("untyped storage in a legacy file", offset: sysInfo.endOffset) }
            if let prior = rootTypes[s.key], prior.dtype != d || prior.count != s.count {
                throw TorchError.storageTypeConflict(s.key)
            }
            rootTypes[s.key] = (d, s.count)
            if let v = s.legacyView {
                if let prior = views[v.key], prior != s {
                    throw TorchError.legacy("view key \(TerminalText.quoted(v.key)) is declared twice, with different storages or bounds", offset: sysInfo.endOffset)
                }
                views[v.key] = s
            }
        }
        for key in views.keys where rootTypes[key] != nil {
            throw TorchError.legacy("view key \(TerminalText.quoted(key)) is also a storage key", offset: sysInfo.endOffset)
        }

        var offset = keysTree.endOffset
        var ranges: [String: Range<Int>] = [:]
        for item in keyList.items {
            guard case .string(let key) = item else { throw TorchError.legacy("storage key is a \(item.typeName)", offset: main.endOffset) }
            guard let (dtype, declared) = rootTypes[key] else {
                throw TorchError.legacy("storage \(TerminalText.quoted(key)) has data but no tensor uses it (its element size is unknown)", offset: offset)
            }
            guard bytes.count - offset >= 8 else { throw TorchError.legacy("truncated before storage \(TerminalText.quoted(key))", offset: offset) }
            var n: UInt64 = 0
            for k in (0..<8).reversed() { n = n << 8 | UInt64(bytes[offset + k]) }
            let count = try Checked.int(n, "the size of storage \(key)")
            guard count == declared else {
                throw TorchError.legacy("storage \(TerminalText.quoted(key)) has \(count) elements but the pickle declares \(declared)", offset: offset)
            }
            let size = try Checked.mul(count, dtype.itemSize, "the size of storage \(key)")
            let start = offset + 8
            guard size <= bytes.count - start else {
                throw TorchError.legacy("storage \(TerminalText.quoted(key)) needs \(size) bytes but only \(bytes.count - start) remain", offset: start)
            }
            guard ranges[key] == nil else { throw TorchError.legacy("storage \(TerminalText.quoted(key)) appears twice", offset: offset) }
            ranges[key] = start..<(start + size)
            offset = start + size
        }
        guard offset == bytes.count else {
            throw TorchError.legacy("\(bytes.count - offset) unexpected bytes after the last storage", offset: offset)
        }
        resolved = try TorchTensors.resolve(contents, fileSize: bytes.count) { try TorchLegacyFile.span(of: $0, in: ranges).count }
        spans = try resolved.map { try TorchLegacyFile.span(of: $0.record.storage, in: ranges) }
        storages = ranges
        tensors = resolved.map(\.entry)
        objects = contents.objects
        metadata = [("protocol_version", "1001")]
    }

    /// The bytes a storage reference makes available: the whole root, or a view's slice of it.
    /// The view's offset and size count elements of the storage's type (not the tensor's: a
    /// `_rebuild_tensor_v3` tensor may read the view as another dtype). Like torch, which slices
    /// the root as a Python slice, a view reaching past the root's end is cut short there.
    /// `roots` maps root storage keys to their bytes in the file. Throws `TorchError.missingRecord`.
    static func span(of s: StorageReference, in roots: [String: Range<Int>]) throws -> Range<Int> {
        guard let root = roots[s.key], let itemSize = s.dtype?.itemSize else { throw TorchError.missingRecord(s.key) }
        guard let v = s.legacyView else { return root }
        func saturating(_ a: Int, _ b: Int) -> Int { let (r, o) = a.multipliedReportingOverflow(by: b); return o ? Int.max : r }
        let length = root.count
        let lo = min(saturating(v.offset, itemSize), length)
        let (end, o) = saturating(v.offset, itemSize).addingReportingOverflow(saturating(v.count, itemSize))
        let hi = max(lo, min(o ? Int.max : end, length))
        return (root.lowerBound + lo)..<(root.lowerBound + hi)
    }

    public func checkUnchanged() throws { try file.checkUnchanged() }

    public var mappedFiles: [MappedFile] { [file] }

    public func release(_ index: Int) {
        if let r = storages[resolved[index].record.storage.key] { file.release(r) }
    }

    public func bytes(of index: Int) throws -> RawBytes {
        TorchTensors.materialize(resolved[index], storage: file.slice(spans[index]), swapUnit: 1)
    }
}
