// Packs: a bundle as one zstd-compressed tar stream (`NAME.ditkit.zst`), for distribution.
//
// The tar is POSIX ustar, deterministic (sorted members, mtime 0, uid/gid 0, mode 0644/0755,
// base-256 sizes beyond 8 GiB), so `tar --zstd -xf` reads it too. Compression uses libzstd's
// streaming API with multithreading and long-distance matching. Unpacking refuses any member that
// is not one of the bundle's files, writes into a temporary directory, checks every tensor's
// checksum against the manifest (BundleCheck), and only then renames the bundle into place.
import CZstd
import DiTKitCore

/// Why a pack could not be read or written.
public enum PackError: Error, CustomStringConvertible, Sendable {
    case zstd(String)
    case tar(String, offset: Int)
    case damaged([String])

    public var description: String {
        switch self {
        case .zstd(let s): return "zstd: \(s)"
        case let .tar(s, o): return "corrupt pack at byte \(o) of the tar stream: \(s)"
        case .damaged(let list): return "unpacked bundle fails its checksums: " + list.joined(separator: "; ")
        }
    }
}

/// What pack or unpack did.
public struct PackSummary: Sendable {
    public var path: String
    public var bytesIn: Int
    public var bytesOut: Int
    public var seconds: Double

    /// `ditkit pack --json` / `ditkit unpack --json`.
    public var json: JSONValue {
        .object([("path", .string(path)), ("bytes_in", .int(bytesIn)), ("bytes_out", .int(bytesOut)), ("seconds", .double(seconds))])
    }
}

public enum BundlePack {
    static let members = [BundleManifest.manifestFile, BundleManifest.checksumFile, BundleManifest.weightsFile]

    // MARK: tar

