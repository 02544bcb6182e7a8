// `ditkit export --to diffusers`: a folder that `DiTTransformer2DModel.from_pretrained` /
// `AutoencoderKL.from_pretrained` load with no missing or unexpected keys.
import DiTKitCore
import DiTKitFormats
import DiTKitModels

public enum DiffusersExport {
    /// `config.json` of the diffusers class for a bundle's configuration, or nil when the family has none.
    public static func config(_ c: ModelConfiguration) -> JSONValue? { c.family.diffusersConfig(c) }

    /// Writes `output/config.json` and `output/diffusion_pytorch_model.safetensors` (float tensors:
    /// int8 bundles are dequantized, since diffusers has no int8 layout). Atomic; `force` replaces.
    public static func export(_ bundle: NativeBundle, to output: String, force: Bool = false) throws -> ExportSummary {
        let c = try ModelConfiguration(family: bundle.manifest.family, json: bundle.manifest.config)
        guard let cfg = config(c) else { throw ExportError.noDiffusersClass(c.family.title) }
        let items = try ExportTensors.items(bundle, naming: "diffusers", dequantize: true)
        try AtomicOutput.produce(output, directory: true, force: force) { folder in
            try FileSystem.writeFile(folder + "/config.json", Array(JSONWriter.string(cfg).utf8))
            let file = try OutputFile(path: folder + "/diffusion_pytorch_model.safetensors")
            try SafetensorsWriter.write(items, metadata: SafetensorsExport.metadata(bundle, naming: "diffusers", dequantize: true), to: file)
            try file.close()
        }
        return ExportSummary(path: output, format: "diffusers", tensors: items.count,
                             bytes: FileSystem.fileSize(output + "/diffusion_pytorch_model.safetensors") ?? 0,
                             notes: try ExportTensors.scheme(c, "diffusers")?.notes ?? [])
    }
}
