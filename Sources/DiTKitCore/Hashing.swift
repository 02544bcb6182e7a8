// SHA-256 over mapped bytes and files, via swift-crypto (BoringSSL, SHA-NI where the CPU has it).
import Crypto
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