    static func tarHeader(name: String, size: Int, directory: Bool = false) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ at: Int, _ len: Int) {
            for (k, b) in s.utf8.prefix(len).enumerated() { h[at + k] = b }
        }
        func octal(_ v: Int, _ at: Int, _ len: Int) {
            let s = String(v, radix: 8)
            put(String(repeating: "0", count: max(0, len - 1 - s.count)) + s, at, len - 1)
        }
        put(name, 0, 100)
        octal(directory ? 0o755 : 0o644, 100, 8)
        octal(0, 108, 8)
        octal(0, 116, 8)
        if size < 0o77777777777 {
            octal(size, 124, 12)
        } else {
            // GNU base-256: high bit set, big-endian value.
            h[124] = 0x80
            var v = UInt64(size)
            for k in stride(from: 135, through: 125, by: -1) { h[k] = UInt8(v & 0xFF); v >>= 8 }
        }
        octal(0, 136, 12)
        h[156] = directory ? UInt8(ascii: "5") : UInt8(ascii: "0")
        put("ustar", 257, 6)
        put("00", 263, 2)
        for k in 148..<156 { h[k] = 0x20 }
        let sum = h.reduce(0) { $0 + Int($1) }
        octal(sum, 148, 7)
        h[155] = 0x20
        return h
    }

    static func tarSize(_ h: UnsafeRawBufferPointer) -> Int? {
        if h[124] & 0x80 != 0 {
            var v: UInt64 = 0
            for k in 125..<136 { v = v << 8 | UInt64(h[k]) }
            return v <= UInt64(Int.max) ? Int(v) : nil
        }
        var v = 0
        for k in 124..<136 {
            let c = h[k]
            if c == 0 || c == 0x20 { if v > 0 || k > 124 { break } else { continue } }
            guard c >= 0x30 && c <= 0x37 else { return nil }
            v = v * 8 + Int(c - 0x30)
        }
        return v
    }

    // MARK: pack

    /// Compresses the bundle at `bundle` into `output` (atomically). `level` is the zstd level.
    public static func pack(bundle: String, output: String, level: Int = 3, threads: Int = ProcessInfoLite.activeProcessorCount,
                            force: Bool = false, progress: ProgressReporter? = nil) throws -> PackSummary {
        let start = ContinuousClock.now
        let b = try FileError.wrapping(bundle) { try NativeBundle(path: bundle) }
        let name = FileSystem.baseName(bundle)
        let out = try AtomicOutput(finalPath: output, kind: .pack, force: force)
        do {
            let file = try OutputFile(path: out.temporaryPath)
            let z = try ZstdWriter(file: file, level: level, threads: threads)
            var total = 0
            let files = members.map { (name: $0, data: try? MappedFile(path: bundle + "/" + $0)) }
            progress?.begin("packing", total: files.reduce(0) { $0 + ($1.data?.count ?? 0) }, unit: .bytes)
            try z.write(tarHeader(name: name + "/", size: 0, directory: true))
            for (member, data) in files {
                guard let data else { throw BundleError.notABundle("missing \(member)") }
                try z.write(tarHeader(name: name + "/" + member, size: data.count))
                var o = 0
                while o < data.count {
                    let n = min(1 << 22, data.count - o)
                    try z.write(UnsafeRawBufferPointer(rebasing: data.bytes[o..<(o + n)]))
                    data.release(o..<(o + n))
                    o += n
                    progress?.advance(n)
                }
                let pad = (512 - data.count % 512) % 512
                if pad > 0 { try z.write([UInt8](repeating: 0, count: pad)) }
                total += data.count
            }
            try z.write([UInt8](repeating: 0, count: 1024))
            try z.finish()
            try file.close()
            progress?.finish()
            try out.commit()
            _ = b
            return PackSummary(path: output, bytesIn: total, bytesOut: FileSystem.fileSize(output) ?? 0, seconds: seconds(ContinuousClock.now - start))
        } catch {
            out.discard()
            throw error
        }
    }

    /// Whether `bytes` begin like a pack `pack` writes: a zstd frame whose tar starts with a
    /// bundle directory followed by its manifest. Decompresses only the first two headers.
    static func isPack(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= 4, bytes.prefix(4).elementsEqual([0x28, 0xB5, 0x2F, 0xFD]) else { return false }
        struct Enough: Error {}
        var head: [UInt8] = []
        do {
            try ZstdReader.decompress(bytes) { chunk in
                head += chunk.prefix(1024 - head.count)
                if head.count >= 1024 { throw Enough() }
            }
        } catch is Enough {
        } catch {
            return false
        }
        guard head.count >= 1024 else { return false }
        func name(_ at: Int) -> String { String(decoding: head[at..<(at + 100)].prefix { $0 != 0 }, as: UTF8.self) }
        let directory = name(0)
        guard head[156] == UInt8(ascii: "5"), directory.hasSuffix("/"), directory.dropLast().split(separator: "/").count == 1 else { return false }
        return name(512) == directory + members[0]
    }

    // MARK: unpack

    /// Unpacks `pack` into `directory/NAME.ditkit` (or exactly `output` when given), checking every
    /// checksum before renaming the bundle into place. Returns the bundle path.
    /// The name of the bundle a pack holds (`pack` records it as the tar's first entry, the
    /// bundle's directory), read from the start of the stream; nil when the stream does not begin
    /// with a name that is safe as one path component (no `/`, not `.`/`..`, not hidden, no control
    /// characters, at most 255 bytes). Only the first 512 decompressed bytes are produced. Throws
    /// `PackError.zstd` when even they cannot be decompressed.
    public static func bundleName(pack path: String) throws -> String? {
        let source = try FileError.wrapping(path) { try MappedFile(path: path) }
        struct Enough: Error {}
        var head: [UInt8] = []
        do {
            try ZstdReader.decompress(source.bytes) { chunk in
                head += chunk.prefix(512 - head.count)
                if head.count == 512 { throw Enough() }
            }
        } catch is Enough {
        } catch {
            if head.count < 512 { throw FileError(path: path, error) }
        }
        guard head.count == 512 else { return nil }
        let raw = head[0..<100].prefix { $0 != 0 }
        guard let text = String(bytes: raw, encoding: .utf8) else { return nil }
        let name = String(text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        guard !name.isEmpty, name.utf8.count <= 255, !name.hasPrefix("."), !name.contains("/"),
              name.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else { return nil }
        return name
    }

    public static func unpack(pack path: String, into output: String, force: Bool = false, progress: ProgressReporter? = nil) throws -> PackSummary {
        let start = ContinuousClock.now
        let source = try FileError.wrapping(path) { try MappedFile(path: path) }
        let out = try AtomicOutput(finalPath: output, kind: .bundle, force: force)
        do {
            var reader = TarStream(target: out.temporaryPath)
            progress?.begin("unpacking", total: source.count, unit: .bytes)
            try FileError.wrapping(path) {
                try ZstdReader.decompress(source.bytes) { chunk in try reader.feed(chunk) }
                try reader.finish()
            }
            progress?.finish()
            let bundle = try FileError.wrapping(path) { try NativeBundle(path: out.temporaryPath) }
            let problems = try BundleCheck.run(bundle)
            if !problems.isEmpty { throw FileError(path: path, PackError.damaged(problems.map(\.description))) }
            try out.commit()
            return PackSummary(path: output, bytesIn: source.count, bytesOut: reader.written, seconds: seconds(ContinuousClock.now - start))
        } catch {
            out.discard()
            throw error
        }
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
}

/// Parses a tar stream incrementally, writing the bundle's members into `target`.
struct TarStream {
    let target: String
    private var header = [UInt8]()
    private var file: OutputFile?
    private var remaining = 0
    private var padding = 0
    private var position = 0
    private var ended = false
    private var seen = Set<String>()
    private(set) var written = 0

    init(target: String) { self.target = target }

    mutating func feed(_ chunk: UnsafeRawBufferPointer) throws {
        var i = 0
        while i < chunk.count {
            if ended { i = chunk.count; break }
            if remaining > 0 {
                let n = min(remaining, chunk.count - i)
                try file?.write(UnsafeRawBufferPointer(rebasing: chunk[i..<(i + n)]))
                remaining -= n; i += n; position += n; written += n
                if remaining == 0 { try file?.close(); file = nil }
                continue
            }
            if padding > 0 {
                let n = min(padding, chunk.count - i)
                padding -= n; i += n; position += n
                continue
            }
            let n = min(512 - header.count, chunk.count - i)
            header += chunk[i..<(i + n)]
            i += n; position += n
            if header.count == 512 { try parseHeader() }
        }
    }

    mutating func parseHeader() throws {
        defer { header = [] }
        if header.allSatisfy({ $0 == 0 }) { ended = true; return }
        let at = position - 512
        try header.withUnsafeBytes { h in
            var sum = 0
            for k in 0..<512 { sum += (148..<156).contains(k) ? 0x20 : Int(h[k]) }
            let recorded = Int(String(decoding: h[148..<155].prefix { $0 != 0 && $0 != 0x20 }, as: UTF8.self), radix: 8)
            guard recorded == sum else { throw PackError.tar("bad header checksum", offset: at) }
            let nameBytes = h[0..<100].prefix { $0 != 0 }
            let name = String(decoding: nameBytes, as: UTF8.self)
            guard let size = BundlePack.tarSize(h) else { throw PackError.tar("bad size field", offset: at) }
            let type = h[156]
            let parts = name.split(separator: "/", omittingEmptySubsequences: true)
            if type == UInt8(ascii: "5") {
                guard parts.count == 1, !name.contains(".."), size == 0 else { throw PackError.tar("unexpected directory '\(name)'", offset: at) }
                return
            }
            guard type == UInt8(ascii: "0") || type == 0 else { throw PackError.tar("member '\(name)' is not a regular file", offset: at) }
            guard parts.count == 2, !parts[0].contains(".."), BundlePack.members.contains(String(parts[1])) else {
                throw PackError.tar("unexpected member '\(name)' (a pack holds only \(BundlePack.members.joined(separator: ", ")))", offset: at)
            }
            guard seen.insert(String(parts[1])).inserted else { throw PackError.tar("member '\(name)' appears twice", offset: at) }
            file = try OutputFile(path: target + "/" + parts[1])
            remaining = size
            padding = (512 - size % 512) % 512
            if size == 0 { try file?.close(); file = nil }
        }
    }

    func finish() throws {
        guard ended else { throw PackError.tar("the stream ends before the end-of-archive marker", offset: position) }
        guard seen.count == BundlePack.members.count else {
            throw PackError.tar("missing members: \(Set(BundlePack.members).subtracting(seen).sorted().joined(separator: ", "))", offset: position)
        }
    }
}

/// Streaming zstd compression to an output file (ZSTD_compressStream2).
final class ZstdWriter {
    private let ctx: OpaquePointer
    private let file: OutputFile
    private var out = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())

    init(file: OutputFile, level: Int, threads: Int) throws {
        guard let c = ZSTD_createCCtx() else { throw PackError.zstd("cannot create a compression context") }
        ctx = c
        self.file = file
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, Int32(level)))
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 1))
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_enableLongDistanceMatching, 1))
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_windowLog, 27))
        // Always at least one worker: zstd's multithreaded output does not depend on the number
        // of workers, so packs are byte-identical on machines with different core counts.
        _ = ZSTD_CCtx_setParameter(ctx, ZSTD_c_nbWorkers, Int32(max(1, threads)))
    }

    deinit { ZSTD_freeCCtx(ctx) }

    private func check(_ r: Int) throws {
        if ZSTD_isError(r) != 0 { throw PackError.zstd(String(cString: ZSTD_getErrorName(r))) }
    }

    func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
        while input.pos < input.size {
            try drain(ZSTD_e_continue, &input)
        }
    }

    private func drain(_ mode: ZSTD_EndDirective, _ input: inout ZSTD_inBuffer) throws {
        let remaining = try out.withUnsafeMutableBytes { o -> Int in
            var output = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
            let r = ZSTD_compressStream2(ctx, &output, &input, mode)
            try check(r)
            try file.write(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(o)[0..<output.pos]))
            return r
        }
        if mode == ZSTD_e_end && remaining > 0 { try drain(mode, &input) }
    }

    func finish() throws {
        var input = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
        try drain(ZSTD_e_end, &input)
    }
}

