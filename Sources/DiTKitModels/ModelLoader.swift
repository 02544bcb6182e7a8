// Opening a model for a forward pass: from a bundle (its manifest says what it is) or from any
// checkpoint convert accepts (detected and read through the conversion plan).
import DiTKitCore
import DiTKitFormats

/// A model ready to run.
public struct LoadedModel: Sendable {
    public let path: String
    public let configuration: ModelConfiguration
    public let weights: any WeightStore
    /// The model's family.
    public var family: any ModelFamily { configuration.family }
    /// The stored dtype policy of a bundle (`f32`, `f16`, `bf16`, `int8`, `q4_k`, …); for other
    /// sources and `source` bundles, the least precise type they hold (`storageName(of:)`).
    public let storage: String
    public let container: any TensorContainer

    /// A diffusers `config.json` in the model folder `path` or beside the weights file `path`, if
    /// there is one that fits a registered family.
    public static func diffusersConfig(besides path: String) -> JSONValue? {
        let candidate = (FileSystem.isDirectory(path) ? path : FileSystem.parentDirectory(path)) + "/config.json"
        guard let bytes = try? FileSystem.readFile(candidate), bytes.count < 1 << 20, let json = try? JSONReader.parse(bytes) else { return nil }
        let cls = json["_class_name"]?.stringValue ?? ""
        return ModelFamilies.registered.contains { $0.acceptsDiffusersClass(cls) } ? json : nil
    }

    /// The model a path names. A diffusers pipeline folder (`transformer/`, `vae/`, … beside a
    /// `model_index.json`) names its denoiser, or its autoencoder when `--model` asks for one.
    public static func resolve(_ path: String, hints: DetectionHints = DetectionHints()) -> String {
        guard FileSystem.isDirectory(path), !FileSystem.exists(path + "/manifest.json"), DiffusersFolder.weights(in: path) == nil else { return path }
        let parts = DiffusersFolder.components(of: path)
        let wantsAutoencoder = ModelDetector.requestedFamily(hints.model)?.role == .autoencoder
        let preferred = wantsAutoencoder ? ["vae"] : ["transformer", "unet"]
        guard let pick = preferred.first(where: parts.contains) else { return path }
        return FileSystem.join(path, pick)
    }

    /// The storage name of a model holding `types`: the least precise block type (`q4_k`), else
    /// `bf16`, `f16` or `f32` (the names of the tolerance profiles).
    public static func storageName(of types: Set<DType>) -> String {
        if let b = types.compactMap({ d in d.block.map { (d, $0.bitsPerValue) } }).min(by: { ($0.1, $0.0.name) < ($1.1, $1.0.name) }) {
            return b.0.name.lowercased()
        }
        return types.contains(.bf16) ? "bf16" : (types.contains(.f16) ? "f16" : "f32")
    }

    /// Opens `path`. Throws `FileError` wrapping format or model errors.
    public static func open(_ path: String, hints: DetectionHints = DetectionHints()) throws -> LoadedModel {
        let path = resolve(path, hints: hints)
        let container = try Checkpoint.open(path)
        return try FileError.wrapping(path) {
            if let bundle = container as? NativeBundle {
                let config = try ModelConfiguration(family: bundle.manifest.family, json: bundle.manifest.config)
                var storage = bundle.manifest.dtypePolicy["dtype"]?.stringValue ?? "f32"
                if storage == "source" || storage == "auto" { storage = storageName(of: Set(bundle.manifest.tensors.map(\.stored.dtype))) }
                return LoadedModel(path: path, configuration: config, weights: BundleWeights(bundle), storage: storage, container: bundle)
            }
            var h = hints
            if h.diffusersConfig == nil { h.diffusersConfig = LoadedModel.diffusersConfig(besides: path) }
            if h.trainArgsModel == nil { h.trainArgsModel = container.objects.first { $0.name == "args.model" }?.value }
            let weights = try PlannedWeights(container: container, hints: h)
            let sourceTypes = Set(container.tensors.map(\.dtype))
            let storage = storageName(of: sourceTypes)
            return LoadedModel(path: path, configuration: weights.plan.configuration, weights: weights, storage: storage, container: container)
        }
    }
}
