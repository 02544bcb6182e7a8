// Checksums/*.SHA256SUMS (`<sha256>  <path>`, as sha256sum writes) and the trust-on-first-use pins
// `ditkit zoo fetch` records for files whose hash nobody publishes.
import DiTKitCore

/// One `<sha256>  <path>` line.
public struct ChecksumLine: Sendable, Equatable {
    public var sha256: String
    /// `<entry id>/<file name>`.
    public var path: String
}

public enum Checksums {
    /// Parses a SHA256SUMS text; blank lines and `#` comments are skipped. Throws on malformed lines.
    public static func parse(_ text: String, file: String) throws -> [ChecksumLine] {
        var out: [ChecksumLine] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingPrefix(while: { $0 == " " })
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].count == 64, parts[0].allSatisfy(\.isHexDigit) else {
                throw ZooError.manifest(file, "line \(n + 1) is not '<sha256>  <path>'")
            }
            var path = String(parts[1])
            if path.hasPrefix(" ") || path.hasPrefix("*") { path.removeFirst() }
            out.append(ChecksumLine(sha256: String(parts[0]).lowercased(), path: path))
        }
        return out
    }

    /// Every line of every `*.SHA256SUMS` in `directory`.
    public static func load(directory: String) throws -> [ChecksumLine] {
        guard FileSystem.isDirectory(directory) else { return [] }
        var out: [ChecksumLine] = []
        for name in FileSystem.listDirectory(directory) where name.hasSuffix(".SHA256SUMS") {
            let p = FileSystem.join(directory, name)
            out += try parse(String(decoding: try FileSystem.readFile(p), as: UTF8.self), file: p)
        }
        return out
    }

    /// Appends a pin to `file` (creating it), atomically replacing the whole file.
    public static func appendPin(_ line: ChecksumLine, to file: String) throws {
        var text = (try? FileSystem.readFile(file)).map { String(decoding: $0, as: UTF8.self) } ?? "# DiTKit trust-on-first-use pins: hashes seen on first download\n"
        if !text.hasSuffix("\n") { text += "\n" }
        text += "\(line.sha256)  \(line.path)\n"
        try AtomicOutput.write(Array(text.utf8), to: file, kind: .cacheFile, force: true)
    }
}

#if canImport(Glibc)
import Glibc
#endif
