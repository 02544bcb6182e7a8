// `ditkit verify`: run a model and compare it layer by layer with PyTorch reference activations
// (HDF5) or with another model (the source checkpoint) on deterministic inputs.
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitNumerics

/// The outcome of a verification.
public struct VerificationResult: Sendable {
    public var model: String
    public var profile: TolerancePolicy
    /// Comparisons in execution order.
    public var layers: [LayerComparison]
    /// Reference layers DiTKit does not produce (reported, never silently ignored).
    public var skipped: [String]
    /// Rows that carry an extra note (e.g. which pass they belong to).
    public var passed: Bool { !layers.isEmpty && layers.allSatisfy(\.passed) }
    /// The first layer in execution order that fails (its inputs, the layers before it, pass).
    public var firstFailingLayer: String? { layers.first { !$0.passed }?.name }

    public var json: JSONValue {
        .object([
            ("passed", .bool(passed)),
            ("first_failing_layer", firstFailingLayer.map { .string($0) } ?? .null),
            ("model", .string(model)),
            ("layers", .array(layers.map(\.json))),
            ("skipped", .array(skipped.map { .string($0) })),
            ("profile", profile.json),
        ])
    }
}

/// Why a verification could not run.
public enum VerifyError: Error, CustomStringConvertible, Sendable {
    case reference(String)
    case incompatible(String)

    public var description: String {
        switch self {
        case .reference(let s): return "reference file: \(s)"
        case .incompatible(let s): return s
        }
    }
}

/// Runs verifications.
public enum Verifier {
    /// Compares `model` with the reference activations in the HDF5 file at `referencePath`.
    public static func verify(_ model: LoadedModel, reference referencePath: String, profile: TolerancePolicy? = nil) throws -> VerificationResult {
        let ref = try FileError.wrapping(referencePath) { try HDF5Snapshot.read(referencePath) }
        let policy = profile ?? .forStorage(model.storage)
        // The file names the configuration it was made from; a different family is the wrong file.
        if let named = ref.stringAttribute("model")?.lowercased(), !named.isEmpty {
            let family = model.configuration.family
            if (named.hasPrefix("dit") && family != .dit) || (named.contains("vae") && family != .vae) {
                throw FileError(path: referencePath, VerifyError.reference("made from '\(named)', but the model under test is \(model.configuration.variant)"))
            }
        }
        let available = Set(ref.datasets(under: "/layers").map { String($0.dropFirst("/layers/".count)) })
        var rows: [LayerComparison] = []
        var seen = Set<String>()
        let trace: LayerTrace = { name, value in
            guard available.contains(name) else { return }
            seen.insert(name)
            let (shape, values) = try ref.readFloats("/layers/" + name)
            guard shape.reduce(1, *) == value.count else {
                throw FileError(path: referencePath, VerifyError.reference("layer '\(name)' has shape \(shape); DiTKit produced \(value.shape)"))
            }
            rows.append(.compare(name, value.data, values, shape: value.shape, threshold: policy.maxRelL2))
        }
        let output: Tensor
        switch model.configuration {
        case .dit(let c):
            let x = try input(ref, "/inputs/x", referencePath)
            guard x.shape.count == 4 else { throw FileError(path: referencePath, VerifyError.reference("/inputs/x must be [N,C,H,W]")) }
            let t = try FileError.wrapping(referencePath) { try ref.readFloats("/inputs/t").values }
            let y = try FileError.wrapping(referencePath) { try ref.readInt64("/inputs/y").values.map { Int($0) } }
            output = try DiTModel(config: c, weights: model.weights).forward(x: x, t: t, y: y, trace: trace)
        case .vae(let c):
            let vae = VAEModel(config: c, weights: model.weights)
            if ref.exists("/inputs/z") {
                output = try vae.decode(try input(ref, "/inputs/z", referencePath), trace: trace)
            } else if ref.exists("/inputs/image") {
                output = try vae.encode(try input(ref, "/inputs/image", referencePath), trace: trace)
            } else {
                throw FileError(path: referencePath, VerifyError.reference("a VAE reference needs /inputs/z (decoder) or /inputs/image (encoder)"))
            }
        }
        if ref.exists("/output") {
            let (shape, values) = try FileError.wrapping(referencePath) { try ref.readFloats("/output") }
            guard shape == output.shape else {
                throw FileError(path: referencePath, VerifyError.reference("/output has shape \(shape); DiTKit produced \(output.shape)"))
            }
            rows.append(.compare("output", output.data, values, shape: output.shape, threshold: policy.maxRelL2))
        }
        let skipped = available.subtracting(seen).sorted()
        return VerificationResult(model: model.configuration.variant, profile: policy, layers: rows, skipped: skipped)
    }

    private static func input(_ f: HDF5Snapshot, _ p: String, _ path: String) throws -> Tensor {
        let (shape, values) = try FileError.wrapping(path) { try f.readFloats(p) }
        return Tensor(shape: shape, data: values)
    }

