// Remembered SHA-256s of whole files. Converting one source to several types (f16, int8, Q8_0,
// Q4_K ...), or identifying a file that was just converted or fetched, then reads it for its hash
// once: the whole-file SHA-256 is the slowest part of a conversion (one core at about 1.3 GB/s).
#if canImport(Glibc)
import Glibc
#endif

/// One version of a file's contents, told without reading them: its device, inode and size, and
/// its modification and status-change times to the nanosecond. Any write to the file changes its
/// status-change time (`st_ctime`, which no user can set back); replacing the file gives it
/// another inode.
public struct FileIdentity: Hashable, Sendable {
    public let device: UInt64
    public let inode: UInt64
    public let size: Int64
    /// `st_mtim` in nanoseconds since the epoch.
    public let modified: Int64
    /// `st_ctim` in nanoseconds since the epoch.
    public let changed: Int64

    init(_ st: stat) {
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        modified = Int64(st.st_mtim.tv_sec) &* 1_000_000_000 &+ Int64(st.st_mtim.tv_nsec)
        changed = Int64(st.st_ctim.tv_sec) &* 1_000_000_000 &+ Int64(st.st_ctim.tv_nsec)
    }

    /// The identity of the regular file open on `fd` (nil when it cannot be told).
    public init?(descriptor fd: Int32) {
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        self.init(st)
    }

    /// The identity of the regular file at `path`, symbolic links followed (nil when it cannot be told).
    public init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        self.init(st)
    }

    /// The entry name: `DEVICE-INODE-SIZE-MODIFIED-CHANGED`, decimal.
    var key: String { "\(device)-\(inode)-\(size)-\(modified)-\(changed)" }
    /// The prefix every version of this file shares (`DEVICE-INODE-`).
    var filePrefix: String { "\(device)-\(inode)-" }
}

/// SHA-256s of whole files remembered by `FileIdentity`, one small file per file version in
/// `<cache>/digests/sha256/` (the cache `zoo fetch` downloads to). A digest is remembered only when
/// the file did not change while it was hashed and its last change is at least `settle` older than
/// the start of the hash, so a write in the same timestamp tick as the hash cannot go unseen. The
/// store never fails the work that uses it: an entry that cannot be read is a miss, one that
/// cannot be written is not remembered.
public struct FileDigests: Sendable {
    public let directory: String
    /// How much older than the hash's start the file's last change must be (2 s).
    public static let settle: Int64 = 2_000_000_000

    public init(cache: String) { directory = FileSystem.join(cache, "digests/sha256") }

    /// The store in the standard cache (`CacheDirectory.standard`).
    public static var standard: FileDigests { FileDigests(cache: CacheDirectory.standard) }

    /// The remembered SHA-256 (64 lowercase hex digits) of this version of a file, or nil.
    public func sha256(_ id: FileIdentity) -> String? {
        let path = FileSystem.join(directory, id.key)
        guard FileSystem.exists(path), let bytes = try? FileSystem.readFile(path), bytes.count >= 64 else { return nil }
        let hex = bytes[0..<64]
        guard hex.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        return String(decoding: hex, as: UTF8.self)
    }

    /// Remembers `sha256` for `before`, the identity the file had when its hash started at
    /// `started` (CLOCK_REALTIME ns), if `after` (its identity once hashed) is the same and the
    /// file had settled. Earlier versions of the same file are forgotten. Returns whether it was
    /// remembered.
    @discardableResult
    public func remember(_ sha256: String, before: FileIdentity, after: FileIdentity?, started: Int64, path: String) -> Bool {
        guard before == after, before.changed <= started - FileDigests.settle, sha256.utf8.count == 64 else { return false }
        do {
            try FileSystem.makeDirectories(directory)
            for old in FileSystem.listDirectory(directory) where old.hasPrefix(before.filePrefix) && old != before.key {
                _ = unlink(FileSystem.join(directory, old))
            }
            try AtomicOutput.write(Array((sha256 + "  " + path + "\n").utf8), to: FileSystem.join(directory, before.key),
                                   kind: .cacheFile, force: true)
            return true
        } catch {
            return false
        }
    }

    /// The SHA-256 of the file at `path` (open on `descriptor` when given): the remembered one
    /// unless `rehash`, else `hash()`'s, then remembered. Returns it and whether it was remembered
    /// from before (not hashed now).
    public func sha256(path: String, descriptor: Int32? = nil, rehash: Bool = false,
                       hash: () throws -> String) throws -> (sha256: String, remembered: Bool) {
        let identity = { descriptor.flatMap { FileIdentity(descriptor: $0) } ?? FileIdentity(path: path) }
        guard let before = identity() else { return (try hash(), false) }
        if !rehash, let known = sha256(before) { return (known, true) }
        let started = FileDigests.now()
        let digest = try hash()
        remember(digest, before: before, after: identity(), started: started, path: path)
        return (digest, false)
    }

    /// CLOCK_REALTIME in nanoseconds (the clock file times come from).
    public static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }
}

/// DiTKit's cache: `$DITKIT_CACHE`, else `$XDG_CACHE_HOME/ditkit`, else `~/.cache/ditkit`.
public enum CacheDirectory {
    public static var standard: String {
        // Without a trailing slash, so that paths built from it print without `//`.
        if let d = environment("DITKIT_CACHE") { return trimmed(d) }
        if let x = environment("XDG_CACHE_HOME") { return FileSystem.join(x, "ditkit") }
        return FileSystem.join(environment("HOME") ?? ".", ".cache/ditkit")
    }

    /// `path` without trailing slashes.
    public static func trimmed(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}
