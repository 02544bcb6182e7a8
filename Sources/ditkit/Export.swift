// `ditkit export`: a bundle into formats other frontends read.
import ArgumentParser
import DiTKitCore
import DiTKitExport
import DiTKitFormats

extension GGUFTarget: ExpressibleByArgument {}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a bundle in another format.")

    enum Target: String, ExpressibleByArgument, CaseIterable {
        case safetensors, diffusers, gguf, hdf5
    }

    @Argument(help: "The .ditkit bundle.")
    var bundle: String

    @Option(help: "Output format: \(Target.allCases.map(\.rawValue).joined(separator: ", ")).")
    var to: Target

    @Option(name: .shortAndLong, help: "Output path.")
    var output: String

    @Option(help: "safetensors: tensor names: canonical (default) or one of the family's namings (DiT: official, diffusers; VAE: diffusers, ldm; PixArt: diffusers, original).")
    var naming: String?

    @Flag(help: "safetensors: write int8 tensors as float32 values instead of I8 plus <name>.scale.")
    var dequantize = false

    @Option(help: "gguf: tensor types: auto (default: stored types; int8 -> Q8_0), f32, f16, bf16, q8_0 (linear weights).")
    var ggufType: GGUFTarget?

    @Flag(help: "Replace an existing output.")
    var force = false

    @Flag(help: "Print JSON instead of text.")
    var json = false

    /// Options that do nothing for the chosen format are refused rather than ignored.
    func validate() throws {
        if naming != nil && to != .safetensors {
            throw ValidationError("--naming applies to --to safetensors only (diffusers exports use diffusers names; gguf and hdf5 the canonical ones)")
        }
        if dequantize && to != .safetensors {
            throw ValidationError("--dequantize applies to --to safetensors only (diffusers exports are always float; gguf: use --gguf-type; hdf5 keeps I8 with <name>.scale)")
        }
        if ggufType != nil && to != .gguf { throw ValidationError("--gguf-type applies to --to gguf only") }
    }

    func run() throws {
        try reportingErrors {
            let b = try FileError.wrapping(bundle) { try NativeBundle(path: bundle) }
            let s: ExportSummary
            switch to {
            case .safetensors:
                s = try SafetensorsExport.export(b, to: output, naming: naming ?? "canonical", dequantize: dequantize, force: force)
            case .diffusers:
                s = try DiffusersExport.export(b, to: output, force: force)
            case .gguf:
                s = try GGUFExport.export(b, to: output, type: ggufType ?? .auto, force: force)
            case .hdf5:
                s = try HDF5Export.export(b, to: output, force: force)
            }
            writeOut(json ? JSONWriter.string(s.json) : "wrote \(s.path): \(s.format), \(NumberFormat.counted(s.tensors, "tensor")), \(humanBytes(s.bytes))\n")
            for note in s.notes { printError("ditkit: note: \(note)") }
        }
    }
}