    /// Options of `verify --against`.
    public struct AgainstOptions: Sendable {
        public var seed: UInt64 = 0
        /// DiT batch (timesteps spread over 0…999, the last label is the null class).
        public var ditBatch = 4
        /// VAE batch and image size (default 256 for the SD VAE, 64 otherwise).
        public var vaeBatch = 2
        public var vaeImageSize: Int?
        public init() {}
    }

    /// The deterministic DiT inputs of `verify --against`: normal latents, timesteps spread from
    /// 999 down to 0, labels spread over the classes with the null class last.
    public static func ditInputs(_ c: DiTConfiguration, batch: Int, seed: UInt64) -> (x: Tensor, t: [Float], y: [Int]) {
        var rng = SeededRandom(seed: seed)
        let x = Tensor(shape: [batch, c.inChannels, c.inputSize, c.inputSize], data: rng.normals(batch * c.inChannels * c.inputSize * c.inputSize))
        let t = (0..<batch).map { batch == 1 ? Float(500) : (Float(999) * Float(batch - 1 - $0) / Float(batch - 1)).rounded() }
        var y = (0..<batch).map { ($0 * 397 + 1) % c.numClasses }
        y[batch - 1] = c.nullClass
        return (x, t, y)
    }

    /// Runs `converted` and `source` on the same deterministic inputs and compares every layer
    /// (the source model is the reference). A VAE is checked on decode and on encode.
    public static func verify(_ converted: LoadedModel, against source: LoadedModel, options: AgainstOptions = AgainstOptions(),
                              profile: TolerancePolicy? = nil) throws -> VerificationResult {
        guard converted.configuration == source.configuration else {
            throw VerifyError.incompatible("the models differ: \(converted.configuration.variant) \(converted.configuration.json) vs \(source.configuration.variant) \(source.configuration.json)")
        }
        let policy = profile ?? .forStorage(converted.storage)
        var rows: [LayerComparison] = []
        func run(_ outputName: String, _ body: (LayerTrace?, any WeightStore) throws -> Tensor) throws {
            var reference: [String: Tensor] = [:]
            var order: [String] = []
            let refOut = try body({ name, value in reference[name] = value; order.append(name) }, source.weights)
            let out = try body({ name, value in
                guard let r = reference.removeValue(forKey: name) else { return }
                rows.append(.compare(name, value.data, r.data, shape: value.shape, threshold: policy.maxRelL2))
            }, converted.weights)
            rows.append(.compare(outputName, out.data, refOut.data, shape: out.shape, threshold: policy.maxRelL2))
        }
        switch converted.configuration {
        case .dit(let c):
            let (x, t, y) = ditInputs(c, batch: max(1, options.ditBatch), seed: options.seed)
            try run("output") { trace, w in try DiTModel(config: c, weights: w).forward(x: x, t: t, y: y, trace: trace) }
        case .vae(let c):
            let size = options.vaeImageSize ?? (c.variant == "sd-vae-kl-f8" ? 256 : 64)
            guard size % c.downsampleFactor == 0 else { throw VerifyError.incompatible("image size \(size) is not a multiple of \(c.downsampleFactor)") }
            var rng = SeededRandom(seed: options.seed)
            let n = max(1, options.vaeBatch), s = size / c.downsampleFactor
            let z = Tensor(shape: [n, c.latentChannels, s, s], data: rng.normals(n * c.latentChannels * s * s))
            let image = Tensor(shape: [n, c.inChannels, size, size], data: rng.uniforms(n * c.inChannels * size * size, -1, 1))
            try run("decode") { trace, w in try VAEModel(config: c, weights: w).decode(z, trace: trace) }
            try run("encode") { trace, w in try VAEModel(config: c, weights: w).encode(image, trace: trace) }
        }
        return VerificationResult(model: converted.configuration.variant, profile: policy, layers: rows, skipped: [])
    }
}

extension Verifier {
    /// Verifies several models against one source, `jobs` at a time (each job gets cores/jobs BLAS
    /// threads). Results are in input order; a model that cannot be opened gives its error.
    public static func verifyMany(_ paths: [String], against source: String, hints: DetectionHints, options: AgainstOptions,
                                  profile: TolerancePolicy?, jobs: Int) -> [Result<VerificationResult, Error>] {
        let jobs = max(1, min(jobs, paths.count))
        if jobs > 1 { Gemm.setThreads(max(1, ProcessInfoLite.activeProcessorCount / jobs)) }
        return parallelMap(paths.count, workers: jobs) { k in
            Result {
                let model = try LoadedModel.open(paths[k], hints: hints)
                return try verify(model, against: try LoadedModel.open(source, hints: model.sourceHints(hints)), options: options, profile: profile)
            }
        }
    }
}
