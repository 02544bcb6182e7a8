// `ditkit show`: a bundle's manifest for people — model, provenance, dtype policy and the error
// figures of every lossy tensor.
import ArgumentParser
import DiTKitCore
import DiTKitFormats
import DiTKitModels

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise a bundle: model, provenance, dtype policy and the error figures of its lossy tensors.",
        discussion: "`ditkit inspect` lists the tensors; `show` reads only the manifest.")

    @Argument(help: "The .ditkit bundle.")
    var bundle: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        try reportingErrors {
            let b = try FileError.wrapping(bundle) { try NativeBundle(path: bundle) }
            let summary = BundleSummary(b)
            if json {
                writeOut(JSONWriter.string(summary.json))
                return
            }
            let line = (try? ModelConfiguration(family: b.manifest.family, json: b.manifest.config)).map { $0.family.summary($0) }
            writeOut(summary.text(modelLine: line))
        }
    }
}
