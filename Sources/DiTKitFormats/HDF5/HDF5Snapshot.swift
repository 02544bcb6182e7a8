// Reading HDF5 inputs (reference activations, noise) without trusting libhdf5 with the process.
//
// Fuzzing found that libhdf5 1.10.8 (Debian's) overflows heap buffers on malformed files
// (FUZZING.md). So the `ditkit` executable reads HDF5 inputs in a child process
// (`ditkit hdf5-snapshot FILE`), which writes every dataset and root attribute to a pipe in the
// framed format below; the parent validates the frames and keeps a snapshot. A child that crashes
// or fails refuses the file. Library users without the helper read in-process.
//
// Frames: magic "DKH5\x01", then records until "E":
//   "F" | "I"  dataset of float32 / int64: u32 path length, path, u32 rank, u64 dims[rank], data
//   "A"        root string attribute: u32 name length, name, u32 value length, value
//   "X"        the child refused the file: u32 length, reason (then it exits with status 2)
#if canImport(Glibc)
import Glibc
#endif
import DiTKitCore

/// Every dataset and root string attribute of an HDF5 file, in memory.
public struct HDF5Snapshot: Sendable {
    public var floats: [String: (shape: [Int], values: [Float])] = [:]
    public var integers: [String: (shape: [Int], values: [Int64])] = [:]
    public var attributes: [String: String] = [:]

    /// The executable (and leading arguments) that writes snapshots: set by the command line to
    /// itself, so libhdf5 runs in a child process. `nil` reads in-process.
    nonisolated(unsafe) public static var helper: [String]?

    /// Largest snapshot accepted from a child, in bytes (4 GiB).
    static let maxBytes = 4 << 30

    public init() {}

    public func exists(_ path: String) -> Bool { floats[path] != nil || integers[path] != nil }

    /// Dataset paths under `group` (e.g. `/layers`), sorted.
    public func datasets(under group: String) -> [String] {
        (Array(floats.keys) + Array(integers.keys)).filter { $0.hasPrefix(group + "/") }.sorted()
    }

    public func readFloats(_ path: String) throws -> (shape: [Int], values: [Float]) {
        if let f = floats[path] { return f }
        if let i = integers[path] { return (i.shape, i.values.map { Float($0) }) }
        throw HDF5Error.missing(path)
    }

    public func readInt64(_ path: String) throws -> (shape: [Int], values: [Int64]) {
        if let i = integers[path] { return i }
        if floats[path] != nil { throw HDF5Error.badDataset(path, "has the wrong element type") }
        throw HDF5Error.missing(path)
    }

    public func stringAttribute(_ name: String) -> String? { attributes[name] }

    /// Reads `path`: through the helper child when one is set, else in-process.
    public static func read(_ path: String) throws -> HDF5Snapshot {
        guard let helper else { return try decode(try encode(path)) }
        return try decode(try runHelper(helper + [path], path: path))
    }

    /// Reads only the root string attributes of `path` (no dataset is read), the same way.
    public static func readAttributes(_ path: String) throws -> [String: String] {
        guard let helper else { return try decode(try encode(path, datasets: false)).attributes }
        return try decode(try runHelper(helper + ["--attributes-only", path], path: path)).attributes
    }

    // MARK: writing frames (the child side)

