// Atomic outputs: everything is written under a temporary sibling name and renamed into
// place only when complete, so the final path holds either nothing, the previous output,
// or the complete new one.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CDiTKitSupport

/// Why an output could not be written.
public enum OutputError: Error, CustomStringConvertible, Sendable {
    /// The output path is taken and `--force` was not given.
    case exists(String)
    /// The output path holds something DiTKit did not write (or an output of another kind), which
    /// `--force` may not replace: `found` says what is there.
    case notReplaceable(String, expected: String, found: String)
    /// The directory the output would go into does not exist.
    case noDirectory(String, output: String)
    case system(SystemError)
    case shortWrite(path: String, expected: Int, written: Int)

    public var description: String {
        switch self {
        case let .noDirectory(d, output): return "\(d): no such directory to write \(FileSystem.baseName(output)) into"
        case .exists(let p): return "\(p): already exists (use --force to replace it)"
        case let .notReplaceable(p, expected, found):
            return "\(p): \(found); --force replaces only what DiTKit wrote (here: \(expected)), so it was left untouched: choose another output path"
        case .system(let e): return e.description
        case .shortWrite(let p, let e, let w): return "\(p): short write (\(w) of \(e) bytes)"
        }
    }
}

/// File-system helpers used by every writer.
public enum FileSystem {
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Size of a regular file, or `nil`.
    public static func fileSize(_ path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int(st.st_size)
    }

    /// Names in a directory (without `.` and `..`), sorted; empty when it cannot be read.
    public static func listDirectory(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Removes a file or a directory tree; ignores a missing path.
    public static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for n in listDirectory(path) { removeTree(path + "/" + n) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    /// Creates a directory (mode 0755). Throws `OutputError.system`.
    public static func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o755) == 0 else { throw OutputError.system(SystemError("mkdir", path: path)) }
    }

    /// Creates `path` and missing parents.
    public static func makeDirectories(_ path: String) throws {
        if isDirectory(path) { return }
        let parent = parentDirectory(path)
        if parent != path, !parent.isEmpty, !isDirectory(parent) { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw OutputError.system(SystemError("mkdir", path: path))
        }
    }

    /// Directory part of a path ("." when there is none).
    public static func parentDirectory(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        let d = String(p[..<slash])
        return d.isEmpty ? "/" : d
    }

    /// `directory/name` without a doubled slash when `directory` ends with one (`models/` + `a.ditkit`
    /// is `models/a.ditkit`): paths built from what the user typed are printed as they should read.
    public static func join(_ directory: String, _ name: String) -> String {
        var d = directory
        while d.count > 1 && d.hasSuffix("/") { d.removeLast() }
        return d == "/" ? "/" + name : d + "/" + name
    }

    /// Last path component.
    public static func baseName(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        guard let slash = p.lastIndex(of: "/") else { return p }
        return String(p[p.index(after: slash)...])
    }

    /// Writes all of `bytes` to `fd`, retrying on EINTR. Throws on error or a short write.
    public static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw OutputError.system(SystemError("write", path: path))
            }
            if n == 0 { throw OutputError.shortWrite(path: path, expected: bytes.count, written: done) }
            done += n
        }
    }

    /// Sees the path of every `fsync` DiTKit makes (tests: whether an output was made durable).
    public static let syncObserver = Locked<(@Sendable (String) -> Void)?>(nil)

    /// Flushes `fd` (the file or directory at `path`) to stable storage: `fsync`, told to
    /// `syncObserver`. True on success.
    public static func sync(_ fd: Int32, path: String) -> Bool {
        syncObserver.withLock { $0 }?(path)
        return fsync(fd) == 0
    }

    /// Writes a whole small file (not atomically; use inside an `AtomicOutput` temp path), and
    /// flushes it to stable storage unless `sync` is false.
    public static func writeFile(_ path: String, _ bytes: [UInt8], sync: Bool = true) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw OutputError.system(SystemError("open", path: path)) }
        defer { close(fd) }
        try bytes.withUnsafeBytes { try writeAll(fd: fd, $0, path: path) }
        guard !sync || FileSystem.sync(fd, path: path) else { throw OutputError.system(SystemError("fsync", path: path)) }
    }

    /// Reads a whole small file. Throws `SystemError`.
    public static func readFile(_ path: String) throws -> [UInt8] {
        let m = try MappedFile(path: path)
        return Array(m.bytes)
    }
}

