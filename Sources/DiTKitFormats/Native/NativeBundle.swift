// Opening a DiTKit bundle: the manifest is parsed and checked, `weights.bin` is mapped once,
// and tensors are handed out as zero-copy typed views. Nothing is read until used.
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import DiTKitCore

/// A typed view of one stored tensor.
public struct TensorView: Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// The stored bytes (zero-copy, in the mapping).
    public let bytes: RawBytes
    /// Float32 per-row scales of an I8 tensor.
    public let scale: RawBytes?

    public var elementCount: Int { shape.reduce(1, *) }

    /// Values as float32: widened from F16/BF16, dequantized (`q × scale[row]`) from I8, or
    /// dequantized block by block from a ggml block type (bit-exact with gguf-py's `dequantize`).
    /// Writes `elementCount` floats to `out`; `threads` > 1 splits the work across threads.
    public func dequantize(into out: UnsafeMutablePointer<Float>, threads: Int = 1) {
        dequantize(rows: 0..<rowCount, into: out, threads: threads)
    }

    /// Rows of the first dimension (1 for a 0-d tensor; the whole tensor is one row of a 1-D
    /// tensor stored in a block type, whose blocks run along it).
    public var rowCount: Int {
        if shape.isEmpty || (dtype.block != nil && shape.count < 2) { return 1 }
        return shape[0]
    }

    /// Rows `rows` of the first dimension (see `rowCount`) as float32, written to `out` (room for
    /// `rows.count × elementCount / rowCount` floats), converted as `dequantize(into:)` does.
    /// `threads` > 1 splits the rows across threads. `rows` must lie within `0..<rowCount`.
    public func dequantize(rows: Range<Int>, into out: UnsafeMutablePointer<Float>, threads: Int = 1) {
        let total = rowCount
        precondition(rows.lowerBound >= 0 && rows.upperBound <= total, "rows out of range")
        guard let base = bytes.buffer.baseAddress, !rows.isEmpty else { return }
        let cols = total == 0 ? 0 : elementCount / total
        // Parts of at least 256 K values: below that a thread costs more than it saves.
        let parts = max(1, min(threads, rows.count, rows.count * cols / (1 << 18)))
        DispatchQueue.concurrentPerform(iterations: parts) { k in
            let first = rows.lowerBound + rows.count * k / parts, end = rows.lowerBound + rows.count * (k + 1) / parts
            let o = out + (first - rows.lowerBound) * cols
            let n = (end - first) * cols
            if let b = dtype.block {
                BlockQuantizer.dequantize(dtype, base + first * cols / b.elements * b.bytes, count: n, into: o)
                return
            }
            switch dtype {
            case .i8:
                scale?.withElements(of: Float.self) { s in
                    guard let sp = s.baseAddress else { return }
                    ElementConversion.int8Rows(base.assumingMemoryBound(to: Int8.self) + first * cols, scales: sp + first, rows: end - first, cols: cols, into: o)
                }
            case .f32, .f16, .bf16, .f64:
                ElementConversion.toFloat32(base + first * cols * dtype.itemSize, dtype: dtype, count: n, into: o)
            default:
                o.initialize(repeating: 0, count: n)
            }
        }
    }

    /// Values as a float32 array (see `dequantize(into:)`).
    public func floats() -> [Float] {
        [Float](unsafeUninitializedCapacity: elementCount) { buf, count in
            if let b = buf.baseAddress { dequantize(into: b) }
            count = elementCount
        }
    }
}

/// An open bundle.
public final class NativeBundle: TensorContainer, @unchecked Sendable {
    public let path: String
    public var format: ContainerFormat { .ditkit }
    public let manifest: BundleManifest
    /// Raw bytes of `manifest.json` as read.
    public let manifestBytes: [UInt8]
    /// Contents of `manifest.json.sha256` as read with the manifest (`nil` when missing).
    public let checksumLine: [UInt8]?
    public let tensors: [TensorEntry]
    public var objects: [(name: String, value: String)] { [] }
    public let metadata: [(key: String, value: String)]

    private let weights: MappedFile
    private let index: [String: Int]
    /// For each entry of `tensors`: the manifest tensor and whether the entry is its scale.
    private let entries: [(tensor: Int, isScale: Bool)]

    /// Opens the bundle directory at `path`. Manifest and weights are opened through one directory
    /// descriptor, so a bundle replaced meanwhile is read entirely old or entirely new: if the old
    /// one disappears between the two opens (it was replaced), the open starts again on the new one.
    /// Throws `BundleError`, `JSONError` or `SystemError`.
    public convenience init(path: String) throws {
        var attempt = 0
        while true {
            do {
                try self.init(once: path)
                return
            } catch BundleError.notABundle(let why) where why.hasPrefix("no ") && attempt < 3 && FileSystem.isDirectory(path) {
                attempt += 1
            }
        }
    }

    /// Whether `path` no longer names the directory open on `dirfd` (a replacement was swapped in).
    private static func replaced(_ dirfd: Int32, _ path: String) -> Bool {
        var opened = stat(), current = stat()
        guard fstat(dirfd, &opened) == 0, stat(path, &current) == 0 else { return true }
        return opened.st_dev != current.st_dev || opened.st_ino != current.st_ino
    }

    /// Most JSON values a manifest may hold (a tensor takes about 15; DiT-XL/2 has 700 tensors).
    static let maxManifestValues = 4_000_000

