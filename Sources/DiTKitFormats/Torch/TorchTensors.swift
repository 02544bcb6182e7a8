// What the zip and legacy torch readers share: resolving tensors against their storages,
// checking every view, and producing contiguous little-endian bytes, as torch reads them
// (tools/make_torch_corpus.py holds the files and torch's values that prove it).
import DiTKitCore

/// Why a torch checkpoint was refused.
public enum TorchError: Error, CustomStringConvertible, Sendable {
    case torchScript
    case missingRecord(String)
    case recordCompressed(String, method: UInt16)
    case recordSize(String, expected: Int, found: Int)
    case viewOutOfBounds(tensor: String, needed: Int, available: Int)
    case storageTypeConflict(String)
    case tooLarge(tensor: String, limit: Int, fileSize: Int)
    case badByteOrder(String)
    case badVersion(String)
    case notATorchArchive(String)
    case legacy(String, offset: Int)

    public var description: String {
        switch self {
        case .torchScript:
            return "a TorchScript archive (constants.pkl / code/); refusing it: TorchScript runs code. Save the model's state_dict with torch.save instead"
        case .missingRecord(let r): return "missing storage record \(TerminalText.quoted(r))"
        case let .recordCompressed(r, m): return "storage record \(TerminalText.quoted(r)) is compressed (method \(m)); torch.save stores storages uncompressed"
        case let .recordSize(r, e, f): return "storage record \(TerminalText.quoted(r)) holds \(f) bytes but its storage needs \(e)"
        case let .viewOutOfBounds(t, n, a): return "tensor \(TerminalText.quoted(t)) reads \(n) elements of a storage that holds \(a)"
        case .storageTypeConflict(let k): return "storage \(TerminalText.quoted(k)) is used with two different dtypes"
        case let .tooLarge(t, l, f):
            return "the tensors up to \(TerminalText.quoted(t)) add up to more than \(l) bytes, the limit for a \(f)-byte file (8 times its size plus 256 MiB): views that repeat storage elements (stride 0, overlapping strides) or share storages declare more than the file holds"
        case .badByteOrder(let v): return "unknown byteorder record \(TerminalText.quoted(v)) (expected 'little' or 'big')"
        case .badVersion(let v): return "unsupported archive version \(TerminalText.quoted(v))"
        case .notATorchArchive(let why): return "not a torch.save archive: \(why)"
        case let .legacy(what, o): return "corrupt legacy checkpoint at byte \(o): \(what)"
        }
    }
}

/// A tensor resolved against its storage.
struct ResolvedTensor {
    var entry: TensorEntry
    var record: TensorRecord
    /// Index of the last storage element the view reads (in elements of the tensor's dtype);
    /// -1 for a tensor without elements.
    var lastElement: Int
}

/// Shared logic for the two torch readers.
enum TorchTensors {
    /// How many C-contiguous bytes the tensors of a `fileSize`-byte checkpoint may add up to:
    /// 8 times the file's size plus 256 MiB. A strided view can repeat storage elements (torch's
    /// `expand` makes stride-0 views) and many tensors can share one storage, so a few bytes of
    /// pickle can declare terabytes; every tensor is read in full (`inspect --hash`, `convert`), so
    /// the total is bounded by what the file could plausibly hold.
    static func sizeLimit(fileSize: Int) -> Int {
        let (eight, o1) = fileSize.multipliedReportingOverflow(by: 8)
        let (limit, o2) = eight.addingReportingOverflow(256 << 20)
        return o1 || o2 ? Int.max : limit
    }

    /// Checks every view against its storage and builds the entries, in file order.
    /// `storageBytes` gives the number of bytes a storage reference makes available to a tensor
    /// (a legacy view: its clamped slice). Tensors without elements are accepted whatever their
    /// sizes, strides and offset, as torch accepts them; their element count is computed left to
    /// right and refused when it overflows before reaching a zero size, as torch refuses it.
    /// Throws `TorchError`, `ArithmeticOverflow`.
    static func resolve(_ contents: TreeContents, fileSize: Int, storageBytes: (StorageReference) throws -> Int) throws -> [ResolvedTensor] {
        var result: [ResolvedTensor] = []
        result.reserveCapacity(contents.tensors.count)
        let limit = sizeLimit(fileSize: fileSize)
        var total = 0
        for (name, record) in contents.tensors {
            guard record.dtype.itemSize > 0 else { throw CheckpointError.unsupported("tensor \(TerminalText.quoted(name)) has dtype \(record.dtype.name), which torch does not store") }
            let entry = try TensorEntry(name: name, dtype: record.dtype, shape: record.shape)
            let bytes = try storageBytes(record.storage)
            var last = -1
            if entry.elementCount > 0 {
                // Highest element touched: offset + sum((size-1) * stride).
                last = record.storageOffset
                for (size, stride) in zip(record.shape, record.strides) {
                    last = try Checked.add(last, try Checked.mul(size - 1, stride, "a view extent of \(TerminalText.quoted(name))"), "a view extent of \(TerminalText.quoted(name))")
                }
                let available = bytes / record.dtype.itemSize
                guard last < available else {
                    throw TorchError.viewOutOfBounds(tensor: name, needed: last == Int.max ? last : last + 1, available: available)
                }
            }
            let (sum, overflow) = total.addingReportingOverflow(entry.byteCount)
            guard !overflow, sum <= limit else { throw TorchError.tooLarge(tensor: name, limit: limit, fileSize: fileSize) }
            total = sum
            result.append(ResolvedTensor(entry: entry, record: record, lastElement: last))
        }
        return result
    }

