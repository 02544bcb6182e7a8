import Foundation
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
    /// Stored SHA-256 by tensor name.
    var storedHashes: [String: String] { Dictionary(uniqueKeysWithValues: manifest.tensors.map { ($0.name, $0.stored.sha256) }) }
}
