// `ditkit export --to diffusers`: a folder that `DiTTransformer2DModel.from_pretrained` /
// `AutoencoderKL.from_pretrained` load with no missing or unexpected keys.
import DiTKitCore
import DiTKitFormats
import DiTKitModels

extension OutputKind {
    /// A folder written by `ditkit export --to diffusers`: only `config.json` and a safetensors
    /// file DiTKit wrote.
    public static let diffusersFolder = OutputKind("a DiTKit diffusers export", directory: true) { path in
        let files: Set<String> = [DiffusersExport.configFile, DiffusersExport.weightsFile]
        if let extra = OutputKind.unexpectedEntries(path, allowed: files) {
            return extra + " (a diffusers export holds only \(files.sorted().joined(separator: " and ")))"
        }
        if let why = OutputKind.safetensorsExport.refusal(path + "/" + DiffusersExport.weightsFile) {
            return "a directory whose \(DiffusersExport.weightsFile) is \(why)"
        }
        guard FileSystem.exists(path + "/" + DiffusersExport.weightsFile) else { return "a directory without \(DiffusersExport.weightsFile)" }
        return nil
    }
}

public enum DiffusersExport {
    static let configFile = "config.json"
    static let weightsFile = "diffusion_pytorch_model.safetensors"

    /// `config.json` of the diffusers class for a bundle's configuration, or nil when the family has none.
    public static func config(_ c: ModelConfiguration) -> JSONValue? { c.family.diffusersConfig(c) }

    /// Writes `output/config.json` and `output/diffusion_pytorch_model.safetensors` (float tensors:
    /// int8 bundles are dequantized, since diffusers has no int8 layout). Atomic; `force` replaces.
    public static func export(_ bundle: NativeBundle, to output: String, force: Bool = false) throws -> ExportSummary {
        let c = try ModelConfiguration(family: bundle.manifest.family, json: bundle.manifest.config)
        guard let cfg = config(c) else { throw ExportError.noDiffusersClass(c.family.title) }
        let items = try ExportTensors.items(bundle, naming: "diffusers", dequantize: true)
        try AtomicOutput.produce(output, kind: .diffusersFolder, force: force) { folder in
            try FileSystem.writeFile(folder + "/" + configFile, Array(JSONWriter.string(cfg).utf8))
            let file = try OutputFile(path: folder + "/" + weightsFile)
            try SafetensorsWriter.write(items, metadata: SafetensorsExport.metadata(bundle, naming: "diffusers", dequantize: true), to: file)
            try file.close()
        }
        let bytes = FileSystem.fileSize(output + "/" + weightsFile) ?? 0
        var notes = try ExportTensors.scheme(c, "diffusers")?.notes ?? []
        let quantized = bundle.manifest.tensors.filter { $0.stored.dtype == .i8 || $0.stored.dtype.block != nil }
        if !quantized.isEmpty {
            let types = Set(quantized.map(\.stored.dtype.name)).sorted().joined(separator: " and ")
            notes.append("dequantized the bundle's \(quantized.count) \(types) tensor\(quantized.count == 1 ? "" : "s") to F32 (diffusers loads float weights only): "
                         + "\(NumberFormat.bytes(bundle.manifest.weightsBytes)) of bundle weights became a \(NumberFormat.bytes(bytes)) file")
        }
        return ExportSummary(path: output, format: "diffusers", tensors: items.count, bytes: bytes, notes: notes)
    }
}