/// What an output path may hold for `--force` to replace it: an output DiTKit itself wrote, of
/// the same kind (a bundle replaces a bundle, a safetensors export a safetensors export).
/// Anything else is refused with `OutputError.notReplaceable` and left untouched.
public struct OutputKind: Sendable {
    /// The kind in words, for errors (`a DiTKit bundle`).
    public let description: String
    /// Whether outputs of this kind are directories (else regular files).
    public let isDirectory: Bool
    /// Given an existing item of the right type (a directory or a regular file, never a symbolic
    /// link), says why it is not an output of this kind, or returns `nil` when it is one.
    public let disqualification: @Sendable (String) -> String?

    public init(_ description: String, directory: Bool, disqualification: @escaping @Sendable (String) -> String?) {
        self.description = description
        self.isDirectory = directory
        self.disqualification = disqualification
    }

    /// Why `--force` may not replace what is at `path` (`nil`: it may).
    public func refusal(_ path: String) -> String? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        switch st.st_mode & S_IFMT {
        case S_IFDIR where isDirectory, S_IFREG where !isDirectory: return disqualification(path)
        case S_IFDIR: return "a directory"
        case S_IFREG: return "a file"
        case S_IFLNK: return "a symbolic link"
        default: return "a special file"
        }
    }

    /// A file DiTKit keeps for itself in its cache (trust-on-first-use pins): any regular file.
    public static let cacheFile = OutputKind("a DiTKit cache file", directory: false) { _ in nil }

    /// Names in directory `path` that are not in `allowed`, described for an error (`nil` when none).
    public static func unexpectedEntries(_ path: String, allowed: Set<String>) -> String? {
        let extra = FileSystem.listDirectory(path).filter { !allowed.contains($0) }
        guard !extra.isEmpty else { return nil }
        let shown = extra.prefix(3).joined(separator: ", ") + (extra.count > 3 ? ", … (\(extra.count - 3) more)" : "")
        return "a directory holding \(shown)"
    }
}

/// Registry of temporary paths to remove if the process is interrupted (SIGINT/SIGTERM/SIGHUP).
public enum TemporaryPaths {
    nonisolated(unsafe) private static var paths: [String] = []
    nonisolated(unsafe) private static var lock = pthread_mutex_t()
    nonisolated(unsafe) private static var installed = false

    static func register(_ path: String) {
        pthread_mutex_lock(&lock)
        paths.append(path)
        if !installed {
            installed = true
            for s in [SIGINT, SIGTERM, SIGHUP] {
                signal(s) { sig in
                    TemporaryPaths.removeAll()
                    signal(sig, SIG_DFL)
                    raise(sig)
                }
            }
        }
        pthread_mutex_unlock(&lock)
    }

    static func unregister(_ path: String) {
        pthread_mutex_lock(&lock)
        paths.removeAll { $0 == path }
        pthread_mutex_unlock(&lock)
    }

    static func removeAll() {
        for p in paths { FileSystem.removeTree(p) }
    }
}

/// An output written under a temporary sibling path and moved into place by `commit()`.
///
/// The temporary path is a hidden sibling (`.NAME.partial-PID`) in the same directory, so the
/// final rename never crosses file systems. An existing output is replaced only with `force`,
/// and then by an atomic exchange (`renameat2(RENAME_EXCHANGE)`) where the kernel supports it,
/// so readers see the old or the new output, never a mix. If the process dies before
/// `commit()`, the final path is untouched; `discard()` (also called on interruption) removes
/// the temporary.
///
/// The writer holds a lock on its temporary for as long as it lives, and every new output removes
/// the temporaries in its directory whose writer is gone (its process does not exist and nobody
/// holds the lock), so a killed run's leftovers disappear with the next run that writes there.
public final class AtomicOutput {
    /// Where the output will end up.
    public let finalPath: String
    /// Where to write meanwhile.
    public let temporaryPath: String
    public let kind: OutputKind
    public var isDirectory: Bool { kind.isDirectory }
    private let force: Bool
    private var done = false
    /// The descriptor holding the lock on the temporary (-1 where the file system has no locks).
    private var lockFD: Int32 = -1

