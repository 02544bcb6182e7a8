// Read-only memory mappings and the byte buffers handed out from them.
import CDiTKitSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error from the operating system, with the call and path that failed.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let path: String
    public let code: Int32
    public init(_ call: String, path: String, code: Int32 = errno) {
        self.call = call
        self.path = path
        self.code = code
    }
    public var description: String {
        "\(path): \(call) failed: \(String(cString: strerror(code)))"
    }
}

/// The path names something other than a regular file (a FIFO, a device, a socket, a directory).
public struct NotARegularFile: Error, CustomStringConvertible, Sendable {
    public let path: String
    /// What it is instead (`a FIFO`, `a character device`).
    public let kind: String
    public var description: String { "\(path): not a regular file (\(kind)); DiTKit reads checkpoints from regular files only" }

    /// What `mode` (`st_mode`) describes, for messages.
    public static func kind(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFDIR: return "a directory"
        case S_IFLNK: return "a symbolic link"
        default: return "not a file"
        }
    }
}

/// Opening input files without blocking.
public enum RegularFile {
    /// Opens `path` read-only (`open(2)` with `O_NONBLOCK`, so that a FIFO with no writer does not
    /// block forever) and checks with `fstat(2)` that it is a regular file. Throws `SystemError`
    /// or `NotARegularFile`; the caller owns the returned descriptor.
    public static func open(_ path: String) throws -> Int32 {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        do {
            try check(fd, path: path)
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Reads exactly `count` bytes at `offset` of the file open on `fd` into `buffer` (`pread(2)`,
    /// retried on interruption and short reads). Throws `FileChangedWhileReading` when the file
    /// ends first (it shrank since it was measured), `SystemError` when the read fails.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int, path: String) throws {
        var done = 0
        while done < count {
            let n = pread(fd, buffer + done, count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: path)
            }
            if n == 0 { throw FileChangedWhileReading(path: path, pages: UInt64((count - done + 4095) / 4096)) }
            done += n
        }
    }

    /// Throws `NotARegularFile` unless `fd` is open on a regular file.
    public static func check(_ fd: Int32, path: String) throws {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError("fstat", path: path) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw NotARegularFile(path: path, kind: NotARegularFile.kind(of: st.st_mode)) }
    }
}

/// The file shrank (or could not be read) while it was mapped: pages past its new end read as zeros.
public struct FileChangedWhileReading: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let pages: UInt64
    public var description: String {
        "\(path): the file shrank while it was being read (\(pages) page\(pages == 1 ? "" : "s") past its new end); what was read from it is void"
    }
}

/// The file was written (its size or its modification or status-change time changed) while it was
/// being read: what was read from it, and any hash of it, may mix two versions.
public struct FileWrittenWhileReading: Error, CustomStringConvertible, Sendable {
    public let path: String
    public init(path: String) { self.path = path }
    public var description: String { "\(path): the file was written while it was being read; what was read from it is void (run again once it is complete)" }
}

/// A whole file mapped read-only into memory (`mmap(PROT_READ, MAP_PRIVATE)`).
///
/// The mapping lives as long as the object; buffers handed out keep it alive through
/// `RawBytes.owner`. An empty file maps to an empty buffer.
///
/// Truncation: when another process shrinks the file, touching a page past its new end raises
/// SIGBUS. Mappings are registered with a SIGBUS guard (CDiTKitSupport `ditkit_mapping_guard_install`)
/// that maps zeros over such a page instead, so the process lives; `checkUnchanged()` then
/// reports the loss, and every reader calls it before it trusts what it read.
public final class MappedFile: @unchecked Sendable {
    /// Path the file was opened from.
    public let path: String
    /// The mapped bytes.
    public let bytes: UnsafeRawBufferPointer
    private let base: UnsafeMutableRawPointer?
    private let length: Int

    /// Maps `path`. Throws `SystemError` when it cannot be opened or mapped, `NotARegularFile`
    /// (without blocking) for a FIFO, device, socket or directory.
    public convenience init(path: String) throws {
        let fd = try RegularFile.open(path)
        defer { close(fd) }
        try self.init(fd: fd, path: path)
    }

    /// A descriptor of the mapped file, kept open while the mapping lives (for in-kernel copies).
    public private(set) var descriptor: Int32 = -1

