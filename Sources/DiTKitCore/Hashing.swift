// Checksums: SHA-256 over mapped bytes and files, via swift-crypto (BoringSSL, SHA-NI where the CPU
// has it), for whole files and manifests; XXH3-128, via xxHash (libxxhash), for every tensor of a
// format-3 bundle (an integrity checksum at memory speed, not a cryptographic hash).
import Crypto
import CXXHash
#if canImport(Glibc)
import Glibc
#endif

/// Lowercase hex encoding.
public func hexString<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    let digits: [UInt8] = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(64)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// An incremental SHA-256.
public struct SHA256Hasher {
    private var state = SHA256()
    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        if bytes.count > 0 { state.update(bufferPointer: bytes) }
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest as 64 lowercase hex digits.
    public func finalizeHex() -> String { hexString(state.finalize()) }

    /// SHA-256 of `bytes`, hex.
    public static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        var h = SHA256Hasher()
        h.update(bytes)
        return h.finalizeHex()
    }

    /// SHA-256 of `bytes`, hex.
    public static func hex(_ bytes: RawBytes) -> String {
        withExtendedLifetime(bytes) { hex(bytes.buffer) }
    }

    /// SHA-256 of the file at `path`, read with `read(2)` into one reused 4 MiB buffer: a file that
    /// shrinks while it is read ends the read instead of raising SIGBUS as a mapping would, and
    /// resident memory stays at the buffer size. Throws `SystemError`, `NotARegularFile`.
    public static func hex(file path: String) throws -> String {
        let fd = try RegularFile.open(path)
        defer { close(fd) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 22, alignment: 4096)
        defer { buffer.deallocate() }
        var h = SHA256Hasher()
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: path)
            }
            if n == 0 { break }
            h.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return h.finalizeHex()
    }
}

extension SHA256Hasher {
    /// SHA-256 of a whole mapped file, read with `pread(2)` on its descriptor in steps of `step`
    /// bytes into one buffer: no page of the file is mapped for it, so hashing a file that other
    /// threads read through their mapping never changes the process's page tables under them, and
    /// resident memory stays at the buffer; the kernel is asked to read the next steps ahead
    /// (`POSIX_FADV_WILLNEED`). `pace` is called with each step's byte range before it is read (a
    /// caller can hold the hash back so it reads the file about when others do); `progress` gets
    /// the byte count of each step. A file without a descriptor (an in-memory copy) is hashed in
    /// place. Throws `FileChangedWhileReading` when the file ends early, `SystemError`.
    public static func hex(mapped file: MappedFile, step: Int = 8 << 20, pace: ((Range<Int>) -> Void)? = nil,
                           progress: ((Int) -> Void)? = nil) throws -> String {
        var h = SHA256Hasher()
        guard file.descriptor >= 0 else {
            h.update(file.bytes)
            progress?(file.count)
            return h.finalizeHex()
        }
        let stride = max(step, 1 << 16)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: stride, alignment: 4096)
        defer { buffer.deallocate() }
        var position = 0
        while position < file.count {
            let end = min(file.count, position + stride)
            pace?(position..<end)
            let ahead = min(file.count - end, 4 * stride)
            if ahead > 0 { _ = posix_fadvise(file.descriptor, off_t(end), off_t(ahead), POSIX_FADV_WILLNEED) }
            try RegularFile.read(file.descriptor, into: buffer, count: end - position, at: position, path: file.path)
            h.update(UnsafeRawBufferPointer(start: buffer, count: end - position))
            progress?(end - position)
            position = end
        }
        return h.finalizeHex()
    }
}

/// An incremental XXH3-128 (xxHash's `XXH3_128bits_*`, seed 0, default secret).
///
/// The digest is printed in xxHash's canonical form (`XXH128_canonicalFromHash`: the high 64 bits
/// then the low 64 bits, big-endian), as 32 lowercase hex digits: what `xxh128sum` and Python's
/// `xxhash.xxh3_128_hexdigest` print for the same bytes.
public final class XXH3Hasher {
    private let state: OpaquePointer