    /// Prepares an output of `kind`. Throws `OutputError.exists` when `finalPath` exists and `force`
    /// is false, and `OutputError.notReplaceable` when it holds something that is not DiTKit's
    /// own output of `kind` (then nothing is touched).
    public init(finalPath: String, kind: OutputKind, force: Bool) throws {
        self.finalPath = finalPath
        self.kind = kind
        self.force = force
        try AtomicOutput.checkReplaceable(finalPath, kind: kind, force: force)
        let directory = kind.isDirectory
        let parent = FileSystem.parentDirectory(finalPath)
        let base = FileSystem.baseName(finalPath)
        let prefix = (parent == "." && !finalPath.hasPrefix("./") ? "" : parent + "/") + ".\(base).partial-"
        temporaryPath = prefix + "\(getpid())"
        guard FileSystem.isDirectory(parent) else { throw OutputError.noDirectory(parent, output: finalPath) }
        FileSystem.removeTree(temporaryPath)
        AtomicOutput.removeStalePartials(directory: parent)
        TemporaryPaths.register(temporaryPath)
        do {
            if directory {
                try FileSystem.makeDirectory(temporaryPath)
            } else {
                let fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw OutputError.system(SystemError("open", path: temporaryPath)) }
                close(fd)
            }
        } catch {
            TemporaryPaths.unregister(temporaryPath)
            throw error
        }
        lockFD = ditkit_hold_lock(temporaryPath)
    }

    /// Throws what `init` would throw for `path` (`OutputError.exists` or `.notReplaceable`), without
    /// preparing anything: commands check every output before a long run instead of failing after it.
    public static func checkAvailable(_ path: String, kind: OutputKind, force: Bool) throws {
        try checkReplaceable(path, kind: kind, force: force)
    }

    /// Throws unless `path` is free, or `force` is given and it holds DiTKit's own output of `kind`.
    static func checkReplaceable(_ path: String, kind: OutputKind, force: Bool) throws {
        guard FileSystem.exists(path) else { return }
        guard force else { throw OutputError.exists(path) }
        if let found = kind.refusal(path) { throw OutputError.notReplaceable(path, expected: kind.description, found: found) }
    }

    /// Removes the temporaries of dead writers in `directory`: `.NAME.partial-PID` whose process
    /// is gone and whose lock nobody holds (a writer in another PID namespace sharing the directory
    /// still holds its lock). `.NAME.partial-PID.old` is a previous output moved aside by a commit
    /// that died halfway (only without renameat2): it goes back to NAME when NAME is missing.
    static func removeStalePartials(directory: String) {
        for name in FileSystem.listDirectory(directory) {
            guard name.hasPrefix("."), let marker = name.ranges(of: ".partial-").last else { continue }
            let base = String(name[name.index(after: name.startIndex)..<marker.lowerBound])
            var pidText = name[marker.upperBound...]
            let aside = pidText.hasSuffix(".old")
            if aside { pidText = pidText.dropLast(4) }
            guard !base.isEmpty, let pid = Int32(pidText), pid > 0, pid != getpid() else { continue }
            guard kill(pid, 0) != 0, errno == ESRCH else { continue }
            let path = directory + "/" + name
            if aside {
                let original = directory + "/" + base
                if !FileSystem.exists(original) && rename(path, original) == 0 { continue }
                FileSystem.removeTree(path)
            } else if ditkit_is_locked(path) == 0 {
                FileSystem.removeTree(path)
            }
        }
    }

    /// Moves the temporary into place. Syncs the parent directory afterwards unless `sync` is false
    /// (the output then survives a crash of the operating system only once the kernel has written it
    /// back on its own).
    public func commit(sync: Bool = true) throws {
        precondition(!done, "AtomicOutput committed twice")
        // Something may have appeared at the final path while the output was being written.
        try AtomicOutput.checkReplaceable(finalPath, kind: kind, force: force)
        // An input that shrank while it was mapped was read as zeros (MappedFile): nothing built
        // from it is moved into place.
        try MappedFile.checkMappedFilesUnchanged()
        if FileSystem.exists(finalPath) {
            if ditkit_exchange_paths(temporaryPath, finalPath) == 0 {
                // The old output now sits at the temporary path.
                FileSystem.removeTree(temporaryPath)
            } else {
                // No atomic exchange here: move the old one aside, then the new one in.
                let aside = temporaryPath + ".old"
                FileSystem.removeTree(aside)
                guard rename(finalPath, aside) == 0 else {
                    throw OutputError.system(SystemError("rename", path: finalPath))
                }
                guard rename(temporaryPath, finalPath) == 0 else {
                    let e = SystemError("rename", path: finalPath)
                    _ = rename(aside, finalPath)
                    throw OutputError.system(e)
                }
                FileSystem.removeTree(aside)
            }
        } else {
            guard rename(temporaryPath, finalPath) == 0 else {
                throw OutputError.system(SystemError("rename", path: finalPath))
            }
        }
        done = true
        TemporaryPaths.unregister(temporaryPath)
        releaseLock()
        guard sync else { return }
        let parent = FileSystem.parentDirectory(finalPath)
        let dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = FileSystem.sync(dfd, path: parent); close(dfd) }
    }

    /// Removes the temporary (no effect after `commit()`).
    public func discard() {
        guard !done else { return }
        done = true
        FileSystem.removeTree(temporaryPath)
        TemporaryPaths.unregister(temporaryPath)
        releaseLock()
    }

    private func releaseLock() {
        if lockFD >= 0 { close(lockFD); lockFD = -1 }
    }

    deinit { discard() }
}