    /// Maps the regular file open on `fd` (the caller keeps ownership of `fd`).
    public init(fd: Int32, path: String) throws {
        self.path = path
        descriptor = dup(fd)
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError("fstat", path: path) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw NotARegularFile(path: path, kind: NotARegularFile.kind(of: st.st_mode)) }
        length = Int(st.st_size)
        if length == 0 {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let p = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw SystemError("mmap", path: path) }
        base = p
        bytes = UnsafeRawBufferPointer(start: p, count: length)
        if MappedFile.guardInstalled {
            guardSlot = ditkit_mapping_register(p, length)
            if guardSlot >= 0 { MappedFile.registry.withLock { $0[guardSlot] = path } }
        }
    }

    /// Installs the SIGBUS guard once per process (the first time a file is mapped).
    private static let guardInstalled: Bool = ditkit_mapping_guard_install() == 0
    /// This mapping's slot in the guard, or -1 when it is not guarded.
    private var guardSlot: Int32 = -1

    /// `count` bytes at `offset`, read with `pread(2)` instead of through the mapping (no page of
    /// the mapping becomes resident), or copied from it for an in-memory file; fewer at the end of
    /// the file. Throws `SystemError` when the read fails.
    public func read(at offset: Int, count: Int) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset <= length else { return [] }
        let n = min(count, length - offset)
        guard n > 0 else { return [] }
        guard descriptor >= 0 else { return Array(bytes[offset..<(offset + n)]) }
        var out = [UInt8](repeating: 0, count: n)
        try out.withUnsafeMutableBytes { try RegularFile.read(descriptor, into: $0.baseAddress!, count: n, at: offset, path: path) }
        return out
    }

    /// Pages of this mapping that vanished (the file shrank) and now read as zeros.
    public var pagesLost: UInt64 { guardSlot >= 0 ? ditkit_mapping_faults(guardSlot) : 0 }

    /// Throws `FileChangedWhileReading` when pages of the mapping vanished since it was mapped:
    /// whatever was read from them is zeros, not the file.
    public func checkUnchanged() throws {
        let lost = pagesLost
        if lost > 0 { throw FileChangedWhileReading(path: path, pages: lost) }
    }

    /// Paths of the guarded mappings, by slot.
    private static let registry = Locked<[Int32: String]>([:])

    /// Throws `FileChangedWhileReading` when a file still mapped by this process lost pages (it
    /// shrank while mapped): anything computed from it is void. `AtomicOutput.commit` calls it, so
    /// no output built from such a file is moved into place.
    public static func checkMappedFilesUnchanged() throws {
        guard ditkit_mapping_total_faults() > 0 else { return }
        let damaged = registry.withLock { live in live.first { ditkit_mapping_faults($0.key) > 0 } }
        if let (slot, path) = damaged { throw FileChangedWhileReading(path: path, pages: ditkit_mapping_faults(slot)) }
    }

    /// Pages that vanished from any mapping of this process since it started (a command's last
    /// check before it reports success: its inputs may be unmapped by then).
    public static var pagesLostInProcess: UInt64 { ditkit_mapping_total_faults() }

    /// An in-memory copy of `bytes` standing in for a file (fuzzing and tests): no descriptor.
    public init(copying bytes: [UInt8], path: String) {
        self.path = path
        length = bytes.count
        if bytes.isEmpty {
            base = nil
            self.bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let p = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 4096)
        bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        base = p
        owned = true
        self.bytes = UnsafeRawBufferPointer(start: p, count: bytes.count)
    }

    private var owned = false

    /// File size in bytes.
    public var count: Int { length }

    /// Drops the pages of `range` from this process (they stay in the page cache), so reading a
    /// large file through the mapping does not grow resident memory.
    public func release(_ range: Range<Int>) {
        guard let base, range.count > 0, !owned else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound / page) * page
        let end = min(length, ((range.upperBound + page - 1) / page) * page)
        if end > start { _ = madvise(base + start, end - start, MADV_DONTNEED) }
    }

    /// Drops the pages under `buffer` when it lies in this mapping (see `release(_:)`).
    public func release(_ buffer: UnsafeRawBufferPointer) {
        guard let b = buffer.baseAddress, let base, !owned else { return }
        let start = b - UnsafeRawPointer(base)
        guard start >= 0, start + buffer.count <= length else { return }
        release(start..<(start + buffer.count))
    }

    /// Drops the pages of `bytes` when they are a view of a mapped file; does nothing otherwise.
    public static func releasePages(of bytes: RawBytes) {
        (bytes.owner as? MappedFile)?.release(bytes.buffer)
    }

    /// A zero-copy view of `range`, keeping the mapping alive. The range must be checked by the caller.
    public func slice(_ range: Range<Int>) -> RawBytes {
        precondition(range.lowerBound >= 0 && range.upperBound <= length, "slice out of bounds")
        // SAFETY: bounds checked above; the buffer stays valid while `self` is retained by the result.
        let start = bytes.baseAddress.map { $0 + range.lowerBound }
        return RawBytes(owner: self, buffer: UnsafeRawBufferPointer(start: start, count: range.count))
    }

    deinit {
        if guardSlot >= 0 {
            MappedFile.registry.withLock { $0[guardSlot] = nil }
            ditkit_mapping_unregister(guardSlot)
        }
        if let base { if owned { base.deallocate() } else { munmap(base, length) } }
        if descriptor >= 0 { close(descriptor) }
    }
}

