// SHA-256 over mapped bytes and files, via swift-crypto (BoringSSL, SHA-NI where the CPU has it).
import Crypto

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

    /// SHA-256 of the file at `path`, read through a mapping in large chunks. Throws `SystemError`.
    public static func hex(file path: String) throws -> String {
        let m = try MappedFile(path: path)
        m.adviseSequential()
        var h = SHA256Hasher()
        let chunk = 1 << 24
        var o = 0
        while o < m.count {
            let n = min(chunk, m.count - o)
            h.update(UnsafeRawBufferPointer(rebasing: m.bytes[o..<(o + n)]))
            m.release(o..<(o + n))
            o += n
        }
        return h.finalizeHex()
    }
}
