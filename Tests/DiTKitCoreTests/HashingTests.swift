// Checksums: XXH3-128 (per-tensor, format-3 bundles) against the reference implementation's
// answers (tools/make_xxh3_vectors.py, Python's xxhash), SHA-256 of mapped files against the
// whole-file SHA-256 read with read(2).
import Testing
import Foundation
import DiTKitCore

private let vectorsPath: String = {
    var p = #filePath
    for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
    return p + "/Tests/Fixtures/readers/xxh3_vectors.json"
}()

private func pattern(_ n: Int) -> [UInt8] { (0..<n).map { UInt8((31 * $0 + 7) % 256) } }

@Suite struct HashingTests {
    /// One-shot and incremental XXH3-128 give the reference answers for lengths that reach every
    /// code path, in xxHash's canonical hex (what `xxh128sum` prints), fed whole or in odd pieces.
    @Test func xxh3MatchesTheReference() throws {
        let vectors = try JSONReader.parse(try FileSystem.readFile(vectorsPath))
        let cases = try #require(vectors["patterns"]?.arrayValue)
        #expect(cases.count >= 20)
        for c in cases {
            let n = try #require(c["length"]?.intValue), want = try #require(c["xxh3_128"]?.stringValue)
            let bytes = pattern(n)
            #expect(bytes.withUnsafeBytes { XXH3Hasher.hex($0) } == want, "length \(n)")
            #expect(bytes.withUnsafeBytes { ChecksumAlgorithm.xxh3_128.hex($0) } == want, "length \(n)")
            for piece in [1, 7, 64, 1000, 65537] where piece < max(n, 2) {
                var h = ChecksumAlgorithm.xxh3_128.hasher()
                bytes.withUnsafeBytes { all in
                    var at = 0
                    while at < n {
                        let end = min(n, at + piece)
                        h.update(UnsafeRawBufferPointer(rebasing: all[at..<end]))
                        at = end
                    }
                }
                #expect(h.finalizeHex() == want, "length \(n) in pieces of \(piece)")
            }
        }
        // Not SHA-256 in disguise: the two algorithms differ, and each digest has its own length.
        let abc = Array("abc".utf8)
        #expect(abc.withUnsafeBytes { XXH3Hasher.hex($0) } == "06b05ab6733a618578af5f94892f3950")
        #expect(abc.withUnsafeBytes { ChecksumAlgorithm.sha256.hex($0) } == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(ChecksumAlgorithm.xxh3_128.isDigest("06b05ab6733a618578af5f94892f3950"))
        #expect(!ChecksumAlgorithm.xxh3_128.isDigest("06B05AB6733A618578AF5F94892F3950"))
        #expect(!ChecksumAlgorithm.sha256.isDigest("06b05ab6733a618578af5f94892f3950"))
    }

    /// The whole-file SHA-256 read through a mapping (converter) equals the one read with read(2)
    /// (zoo identify), for files smaller than, equal to and larger than one step.
    @Test func mappedFileHashEqualsReadHash() throws {
        let dir = NSTemporaryDirectory() + "ditkit-hash-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { FileSystem.removeTree(dir) }
        for n in [0, 1, 65536, 65536 * 3 + 17] {
            let path = dir + "/f\(n)"
            try FileSystem.writeFile(path, pattern(n))
            let file = try MappedFile(path: path)
            var seen = 0
            let mapped = try SHA256Hasher.hex(mapped: file, step: 65536) { seen += $0 }
            #expect(mapped == (try SHA256Hasher.hex(file: path)), "\(n) bytes")
            #expect(seen == n)
        }
    }
}