    /// Reads the file with libhdf5 and returns its frames (only the attributes when `datasets` is false).
    public static func encode(_ path: String, datasets: Bool = true) throws -> [UInt8] {
        let f = try HDF5File.open(path)
        var out = Array("DKH5".utf8) + [1]
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { out += $0 } }
        func u64(_ v: Int) { withUnsafeBytes(of: UInt64(v).littleEndian) { out += $0 } }
        func name(_ s: String) { let b = Array(s.utf8); u32(b.count); out += b }
        var total = 0
        func dataset<T>(_ tag: UInt8, _ d: String, _ shape: [Int], _ values: [T]) throws {
            total += values.count * MemoryLayout<T>.size
            guard total <= maxBytes else { throw HDF5Error.badDataset(d, "the file holds more than \(maxBytes) bytes of data") }
            out.append(tag); name(d); u32(shape.count); for s in shape { u64(s) }
            values.withUnsafeBytes { out += $0 }
        }
        for d in datasets ? f.datasets(under: "/") : [] {
            if let (shape, values) = try? f.readFloats(d) {
                try dataset(UInt8(ascii: "F"), d, shape, values)
            } else if let (shape, values) = try? f.readInt64(d) {
                try dataset(UInt8(ascii: "I"), d, shape, values)
            }
        }
        for a in ["model", "steps", "sampler", "cfg_scale", "format"] {
            if let v = f.stringAttribute(a) { out.append(UInt8(ascii: "A")); name(a); name(v) }
        }
        out.append(UInt8(ascii: "E"))
        return out
    }

    /// The frames a child writes when it refuses the file, so the parent reports the reason in
    /// its own one-line error.
    public static func refusal(_ reason: String) -> [UInt8] {
        let b = Array(reason.utf8.prefix(4096))
        return Array("DKH5".utf8) + [1, UInt8(ascii: "X")] + withUnsafeBytes(of: UInt32(b.count).littleEndian) { Array($0) } + b
    }

    // MARK: reading frames (the parent side: frames are untrusted)

    /// Validates and decodes frames. Throws `HDF5Error` on anything malformed.
    public static func decode(_ bytes: [UInt8]) throws -> HDF5Snapshot {
        var s = HDF5Snapshot()
        var p = 0
        func fail(_ why: String) -> HDF5Error { .open("malformed snapshot at byte \(p): \(why)") }
        func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, n <= bytes.count - p else { throw fail("truncated") }
            defer { p += n }
            return bytes[p..<(p + n)]
        }
        func u32() throws -> Int { try take(4).reversed().reduce(0) { $0 << 8 | Int($1) } }
        func u64() throws -> Int {
            let v = try take(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return try Checked.int(v, "a snapshot size")
        }
        func string() throws -> String {
            let n = try u32()
            guard n <= 1 << 16 else { throw fail("name of \(n) bytes") }
            return String(decoding: try take(n), as: UTF8.self)
        }
        guard try take(5).elementsEqual(Array("DKH5".utf8) + [1]) else { throw fail("bad magic") }
        while true {
            let tag = try take(1).first ?? 0
            switch tag {
            case UInt8(ascii: "E"):
                guard p == bytes.count else { throw fail("data after the end") }
                return s
            case UInt8(ascii: "F"), UInt8(ascii: "I"):
                let path = try string()
                let rank = try u32()
                guard rank <= 8 else { throw fail("rank \(rank)") }
                var shape: [Int] = []
                for _ in 0..<rank { shape.append(try u64()) }
                let n = try Checked.product(shape, "a dataset size")
                let size = try Checked.mul(n, tag == UInt8(ascii: "F") ? 4 : 8, "a dataset size")
                let raw = try take(size)
                guard s.floats[path] == nil, s.integers[path] == nil else { throw fail("dataset \(path) twice") }
                if tag == UInt8(ascii: "F") {
                    s.floats[path] = (shape, copy(raw, as: Float.self))
                } else {
                    s.integers[path] = (shape, copy(raw, as: Int64.self))
                }
            case UInt8(ascii: "A"):
                let name = try string()
                s.attributes[name] = try string()
            case UInt8(ascii: "X"):
                throw HDF5Error.reader(try string())
            default:
                throw fail("unknown record \(tag)")
            }
        }
    }

    /// `raw` reinterpreted as little-endian values of `T` (whose size divides `raw.count`).
    private static func copy<T>(_ raw: ArraySlice<UInt8>, as: T.Type) -> [T] {
        let n = raw.count / MemoryLayout<T>.size
        return [T](unsafeUninitializedCapacity: n) { buf, c in
            raw.withUnsafeBytes { UnsafeMutableRawBufferPointer(buf).copyMemory(from: $0) }
            c = n
        }
    }

    /// Runs the helper and collects its standard output; a crash or failure refuses the file.
    static func runHelper(_ argv: [String], path: String) throws -> [UInt8] {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw HDF5Error.open("cannot create a pipe") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        // The child's reason comes back as a frame; its own stderr line would make the error two lines.
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var pid: pid_t = 0
        let cargs = argv.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cargs, environ)
        close(fds[1])
        guard rc == 0 else { close(fds[0]); throw HDF5Error.open("cannot start the HDF5 reader (\(String(cString: strerror(rc))))") }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var tooLarge = false
        while true {
            let n = Glibc.read(fds[0], &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if out.count + n > maxBytes + (1 << 20) { tooLarge = true; break }
            out += buf[0..<n]
        }
        close(fds[0])
        if tooLarge { kill(pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signaled = (status & 0x7F) != 0 && (status & 0x7F) != 0x7F
        if signaled { throw HDF5Error.open("libhdf5 crashed (signal \(status & 0x7F)) reading the file; refused") }
        let code = (status >> 8) & 0xFF
        guard code == 0 else {
            // A child that refused the file sent its reason as an "X" frame.
            if case .failure(let e as HDF5Error) = Result(catching: { try decode(out) }), case .reader = e { throw e }
            throw HDF5Error.open("libhdf5 could not read the file (reader exit status \(code))")
        }
        guard !tooLarge else { throw HDF5Error.open("the file holds more than \(maxBytes) bytes of data") }
        return out
    }
}
