// Runs the real `ditkit` executable built next to the test bundle.
import Foundation
import DiTKitCore

/// The result of one `ditkit` run.
struct ToolResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum Tool {
    /// The repository root.
    static let root: String = {
        var p = #filePath
        for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
        return p
    }()

    static func fixture(_ relative: String) -> String { root + "/Tests/Fixtures/" + relative }

    /// The build's product directory (`.build/<triple>/<configuration>`): where SwiftPM put this test
    /// bundle and every executable product it built first (`ditkit`, `ditkit-example`, `ditkit-fuzz`).
    /// Read from the running test binary (`/proc/self/exe`, else `argv[0]`), stepping out of a macOS
    /// `.xctest` bundle; it does not depend on what the checkout's folders are called.
    static let productDirectory: String = {
        var exe = URL(fileURLWithPath: CommandLine.arguments[0])
        if let linked = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            exe = URL(fileURLWithPath: linked)
        }
        var dir = exe.resolvingSymlinksInPath().deletingLastPathComponent()
        // macOS: <products>/DiTKitPackageTests.xctest/Contents/MacOS/DiTKitPackageTests
        if dir.lastPathComponent == "MacOS", dir.deletingLastPathComponent().deletingLastPathComponent().pathExtension == "xctest" {
            dir = dir.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        }
        return dir.path
    }()

    /// Path of an executable product of this build, in `productDirectory`.
    static func product(_ name: String) -> String { productDirectory + "/" + name }

    /// Path of the `ditkit` binary: $DITKIT_BIN, or the `ditkit` product of this build.
    static let binary: String = ProcessInfo.processInfo.environment["DITKIT_BIN"] ?? product("ditkit")

    /// Runs `ditkit args...` and waits.
    @discardableResult
    static func run(_ args: [String], environment: [String: String] = [:], cwd: String? = nil, viaShell: Bool = false) throws -> ToolResult {
        let p = Process()
        // viaShell: args[0] is the program to run (e.g. sh), not a ditkit subcommand.
        p.executableURL = URL(fileURLWithPath: viaShell ? (args[0].hasPrefix("/") ? args[0] : "/bin/" + args[0]) : binary)
        p.arguments = viaShell ? Array(args.dropFirst()) : args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Drain both pipes while the process runs so large outputs cannot block it.
        let outBox = DataBox(), errBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { outBox.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        p.waitUntilExit()
        group.wait()
        return ToolResult(status: p.terminationStatus, stdout: String(decoding: outBox.data, as: UTF8.self), stderr: String(decoding: errBox.data, as: UTF8.self))
    }

    /// SHA-256 of the bytes a manifest record (a tensor, or a scale) names in `bundle`'s
    /// weights.bin (the clients' scripts hash what they read with SHA-256; the manifest of a
    /// format-3 bundle records XXH3-128). `nil` when the record has no offset and bytes.
    static func storedSHA256(_ bundle: String, _ record: JSONValue?) throws -> String? {
        guard let o = record?["offset"]?.intValue, let n = record?["bytes"]?.intValue else { return nil }
        let weights = try FileSystem.readFile(bundle + "/weights.bin")
        guard o >= 0, n >= 0, o + n <= weights.count else { return nil }
        return weights[o..<(o + n)].withUnsafeBytes { SHA256Hasher.hex($0) }
    }

    /// A fresh empty temporary directory.
    static func temporaryDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "ditkit-e2e-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}

/// A box written by one reader thread and read after the group finished.
final class DataBox: @unchecked Sendable {
    var data = Data()
}