extension AtomicOutput {
    /// Produces an output: `body` writes to the temporary path it is given; the result is renamed
    /// into place when `body` returns, and discarded if it throws.
    public static func produce<R>(_ path: String, kind: OutputKind, force: Bool, _ body: (String) throws -> R) throws -> R {
        let out = try AtomicOutput(finalPath: path, kind: kind, force: force)
        do {
            let r = try body(out.temporaryPath)
            try out.commit()
            return r
        } catch {
            out.discard()
            throw error
        }
    }

    /// Writes `bytes` to `path` atomically.
    public static func write(_ bytes: [UInt8], to path: String, kind: OutputKind, force: Bool) throws {
        try produce(path, kind: kind, force: force) { try FileSystem.writeFile($0, bytes) }
    }
}

/// A file being written sequentially with positioned padding, used for blobs and exports.
public final class OutputFile {
    public let path: String
    public let fd: Int32
    /// Bytes written so far.
    public private(set) var offset = 0

    /// Creates (truncates) `path` for writing.
    public init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw OutputError.system(SystemError("open", path: path)) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try FileSystem.writeAll(fd: fd, bytes, path: path)
        offset += bytes.count
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Writes zero bytes until `offset` is a multiple of `alignment`.
    public func pad(to alignment: Int) throws {
        let target = try Checked.alignUp(offset, alignment)
        if target > offset { try write([UInt8](repeating: 0, count: target - offset)) }
    }

    private var closed = false

    /// Flushes to stable storage and closes.
    public func close() throws {
        closed = true
        guard FileSystem.sync(fd, path: path) else {
            let e = SystemError("fsync", path: path)
            _ = closeDescriptor(fd)
            throw OutputError.system(e)
        }
        guard closeDescriptor(fd) == 0 else { throw OutputError.system(SystemError("close", path: path)) }
    }

    deinit { if !closed { _ = closeDescriptor(fd) } }
}

private func closeDescriptor(_ fd: Int32) -> Int32 {
    close(fd)
}