    private init(once path: String) throws {
        self.path = path
        let dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0 else {
            let code = errno
            if code == ENOTDIR { throw BundleError.notABundle(Self.describeFile(path)) }
            throw BundleError.notABundle("cannot open directory (\(String(cString: strerror(code))))")
        }
        defer { close(dirfd) }
        let manifestFD = openat(dirfd, BundleManifest.manifestFile, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard manifestFD >= 0 else { throw BundleError.notABundle("no \(BundleManifest.manifestFile)") }
        defer { close(manifestFD) }
        let manifestFile = try MappedFile(fd: manifestFD, path: path + "/" + BundleManifest.manifestFile)
        guard manifestFile.count <= 256 << 20 else { throw BundleError.manifest("manifest larger than 256 MB") }
        manifestBytes = Array(manifestFile.bytes)
        let json: JSONValue
        // A JSON tree costs ~15 times its text: the value budget keeps a hostile manifest bounded
        // (a real one has ~15 values per tensor).
        do { json = try manifestBytes.withUnsafeBytes { try JSONReader.parse($0, maxValues: NativeBundle.maxManifestValues) } } catch {
            throw BundleError.manifest("\(error)")
        }
        manifest = try BundleManifest(json: json)
        // The manifest's checksum line, read through the same directory descriptor (so a bundle
        // replaced meanwhile never pairs an old manifest with a new checksum).
        let sumFD = openat(dirfd, BundleManifest.checksumFile, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if sumFD >= 0 {
            var buf = [UInt8](repeating: 0, count: 512)
            let n = read(sumFD, &buf, buf.count)
            close(sumFD)
            checksumLine = n >= 0 ? Array(buf.prefix(n)) : nil
        } else if Self.replaced(dirfd, path) {
            // The sidecar was deleted with the old bundle after the manifest was read: start again.
            throw BundleError.notABundle("no \(BundleManifest.checksumFile)")
        } else {
            checksumLine = nil
        }
        let weightsFD = openat(dirfd, BundleManifest.weightsFile, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard weightsFD >= 0 else { throw BundleError.notABundle("no \(BundleManifest.weightsFile)") }
        defer { close(weightsFD) }
        weights = try MappedFile(fd: weightsFD, path: path + "/" + BundleManifest.weightsFile)
        try manifest.validateLayout(fileSize: weights.count)

        var list: [TensorEntry] = []
        var entries: [(Int, Bool)] = []
        var index: [String: Int] = [:]
        for (k, t) in manifest.tensors.enumerated() {
            index[t.name] = k
            list.append(try TensorEntry(name: t.name, dtype: t.stored.dtype, shape: t.stored.shape))
            entries.append((k, false))
            if let s = t.scale {
                list.append(try TensorEntry(name: t.name + ".scale", dtype: s.dtype, shape: s.shape))
                entries.append((k, true))
            }
        }
        tensors = list
        self.entries = entries
        self.index = index
        metadata = [("family", manifest.family), ("variant", manifest.variant), ("naming", manifest.naming),
                    ("dtype", manifest.dtypePolicy["dtype"]?.stringValue ?? "")]
    }

    /// What a file given where a bundle is expected is, and what to do with it.
    static func describeFile(_ path: String) -> String {
        var what = "a file"
        if let f = try? MappedFile(path: path), let format = try? Checkpoint.detect(f.bytes) { what = "a \(format.rawValue) checkpoint" }
        return "\(what), not a bundle (a NAME.ditkit directory); convert it first: ditkit convert \(path) -o NAME.ditkit"
    }

    /// Names of the stored tensors, in manifest order.
    public var tensorNames: [String] { manifest.tensors.map(\.name) }

    /// The manifest record of a tensor.
    public func record(_ name: String) -> BundleTensor? { index[name].map { manifest.tensors[$0] } }

    /// A zero-copy typed view of tensor `name`, or `nil` when there is none.
    public func view(_ name: String) -> TensorView? {
        guard let k = index[name] else { return nil }
        let t = manifest.tensors[k]
        return TensorView(name: name, dtype: t.stored.dtype, shape: t.stored.shape,
                          bytes: weights.slice(t.stored.offset..<(t.stored.offset + t.stored.bytes)),
                          scale: t.scale.map { weights.slice($0.offset..<($0.offset + $0.bytes)) })
    }

    /// Drops the pages of tensor `name` (and its scale) from resident memory; they stay readable.
    public func releaseTensor(_ name: String) {
        guard let k = index[name] else { return }
        let t = manifest.tensors[k]
        weights.release(t.stored.offset..<(t.stored.offset + t.stored.bytes))
        if let s = t.scale { weights.release(s.offset..<(s.offset + s.bytes)) }
    }

    public func release(_ i: Int) {
        releaseTensor(manifest.tensors[entries[i].tensor].name)
    }

    public func checkUnchanged() throws { try weights.checkUnchanged() }

    /// The mapped weights file (for checks).
    public var weightsBytes: RawBytes { weights.slice(0..<weights.count) }

    /// Drops the pages of a byte range of the weights file from resident memory (a check reads every
    /// byte once: a 24 GB bundle must not stay mapped in).
    func releaseWeights(_ range: Range<Int>) { weights.release(range) }

    public func bytes(of i: Int) throws -> RawBytes {
        let (k, isScale) = entries[i]
        let t = manifest.tensors[k]
        guard let r = isScale ? t.scale : t.stored else { throw BundleError.layout("'\(t.name)' has no scale") }
        return weights.slice(r.offset..<(r.offset + r.bytes))
    }
}

