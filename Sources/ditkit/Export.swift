// `ditkit export`: a bundle into formats other frontends read.
import ArgumentParser
import DiTKitCore
import DiTKitExport
import DiTKitFormats

extension ExportNaming: ExpressibleByArgument {}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a bundle in another format.")

    enum Target: String, ExpressibleByArgument, CaseIterable {
        case safetensors
    }

    @Argument(help: "The .ditkit bundle.")
    var bundle: String

    @Option(help: "Output format: \(Target.allCases.map(\.rawValue).joined(separator: ", ")).")
    var to: Target

    @Option(name: .shortAndLong, help: "Output path.")
    var output: String

    @Option(help: "Tensor names: canonical (default), official or diffusers (DiT), diffusers or ldm (VAE).")
    var naming: ExportNaming = .canonical

    @Flag(help: "Write int8 tensors as float32 values instead of I8 plus <name>.scale.")
    var dequantize = false

    @Flag(help: "Replace an existing output.")
    var force = false

    func run() throws {
        try reportingErrors {
            let b = try FileError.wrapping(bundle) { try NativeBundle(path: bundle) }
            let s: ExportSummary
            switch to {
            case .safetensors:
                s = try SafetensorsExport.export(b, to: output, naming: naming, dequantize: dequantize, force: force)
            }
            writeOut("wrote \(s.path): \(s.format), \(s.tensors) tensors, \(humanBytes(s.bytes))\n")
        }
    }
}
