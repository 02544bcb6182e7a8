import DiTKitCore
import DiTKitFormats

/// Locates committed fixtures relative to this source file.
enum Fixtures {
    static let root: String = {
        var p = #filePath
        for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
        return p + "/Tests/Fixtures"
    }()

    static func path(_ relative: String) -> String { root + "/" + relative }

    static func json(_ relative: String) throws -> JSONValue {
        try JSONReader.parse(try FileSystem.readFile(path(relative)))
    }
}
