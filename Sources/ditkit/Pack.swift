// `ditkit pack` / `ditkit unpack`: a bundle as one zstd stream for distribution.
import ArgumentParser
import DiTKitCore
import DiTKitFormats

struct Pack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compress a bundle into one zstd stream (a tar inside; `tar --zstd -xf` reads it too).")

    @Argument(help: "The .ditkit bundle.") var bundle: String
    @Option(name: .shortAndLong, help: "Output file (conventionally NAME.ditkit.zst).") var output: String
    @Option(help: "zstd level (1-19).") var level: Int = 3
    @Flag(help: "Replace an existing output.") var force = false
    @Flag(help: "Print JSON instead of text.") var json = false

    func validate() throws {
        guard (1...19).contains(level) else { throw ValidationError("--level must be 1...19") }
    }

    func run() throws {
        try reportingErrors {
            let s = try BundlePack.pack(bundle: bundle, output: output, level: level, force: force, progress: TerminalProgress())
            writeOut(json ? JSONWriter.string(s.json)
                          : "wrote \(s.path): \(humanBytes(s.bytesIn)) -> \(humanBytes(s.bytesOut)) (ratio \(fixed(Double(s.bytesIn) / Double(max(s.bytesOut, 1)), 2)), \(fixed(s.seconds, 2)) s)\n")
        }
    }
}

struct Unpack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a bundle from a pack; every checksum is verified before it is renamed into place.")

    @Argument(help: "The .ditkit.zst pack.") var pack: String
    @Option(name: .shortAndLong, help: "Directory to restore the bundle into, under the name it was packed with.") var output: String
    @Flag(help: "Replace an existing bundle.") var force = false
    @Flag(help: "Print JSON instead of text.") var json = false

    func run() throws {
        try reportingErrors {
            // The bundle keeps the name it was packed under (recorded in the pack); a pack without
            // a usable one is named after the pack file.
            var name = FileSystem.baseName(pack)
            if name.hasSuffix(".zst") { name.removeLast(4) }
            if !name.hasSuffix(".ditkit") { name += ".ditkit" }
            if let inside = try BundlePack.bundleName(pack: pack) { name = inside }
            try FileSystem.makeDirectories(output)
            let s = try BundlePack.unpack(pack: pack, into: FileSystem.join(output, name), force: force, progress: TerminalProgress())
            writeOut(json ? JSONWriter.string(s.json) : "restored \(s.path): \(humanBytes(s.bytesOut)), every checksum verified (\(fixed(s.seconds, 2)) s)\n")
        }
    }
}
