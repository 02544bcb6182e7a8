// What the zip and legacy torch readers share: resolving tensors against their storages,
// checking every view, and producing contiguous little-endian bytes.
import DiTKitCore

/// Why a torch checkpoint was refused.
public enum TorchError: Error, CustomStringConvertible, Sendable {
    case torchScript
    case missingRecord(String)
    case recordCompressed(String, method: UInt16)
    case recordSize(String, expected: Int, found: Int)
    case viewOutOfBounds(tensor: String, needed: Int, available: Int)
    case storageTypeConflict(String)
    case badByteOrder(String)
    case badVersion(String)
    case notATorchArchive(String)
    case legacy(String, offset: Int)

    public var description: String {
        switch self {
        case .torchScript:
            return "a TorchScript archive (constants.pkl / code/); refusing it: TorchScript runs code. Save the model's state_dict with torch.save instead"
        case .missingRecord(let r): return "missing storage record '\(r)'"
        case let .recordCompressed(r, m): return "storage record '\(r)' is compressed (method \(m)); torch.save stores storages uncompressed"
        case let .recordSize(r, e, f): return "storage record '\(r)' holds \(f) bytes but its storage needs \(e)"
        case let .viewOutOfBounds(t, n, a): return "tensor '\(t)' reads \(n) elements of a storage that holds \(a)"
        case .storageTypeConflict(let k): return "storage '\(k)' is used with two different dtypes"
        case .badByteOrder(let v): return "unknown byteorder record '\(v)' (expected 'little' or 'big')"
        case .badVersion(let v): return "unsupported archive version '\(v)'"
        case .notATorchArchive(let why): return "not a torch.save archive: \(why)"
        case let .legacy(what, o): return "corrupt legacy checkpoint at byte \(o): \(what)"
        }
    }
}

/// A tensor resolved against its storage.
struct ResolvedTensor {
    var entry: TensorEntry
    var record: TensorRecord
}

/// Shared logic for the two torch readers.
enum TorchTensors {
    /// Checks every view against its storage size and builds the entries, in file order.
    /// `storageElements` gives the number of elements (of the tensor's dtype) a storage key holds.
    static func resolve(_ contents: TreeContents, storageBytes: (StorageReference) throws -> Int) throws -> [ResolvedTensor] {
        var dtypes: [String: DType] = [:]
        var result: [ResolvedTensor] = []
        result.reserveCapacity(contents.tensors.count)
        for (name, record) in contents.tensors {
            if let d = dtypes[record.storage.key], d != record.dtype { throw TorchError.storageTypeConflict(record.storage.key) }
            dtypes[record.storage.key] = record.dtype
            let entry = try TensorEntry(name: name, dtype: record.dtype, shape: record.shape)
            let bytes = try storageBytes(record.storage)
            let available = bytes / record.dtype.itemSize
            if entry.elementCount > 0 {
                // Highest element touched: offset + sum((size-1) * stride).
                var last = record.storageOffset
                for (size, stride) in zip(record.shape, record.strides) {
                    last = try Checked.add(last, try Checked.mul(size - 1, stride, "a view extent of \(name)"), "a view extent of \(name)")
                }
                guard last < available else { throw TorchError.viewOutOfBounds(tensor: name, needed: last + 1, available: available) }
            }
            result.append(ResolvedTensor(entry: entry, record: record))
        }
        return result
    }

    /// Whether a view is C-contiguous (dimensions of size 1 may have any stride).
    static func isContiguous(_ shape: [Int], _ strides: [Int]) -> Bool {
        var expected = 1
        for k in stride(from: shape.count - 1, through: 0, by: -1) {
            if shape[k] != 1 && strides[k] != expected { return false }
            expected *= shape[k]
        }
        return true
    }

    /// The tensor's C-contiguous little-endian bytes from its storage bytes.
    static func materialize(_ t: ResolvedTensor, storage: RawBytes, bigEndian: Bool) -> RawBytes {
        let item = t.entry.dtype.itemSize
        let r = t.record
        let contiguous: RawBytes
        if isContiguous(r.shape, r.strides) {
            let start = r.storageOffset * item
            let view = UnsafeRawBufferPointer(rebasing: storage.buffer[start..<(start + t.entry.byteCount)])
            contiguous = RawBytes(owner: storage.owner, buffer: view)
            if !bigEndian { return contiguous }
            let copy = contiguous.alignedCopy()
            ByteSwap.swap(UnsafeMutableRawBufferPointer(mutating: copy.buffer), unit: t.entry.dtype.swapUnit)
            return copy
        }
        let out = OwnedBuffer(uninitializedCount: t.entry.byteCount)
        let src = storage.buffer
        let dst = out.pointer
        let rank = r.shape.count
        var index = [Int](repeating: 0, count: rank)
        var srcElement = r.storageOffset
        for n in 0..<t.entry.elementCount {
            (dst + n * item).copyMemory(from: src.baseAddress! + srcElement * item, byteCount: item)
            // Advance the multi-index, innermost first.
            var k = rank - 1
            while k >= 0 {
                index[k] += 1
                srcElement += r.strides[k]
                if index[k] < r.shape[k] { break }
                srcElement -= r.strides[k] * r.shape[k]
                index[k] = 0
                k -= 1
            }
        }
        if bigEndian { ByteSwap.swap(out.mutableBytes, unit: t.entry.dtype.swapUnit) }
        return out.bytes
    }
}
