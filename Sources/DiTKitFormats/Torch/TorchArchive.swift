// The zip archive written by `torch.save` (torch >= 1.6), opened with libzip.
//
// Layout (torch/serialization.py `_save`, caffe2/serialize/inline_container.cc):
//   <prefix>/data.pkl            the pickle (protocol 2 unless pickle_protocol was passed)
//   <prefix>/.format_version     optional
//   <prefix>/.storage_alignment  optional
//   <prefix>/byteorder           `little` or `big`; absent means little
//   <prefix>/data/<key>          raw storages, stored (method 0), data 64-byte aligned
//   <prefix>/version             archive version (`.data/version` wins when present)
// The prefix is taken from the first central-directory entry, never assumed.
// TorchScript archives (`constants.pkl`, `code/`) are refused.
import CZip
import DiTKitCore
#if canImport(Glibc)
import Glibc
#endif

/// A `torch.save` zip checkpoint. Storages are viewed zero-copy in the mapped file.
public final class TorchArchive: TensorContainer, @unchecked Sendable {
    public let path: String
    public var format: ContainerFormat { .torchZip }
    public let tensors: [TensorEntry]
    public let objects: [(name: String, value: String)]
    public let metadata: [(key: String, value: String)]

    /// The archive folder name (`archive`, `dit`, ...).
    public let prefix: String
    /// Whether storages are big-endian (`byteorder` is `big`).
    public let bigEndian: Bool

    private let file: MappedFile
    private let resolved: [ResolvedTensor]
    private let records: [String: ZipEntry]

    /// Largest `data.pkl` read through libzip (it is held in memory while its tree is built; the
    /// largest real ones are a few megabytes).
    static let maxSmallRecord = 256 << 20

    /// Opens and validates the archive in `file`. Throws `ZipError`, `TorchError`, `PickleError`, `WalkError`.
    public init(file: MappedFile) throws {
        self.file = file
        path = file.path
        // Local headers by pread: read through the mapping they would make every large folio of
        // the page cache that holds one resident in this process.
        let directory = try ZipDirectory(file.bytes) { try file.read(at: $0, count: $1) }
        let zip = try LibZipArchive(file: file)
        defer { zip.close() }
        try zip.crossCheck(directory)

        guard let first = directory.entries.first else { throw TorchError.notATorchArchive("the zip archive is empty") }
        guard let slash = first.name.firstIndex(of: "/") else {
            throw TorchError.notATorchArchive("first entry \(TerminalText.quoted(first.name)) is not inside a folder")
        }
        prefix = String(first.name[..<slash])
        var records: [String: ZipEntry] = [:]
        var indices: [String: Int] = [:]
        for (k, e) in directory.entries.enumerated() {
            guard e.name.hasPrefix(prefix + "/") else {
                throw TorchError.notATorchArchive("entry \(TerminalText.quoted(e.name)) is outside the archive folder \(TerminalText.quoted(prefix + "/"))")
            }
            let relative = String(e.name.dropFirst(prefix.count + 1))
            records[relative] = e
            indices[relative] = k
        }
        if records["constants.pkl"] != nil || records.keys.contains(where: { $0.hasPrefix("code/") }) {
            throw TorchError.torchScript
        }
        // torch.save writes data.pkl, data/<key>, version, byteorder and dot-records (.format_version,
        // .storage_alignment, .data/...). Anything else is not from torch.save: refuse it rather
        // than leave a payload in the file unexamined.
        for e in directory.entries {
            let r = String(e.name.dropFirst(prefix.count + 1))
            let known = r == "data.pkl" || r == "version" || r == "byteorder" || r.hasPrefix(".")
                || (r.hasPrefix("data/") && r.count > 5 && !r.dropFirst(5).contains("/"))
            if !known { throw TorchError.notATorchArchive("unexpected member \(TerminalText.quoted(e.name))") }
        }
        guard let pickleIndex = indices["data.pkl"] else { throw TorchError.notATorchArchive("no data.pkl record") }

        var meta: [(key: String, value: String)] = []
        let versionKey = records[".data/version"] != nil ? ".data/version" : "version"
        if let vi = indices[versionKey] {
            let text = String(decoding: try zip.read(index: vi, limit: 64), as: UTF8.self).trimmedWhitespace
            guard let v = Int(text), v >= 1, v <= 20 else { throw TorchError.badVersion(text) }
            meta.append(("version", String(v)))
        }
        var big = false
        if let bi = indices["byteorder"] {
            let text = String(decoding: try zip.read(index: bi, limit: 64), as: UTF8.self)
            switch text {
            case "little": big = false
            case "big": big = true
            default: throw TorchError.badByteOrder(text)
            }
            meta.append(("byteorder", text))
        }
        bigEndian = big

        let pickle = try zip.read(index: pickleIndex, limit: TorchArchive.maxSmallRecord)
        let tree = try PickleMachine.load(pickle)
        guard tree.endOffset == pickle.count else {
            throw PickleError.malformed("\(pickle.count - tree.endOffset) bytes after STOP in data.pkl", offset: tree.endOffset)
        }
        let contents = try PickleTreeWalker.walk(tree.root)
        // Each reference names its storage's type: a record may be named with several types of the
        // same size (a `_rebuild_tensor_v3` tensor reads it as its own dtype, as torch does). In a
        // big-endian archive torch swaps a record once, by the type it is first loaded with, so
        // there all references must agree on the swap unit.
        var swapUnits: [String: Int] = [:]
        resolved = try TorchTensors.resolve(contents, fileSize: file.count) { storage in
            let name = "data/\(storage.key)"
            guard let e = records[name] else { throw TorchError.missingRecord(name) }
            guard e.method == 0, e.compressedSize == e.uncompressedSize else { throw TorchError.recordCompressed(name, method: e.method) }
            let expected: Int
            if let d = storage.dtype {
                expected = try Checked.mul(storage.count, d.itemSize, "the size of storage \(storage.key)")
            } else {
                expected = storage.count
            }
            guard e.uncompressedSize == expected else { throw TorchError.recordSize(name, expected: expected, found: e.uncompressedSize) }
            if big {
                let unit = storage.dtype?.swapUnit ?? 1
                if let prior = swapUnits.updateValue(unit, forKey: storage.key), prior != unit {
                    throw TorchError.storageTypeConflict(storage.key)
                }
            }
            return expected
        }
        self.records = records
        tensors = resolved.map(\.entry)
        objects = contents.objects
        metadata = meta
        // Opening touched a local header beside every record; with large page-cache folios each
        // touch maps megabytes of tensor data. Drop them all: tensors are faulted in when read.
        file.release(0..<file.count)
    }