    /// A fresh state. `XXH3_createState` only fails when memory runs out, like any allocation.
    public init() {
        // SAFETY: XXH3_createState returns an aligned heap state or NULL (out of memory).
        guard let s = XXH3_createState() else { preconditionFailure("XXH3_createState: out of memory") }
        state = s
        XXH3_128bits_reset(state)
    }

    deinit { XXH3_freeState(state) }

    /// Feeds `bytes`.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        if let b = bytes.baseAddress, bytes.count > 0 { ditkit_xxh3_128_update(state, b, bytes.count) }
    }

    /// The digest of everything fed so far (the state can keep going).
    public func finalizeHex() -> String { XXH3Hasher.canonicalHex(XXH3_128bits_digest(state)) }

    /// XXH3-128 of `bytes`, hex (one call, no state).
    public static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        canonicalHex(ditkit_xxh3_128(bytes.baseAddress, bytes.count))
    }

    /// XXH3-128 of `bytes`, hex.
    public static func hex(_ bytes: RawBytes) -> String {
        withExtendedLifetime(bytes) { hex(bytes.buffer) }
    }

    static func canonicalHex(_ h: XXH128_hash_t) -> String {
        var canonical = XXH128_canonical_t()
        XXH128_canonicalFromHash(&canonical, h)
        return withUnsafeBytes(of: canonical.digest) { hexString($0) }
    }
}

/// The checksum a bundle manifest records for every stored and source tensor: SHA-256 in format
/// versions 1 and 2, XXH3-128 from version 3 on (FORMAT.md). The raw value is the manifest member
/// that holds it.
public enum ChecksumAlgorithm: String, Sendable, CaseIterable {
    case sha256 = "sha256"
    case xxh3_128 = "xxh3_128"

    /// How messages and tables name it.
    public var title: String {
        switch self {
        case .sha256: return "SHA-256"
        case .xxh3_128: return "XXH3-128"
        }
    }

    /// Length of the hex digest.
    public var hexDigits: Int {
        switch self {
        case .sha256: return 64
        case .xxh3_128: return 32
        }
    }

    /// Whether `s` has the form of a digest of this algorithm (lowercase hex of the right length).
    public func isDigest(_ s: String) -> Bool {
        s.utf8.count == hexDigits && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// The digest of `bytes`, hex.
    public func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        switch self {
        case .sha256: return SHA256Hasher.hex(bytes)
        case .xxh3_128: return XXH3Hasher.hex(bytes)
        }
    }

    /// The digest of `bytes`, hex.
    public func hex(_ bytes: RawBytes) -> String { withExtendedLifetime(bytes) { hex(bytes.buffer) } }

    /// The digest of `bytes` read in steps of `step` bytes; when they are a view of a mapped file,
    /// each step's pages are released once hashed, so hashing a tensor of any size keeps one step
    /// resident.
    public func hex(releasing bytes: RawBytes, step: Int = 8 << 20) -> String {
        guard bytes.count > step else {
            defer { MappedFile.releasePages(of: bytes) }
            return hex(bytes)
        }
        var h = hasher()
        var at = 0
        withExtendedLifetime(bytes) {
            while at < bytes.count {
                let end = min(bytes.count, at + step)
                let piece = UnsafeRawBufferPointer(rebasing: bytes.buffer[at..<end])
                h.update(piece)
                MappedFile.releasePages(of: RawBytes(owner: bytes.owner, buffer: piece))
                at = end
            }
        }
        return h.finalizeHex()
    }

    /// An incremental hasher of this algorithm.
    public func hasher() -> ChecksumHasher { ChecksumHasher(self) }
}

/// An incremental hasher of either checksum algorithm.
public struct ChecksumHasher {
    private var sha: SHA256Hasher?
    private let xxh: XXH3Hasher?

    public init(_ algorithm: ChecksumAlgorithm) {
        switch algorithm {
        case .sha256: sha = SHA256Hasher(); xxh = nil
        case .xxh3_128: sha = nil; xxh = XXH3Hasher()
        }
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        if let xxh { xxh.update(bytes) } else { sha?.update(bytes) }
    }

    public func finalizeHex() -> String { xxh?.finalizeHex() ?? sha?.finalizeHex() ?? "" }
}
