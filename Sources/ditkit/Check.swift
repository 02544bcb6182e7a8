// `ditkit check`: re-hash a bundle against its manifest.
import ArgumentParser
import DiTKitCore
import DiTKitFormats

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-hash every tensor of a bundle and check its manifest; exit 1 on any mismatch.",
        discussion: "Tensors are checked with the checksum the manifest records: XXH3-128 (format version 3) or SHA-256 (versions 1 and 2).")

    @Argument(help: "The .ditkit bundle.")
    var bundle: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        try reportingErrors {
            let b = try FileError.wrapping(bundle) { try NativeBundle(path: bundle) }
            let problems = try BundleCheck.run(b, progress: TerminalProgress())
            if json {
                writeOut(JSONWriter.string(.object([
                    ("path", .string(bundle)), ("ok", .bool(problems.isEmpty)), ("tensors", .int(b.manifest.tensors.count)),
                    ("bytes", .int(b.manifest.weightsBytes)),
                    ("mismatches", .array(problems.map { .object([("subject", .string($0.subject)), ("problem", .string($0.problem))]) })),
                ])))
                if !problems.isEmpty { throw Exit.mismatch }
                return
            }
            if problems.isEmpty {
                writeOut("\(bundle): OK (\(NumberFormat.counted(b.manifest.tensors.count, "tensor")), \(humanBytes(b.manifest.weightsBytes)))\n")
                return
            }
            for p in problems { writeOut("\(bundle): MISMATCH \(p)\n") }
            printError("ditkit: \(bundle): \(problems.count) mismatch\(problems.count == 1 ? "" : "es")")
            throw Exit.mismatch
        }
    }
}