    /// Offset in the file of a storage record's data.
    public func recordOffset(key: String) -> Int? { records["data/\(key)"]?.dataOffset }

    public func checkUnchanged() throws { try file.checkUnchanged() }

    public var mappedFiles: [MappedFile] { [file] }

    public func release(_ index: Int) {
        if let e = records["data/\(resolved[index].record.storage.key)"] {
            file.release(e.dataOffset..<(e.dataOffset + e.uncompressedSize))
        }
    }

    public func verbatimRange(of index: Int) -> (file: MappedFile, range: Range<Int>)? {
        let t = resolved[index]
        guard !bigEndian, t.entry.elementCount > 0, TorchTensors.isContiguous(t.record.shape, t.record.strides),
              let e = records["data/\(t.record.storage.key)"] else { return nil }
        let start = e.dataOffset + t.record.storageOffset * t.entry.dtype.itemSize
        return (file, start..<(start + t.entry.byteCount))
    }

    public func bytes(of index: Int) throws -> RawBytes {
        let t = resolved[index]
        guard let e = records["data/\(t.record.storage.key)"] else { throw TorchError.missingRecord("data/\(t.record.storage.key)") }
        let storage = file.slice(e.dataOffset..<(e.dataOffset + e.uncompressedSize))
        return TorchTensors.materialize(t, storage: storage, swapUnit: bigEndian ? t.record.storage.dtype?.swapUnit ?? 1 : 1)
    }
}

/// A libzip handle over the file: read with stdio on a duplicate of the mapping's descriptor (so
/// its consistency check of every local header maps no page), or over the mapped bytes for an
/// in-memory file (`zip_source_buffer_create`); `zip_open_from_source` either way.
final class LibZipArchive {
    private var archive: OpaquePointer?
    private let count: Int

