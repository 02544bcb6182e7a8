// The pre-1.6 `torch.save` stream (`_use_new_zipfile_serialization=False`).
//
// Layout (torch/serialization.py `_legacy_save`), five pickles and then raw storages:
//   1. magic number 0x1950a86a20f9469cfc6c (LONG1 of 10 bytes)
//   2. protocol version 1001
//   3. sys_info {protocol_version, little_endian, type_sizes}
//   4. the main pickle; persistent ids ('storage', type, root_key, location, numel, view)
//   5. the list of storage keys, in the order their data follows
//   then for each key: int64 LE element count, then count * itemsize bytes, little-endian.
import DiTKitCore

/// A legacy-stream torch checkpoint.
public final class TorchLegacyFile: TensorContainer, @unchecked Sendable {
    public let path: String
    public var format: ContainerFormat { .torchLegacy }
    public let tensors: [TensorEntry]
    public let objects: [(name: String, value: String)]
    public let metadata: [(key: String, value: String)]

    /// The first bytes of a legacy file written at pickle protocol 2.
    public static let magicPrefix: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E]
    static let magicNumber: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    private let file: MappedFile
    private let resolved: [ResolvedTensor]
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
        let main = try PickleMachine.load(bytes, from: sysInfo.endOffset)
        let keysTree = try PickleMachine.load(bytes, from: main.endOffset)
        guard case .list(let keyList) = keysTree.root else { throw TorchError.legacy("storage key list is not a list", offset: main.endOffset) }

        let contents = try PickleTreeWalker.walk(main.root)
        // The element type of each root storage, from the tensors that use it.
        var rootTypes: [String: (dtype: DType, count: Int)] = [:]
        for (_, t) in contents.tensors {
            guard let d = t.storage.dtype else { throw TorchError.legacy("untyped storage in a legacy file", offset: sysInfo.endOffset) }
            if let prior = rootTypes[t.storage.key], prior.dtype != d || prior.count != t.storage.count {
                throw TorchError.storageTypeConflict(t.storage.key)
            }
            rootTypes[t.storage.key] = (d, t.storage.count)
        }

        var offset = keysTree.endOffset
        var ranges: [String: Range<Int>] = [:]
        for item in keyList.items {
            guard case .string(let key) = item else { throw TorchError.legacy("storage key is a \(item.typeName)", offset: main.endOffset) }
            guard let (dtype, declared) = rootTypes[key] else {
                throw TorchError.legacy("storage '\(key)' has data but no tensor uses it (its element size is unknown)", offset: offset)
            }
            guard offset + 8 <= bytes.count else { throw TorchError.legacy("truncated before storage '\(key)'", offset: offset) }
            var n: UInt64 = 0
            for k in (0..<8).reversed() { n = n << 8 | UInt64(bytes[offset + k]) }
            let count = try Checked.int(n, "the size of storage \(key)")
            guard count == declared else {
                throw TorchError.legacy("storage '\(key)' has \(count) elements but the pickle declares \(declared)", offset: offset)
            }
            let size = try Checked.mul(count, dtype.itemSize, "the size of storage \(key)")
            let start = offset + 8
            guard size <= bytes.count - start else {
                throw TorchError.legacy("storage '\(key)' needs \(size) bytes but only \(bytes.count - start) remain", offset: start)
            }
            guard ranges[key] == nil else { throw TorchError.legacy("storage '\(key)' appears twice", offset: offset) }
            ranges[key] = start..<(start + size)
            offset = start + size
        }
        guard offset == bytes.count else {
            throw TorchError.legacy("\(bytes.count - offset) unexpected bytes after the last storage", offset: offset)
        }
        resolved = try TorchTensors.resolve(contents) { s in
            guard let r = ranges[s.key], let d = s.dtype else { throw TorchError.missingRecord(s.key) }
            if let v = s.legacyView {
                let end = try Checked.add(v.offset, v.count, "a legacy view")
                guard end <= r.count / d.itemSize else { throw TorchError.viewOutOfBounds(tensor: s.key, needed: end, available: r.count / d.itemSize) }
                return v.count * d.itemSize
            }
            return r.count
        }
        storages = ranges
        tensors = resolved.map(\.entry)
        objects = contents.objects
        metadata = [("protocol_version", "1001")]
    }

    public func release(_ index: Int) {
        if let r = storages[resolved[index].record.storage.key] { file.release(r) }
    }

    public func bytes(of index: Int) throws -> RawBytes {
        let t = resolved[index]
        guard let r = storages[t.record.storage.key] else { throw TorchError.missingRecord(t.record.storage.key) }
        var range = r
        if let v = t.record.storage.legacyView {
            let item = t.entry.dtype.itemSize
            range = (r.lowerBound + v.offset * item)..<(r.lowerBound + (v.offset + v.count) * item)
        }
        return TorchTensors.materialize(t, storage: file.slice(range), bigEndian: false)
    }
}