/// A buffer with a fixed alignment, freed when released.
///
/// Buffers of 1 MiB and more are mapped directly (`mmap`) and unmapped on release, so that large
/// temporary buffers never stay resident in the allocator's arenas (glibc raises its mmap threshold
/// after large frees, which would otherwise keep hundreds of MB resident during a conversion).
public final class OwnedBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let count: Int
    private let mapped: Bool
    static let mapThreshold = 1 << 20

    /// Allocates `count` bytes aligned to `alignment` (at most a page), zero-filled.
    public convenience init(count: Int, alignment: Int = 64) {
        self.init(uninitializedCount: count, alignment: alignment)
        if !mapped { pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1)) }
    }

    /// Allocates without zero-filling (the caller writes every byte). Mapped buffers are zero anyway.
    public init(uninitializedCount count: Int, alignment: Int = 64) {
        self.count = count
        if count >= OwnedBuffer.mapThreshold,
           let p = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED {
            pointer = p
            mapped = true
        } else {
            pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: alignment)
            mapped = false
        }
    }

    public var mutableBytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: pointer, count: count) }
    public var bytes: RawBytes { RawBytes(owner: self, buffer: UnsafeRawBufferPointer(start: pointer, count: count)) }

    deinit {
        if mapped { munmap(pointer, count) } else { pointer.deallocate() }
    }
}

/// Immutable bytes plus whatever keeps them alive (a mapping or an allocation).
public struct RawBytes: @unchecked Sendable {
    /// Keeps `buffer` valid; `nil` only for static or empty data.
    public let owner: AnyObject?
    /// The bytes.
    public let buffer: UnsafeRawBufferPointer

    public init(owner: AnyObject?, buffer: UnsafeRawBufferPointer) {
        self.owner = owner
        self.buffer = buffer
    }

    /// Copies `array` into a fresh owned buffer.
    public init(copying array: [UInt8]) {
        let o = OwnedBuffer(uninitializedCount: array.count)
        array.withUnsafeBytes { src in
            if let b = src.baseAddress { o.pointer.copyMemory(from: b, byteCount: src.count) }
        }
        self = o.bytes
    }

    public var count: Int { buffer.count }

    /// The bytes of `range` (checked by the caller), kept alive by the same owner.
    public func slice(_ range: Range<Int>) -> RawBytes {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "slice out of bounds")
        return RawBytes(owner: owner, buffer: UnsafeRawBufferPointer(rebasing: buffer[range]))
    }

    /// Whether the start address is a multiple of `alignment`.
    public func isAligned(to alignment: Int) -> Bool {
        guard let b = buffer.baseAddress else { return true }
        return Int(bitPattern: b) % alignment == 0
    }

    /// Whether both hold the same bytes.
    public func contentEquals(_ other: RawBytes) -> Bool {
        guard count == other.count else { return false }
        guard count > 0, let a = buffer.baseAddress, let b = other.buffer.baseAddress else { return true }
        return withExtendedLifetime((self, other)) { memcmp(a, b, count) == 0 }
    }

    /// The bytes as a Swift array (copies).
    public var array: [UInt8] { Array(buffer) }

    /// A copy into fresh storage aligned to 64 bytes.
    public func alignedCopy() -> RawBytes {
        let o = OwnedBuffer(uninitializedCount: count)
        if let src = buffer.baseAddress, count > 0 { o.pointer.copyMemory(from: src, byteCount: count) }
        return o.bytes
    }

    /// Views the bytes as `T` elements, copying first when they are not aligned for `T`.
    public func withElements<T, R>(of type: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
        let source = isAligned(to: MemoryLayout<T>.alignment) ? self : alignedCopy()
        let n = source.count / MemoryLayout<T>.stride
        // SAFETY: alignment ensured above; the buffer is kept alive by `source` for the call.
        return try withExtendedLifetime(source) {
            try body(UnsafeBufferPointer(start: source.buffer.baseAddress?.assumingMemoryBound(to: T.self), count: n))
        }
    }
}