    init(file: MappedFile) throws {
        var error = zip_error_t()
        zip_error_init(&error)
        defer { zip_error_fini(&error) }
        var source: OpaquePointer?
        if file.descriptor >= 0, let stream = Self.stream(file) {
            // libzip owns (and closes) the stream; the length is the mapping's, as the directory saw it.
            source = zip_source_filep_create(stream, 0, zip_int64_t(file.count), &error)
            if source == nil { fclose(stream) }
        } else {
            // SAFETY: libzip reads the mapping only while this object is alive, and `file` outlives it.
            source = zip_source_buffer_create(file.bytes.baseAddress, zip_uint64_t(file.count), 0, &error)
        }
        guard let source else { throw ZipError.libzip(String(cString: zip_error_strerror(&error))) }
        guard let za = zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error) else {
            zip_source_free(source)
            throw ZipError.libzip(String(cString: zip_error_strerror(&error)))
        }
        archive = za
        count = Int(zip_get_num_entries(za, 0))
    }

    /// A stdio stream on the mapped file, from its own open file description (reopened through
    /// /proc/self/fd, so no other reader shares its position), at its start; nil on failure.
    private static func stream(_ file: MappedFile) -> UnsafeMutablePointer<FILE>? {
        let fd = Glibc.open("/proc/self/fd/\(file.descriptor)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        guard lseek(fd, 0, SEEK_SET) == 0, let f = fdopen(fd, "rb") else { Glibc.close(fd); return nil }
        return f
    }

    /// Requires libzip's view of the entries to equal ours: same names, order and sizes.
    func crossCheck(_ d: ZipDirectory) throws {
        guard let za = archive else { return }
        guard count == d.entries.count else {
            throw ZipError.libzip("libzip sees \(count) entries, the central directory declares \(d.entries.count)")
        }
        for (k, e) in d.entries.enumerated() {
            var st = zip_stat_t()
            zip_stat_init(&st)
            guard zip_stat_index(za, zip_uint64_t(k), zip_flags_t(ZIP_FL_ENC_RAW), &st) == 0, let namePointer = st.name else {
                throw ZipError.libzip("cannot stat entry \(k)")
            }
            let name = String(cString: namePointer)
            guard name == e.name, Int(st.size) == e.uncompressedSize, Int(st.comp_size) == e.compressedSize else {
                throw ZipError.libzip("entry \(k) differs between libzip (\(TerminalText.quoted(name))) and the central directory (\(TerminalText.quoted(e.name)))")
            }
        }
    }

    /// Reads a whole entry (decompressing if needed) of at most `limit` bytes.
    func read(index: Int, limit: Int) throws -> [UInt8] {
        guard let za = archive else { throw ZipError.libzip("archive closed") }
        var st = zip_stat_t()
        zip_stat_init(&st)
        guard zip_stat_index(za, zip_uint64_t(index), 0, &st) == 0 else { throw ZipError.libzip("cannot stat entry \(index)") }
        let name = st.name.map { String(cString: $0) } ?? "#\(index)"
        guard st.size <= UInt64(limit) else { throw ZipError.libzip("record \(TerminalText.quoted(name)) is \(st.size) bytes (limit \(limit))") }
        if st.comp_method != 0 {
            // A compressed pickle or small record is never 100 times smaller than its content in
            // practice (pickles of state dicts compress 3-10x); refuse before inflating a bomb.
            guard st.size <= max(1 << 20, st.comp_size &* 100) else {
                throw ZipError.libzip("record \(TerminalText.quoted(name)) inflates \(st.comp_size) bytes to \(st.size) (refused as a zip bomb)")
            }
        }
        guard let f = zip_fopen_index(za, zip_uint64_t(index), 0) else {
            throw ZipError.libzip("cannot open record \(TerminalText.quoted(name)): \(String(cString: zip_strerror(za)))")
        }
        defer { zip_fclose(f) }
        var out = [UInt8](repeating: 0, count: Int(st.size))
        var done = 0
        while done < out.count {
            let n = out.withUnsafeMutableBytes { zip_fread(f, $0.baseAddress! + done, zip_uint64_t($0.count - done)) }
            if n < 0 { throw ZipError.libzip("reading \(TerminalText.quoted(name)): \(String(cString: zip_file_strerror(f)))") }
            if n == 0 { throw ZipError.libzip("record \(TerminalText.quoted(name)) is shorter than declared") }
            done += Int(n)
        }
        // Reading past the end once more makes libzip verify the CRC.
        var extra: UInt8 = 0
        let n = zip_fread(f, &extra, 1)
        if n < 0 { throw ZipError.libzip("reading \(TerminalText.quoted(name)): \(String(cString: zip_file_strerror(f)))") }
        if n > 0 { throw ZipError.libzip("record \(TerminalText.quoted(name)) is longer than declared") }
        return out
    }

    func close() {
        if let za = archive { zip_discard(za) }
        archive = nil
    }

    deinit { close() }
}
