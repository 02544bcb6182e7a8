// `ditkit check`: re-hash a bundle against its manifest.
import ArgumentParser
import DiTKitCore
import DiTKitFormats

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-hash every tensor of a bundle and check its manifest; exit 1 on any mismatch.")

    @Argument(help: "The .ditkit bundle.")
    var bundle: String

    func run() throws {
        try reportingErrors {
            let b = try FileError.wrapping(bundle) { try NativeBundle(path: bundle) }
            let problems = try BundleCheck.run(b, progress: TerminalProgress())
            if problems.isEmpty {
                writeOut("\(bundle): OK (\(b.manifest.tensors.count) tensors, \(humanBytes(b.manifest.weightsBytes)))\n")
                return
            }
            for p in problems { writeOut("\(bundle): MISMATCH \(p)\n") }
            printError("ditkit: \(bundle): \(problems.count) mismatch\(problems.count == 1 ? "" : "es")")
            throw Exit.mismatch
        }
    }
}
