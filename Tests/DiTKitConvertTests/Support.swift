import Foundation
import Testing
import DiTKitCore
import DiTKitFormats

enum Fixtures {
    static let root: String = {
        var p = #filePath
        for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
        return p + "/Tests/Fixtures"
    }()
    static func path(_ relative: String) -> String { root + "/" + relative }
    static func json(_ relative: String) throws -> JSONValue { try JSONReader.parse(try FileSystem.readFile(path(relative))) }
}

/// A fresh temporary directory, removed by the caller with `FileSystem.removeTree`.
func temporaryDirectory() throws -> String {
    let dir = NSTemporaryDirectory() + "ditkit-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

extension NativeBundle {
    /// SHA-256 of the stored bytes of tensor `name`, read from `weights.bin` (the fixtures hold the
    /// SHA-256 of torch's values). Checks on the way that the manifest's checksum is the XXH3-128
    /// of the same bytes.
    func storedSHA256(_ name: String) -> String? {
        guard let v = view(name), let r = record(name) else { return nil }
        #expect(XXH3Hasher.hex(v.bytes) == r.stored.checksum, "\(name): the manifest's XXH3-128")
        return SHA256Hasher.hex(v.bytes)
    }

    /// SHA-256 of the scales of I8 tensor `name` (checked against the manifest like `storedSHA256`).
    func scaleSHA256(_ name: String) -> String? {
        guard let s = view(name)?.scale, let r = record(name)?.scale else { return nil }
        #expect(XXH3Hasher.hex(s) == r.checksum, "\(name): the manifest's XXH3-128 of the scales")
        return SHA256Hasher.hex(s)
    }
}

/// The checksum of every tensor of the checkpoint at fixture path `relative`, by name.
func sourceChecksums(_ relative: String, _ algorithm: ChecksumAlgorithm) throws -> [String: String] {
    let c = try Checkpoint.open(Fixtures.path(relative))
    return Dictionary(uniqueKeysWithValues: zip(c.tensors.map(\.name), try TensorHashing.hashAll(c, algorithm)))
}