    /// Whether a view is C-contiguous (dimensions of size 1 may have any stride). Never traps:
    /// a running size that overflows is not contiguous.
    static func isContiguous(_ shape: [Int], _ strides: [Int]) -> Bool {
        var expected = 1
        for k in stride(from: shape.count - 1, through: 0, by: -1) {
            if shape[k] != 1 && strides[k] != expected { return false }
            let (next, overflow) = expected.multipliedReportingOverflow(by: shape[k])
            if overflow { return false }
            expected = next
        }
        return true
    }

    /// The tensor's C-contiguous little-endian bytes. `storage` holds the bytes of the tensor's
    /// storage (a legacy view already sliced out of its root). `swapUnit` is the storage's
    /// byte-swap unit when the storage is big-endian, 1 otherwise: torch swaps each storage in
    /// units of the storage's own dtype (an untyped storage not at all) and the tensor then reads
    /// the swapped bytes as its dtype, which matters when `_rebuild_tensor_v3` reads a storage
    /// as another dtype. `resolve` has bounded every offset computed here.
    static func materialize(_ t: ResolvedTensor, storage: RawBytes, swapUnit: Int) -> RawBytes {
        let item = t.entry.dtype.itemSize
        let r = t.record
        guard t.entry.elementCount > 0 else { return RawBytes(owner: nil, buffer: UnsafeRawBufferPointer(start: nil, count: 0)) }
        let start = r.storageOffset * item
        let end = (t.lastElement + 1) * item
        precondition(start >= 0 && end <= storage.count, "view bounds were checked by resolve")
        if swapUnit > 1 && t.entry.dtype.swapUnit != swapUnit {
            // The tensor reads a big-endian storage as another dtype: swap the span it reads in the
            // storage's units first (the span is widened to whole units), then gather from it.
            let lo = start / swapUnit * swapUnit
            let hi = min(storage.count, (end + swapUnit - 1) / swapUnit * swapUnit)
            let span = RawBytes(owner: storage.owner, buffer: UnsafeRawBufferPointer(rebasing: storage.buffer[lo..<hi])).alignedCopy()
            ByteSwap.swap(UnsafeMutableRawBufferPointer(mutating: span.buffer), unit: swapUnit)
            return gather(t, from: span, startByte: start - lo)
        }
        if isContiguous(r.shape, r.strides) {
            let view = RawBytes(owner: storage.owner, buffer: UnsafeRawBufferPointer(rebasing: storage.buffer[start..<(start + t.entry.byteCount)]))
            if swapUnit <= 1 { return view }
            let copy = view.alignedCopy()
            ByteSwap.swap(UnsafeMutableRawBufferPointer(mutating: copy.buffer), unit: swapUnit)
            return copy
        }
        let out = gather(t, from: storage, startByte: start)
        if swapUnit > 1 { ByteSwap.swap(UnsafeMutableRawBufferPointer(mutating: out.buffer), unit: swapUnit) }
        return out
    }

    /// Copies the strided elements of `t` into a new C-contiguous buffer; the first element is
    /// at byte `startByte` of `source`.
    private static func gather(_ t: ResolvedTensor, from source: RawBytes, startByte: Int) -> RawBytes {
        let item = t.entry.dtype.itemSize
        let r = t.record
        let out = OwnedBuffer(uninitializedCount: t.entry.byteCount)
        let rank = r.shape.count
        // A dimension of size 1 is never stepped over, and its stride may be anything (even near
        // Int.max); every other stride times its size is bounded by the checked view extent.
        let byteStrides = zip(r.shape, r.strides).map { $0 == 1 ? 0 : $1 * item }
        var index = [Int](repeating: 0, count: rank)
        var src = startByte
        withExtendedLifetime(source) {
            guard let base = source.buffer.baseAddress else { return }
            let dst = out.pointer
            for n in 0..<t.entry.elementCount {
                (dst + n * item).copyMemory(from: base + src, byteCount: item)
                // Advance the multi-index, innermost first.
                var k = rank - 1
                while k >= 0 {
                    index[k] += 1
                    src += byteStrides[k]
                    if index[k] < r.shape[k] { break }
                    src -= byteStrides[k] * r.shape[k]
                    index[k] = 0
                    k -= 1
                }
            }
        }
        return out.bytes
    }
}