/// Streaming zstd decompression of an in-memory (mapped) stream.
enum ZstdReader {
    static func decompress(_ source: UnsafeRawBufferPointer, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let d = ZSTD_createDCtx() else { throw PackError.zstd("cannot create a decompression context") }
        defer { ZSTD_freeDCtx(d) }
        _ = ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, 31)
        var out = [UInt8](repeating: 0, count: ZSTD_DStreamOutSize())
        var input = ZSTD_inBuffer(src: source.baseAddress, size: source.count, pos: 0)
        var last = 0
        while input.pos < input.size {
            last = try out.withUnsafeMutableBytes { o -> Int in
                var output = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
                let r = ZSTD_decompressStream(d, &output, &input)
                if ZSTD_isError(r) != 0 { throw PackError.zstd("\(String(cString: ZSTD_getErrorName(r))) at compressed byte \(input.pos)") }
                try sink(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(o)[0..<output.pos]))
                return r
            }
        }
        // Flush what the decoder still holds; no progress with data still expected means truncation.
        while last != 0 {
            let (produced, r) = try out.withUnsafeMutableBytes { o -> (Int, Int) in
                var output = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
                let r = ZSTD_decompressStream(d, &output, &input)
                if ZSTD_isError(r) != 0 { throw PackError.zstd(String(cString: ZSTD_getErrorName(r))) }
                try sink(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(o)[0..<output.pos]))
                return (output.pos, r)
            }
            if produced == 0 && r != 0 { throw PackError.zstd("truncated stream: the last frame is incomplete") }
            last = r
        }
    }
}
