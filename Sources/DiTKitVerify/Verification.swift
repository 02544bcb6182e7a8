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
    /// What the model was compared with: the `--against` model or the `--reference` file.
    public var baseline: Baseline?
    public var passed: Bool { !layers.isEmpty && layers.allSatisfy(\.passed) }
    /// The first layer in execution order that fails (its inputs, the layers before it, pass).
    public var firstFailingLayer: String? { layers.first { !$0.passed }?.name }

    public var json: JSONValue {
        let baselineMember: [(String, JSONValue)] = baseline.map { [($0.label.0, .string($0.label.1))] } ?? []
        return .object([
            ("passed", .bool(passed)),
            ("first_failing_layer", firstFailingLayer.map { .string($0) } ?? .null),
            ("model", .string(model)),
        ] + baselineMember + [
            ("layers", .array(layers.map(\.json))),
            ("skipped", .array(skipped.map { .string($0) })),
            ("profile", profile.json),
        ])
    }
}

/// What a model was compared with.
public enum Baseline: Sendable, Equatable {
    /// Another model (`--against`): the path as given.
    case against(String)
    /// PyTorch reference activations (`--reference`): the HDF5 file.
    case reference(String)

    /// The option and the path: `("against", PATH)` or `("reference", PATH)`.
    public var label: (String, String) {
        switch self {
        case .against(let p): return ("against", p)
        case .reference(let p): return ("reference", p)
        }
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
    /// Compares `model` with the reference activations in the HDF5 file at `referencePath`. The
    /// file's inputs choose the pass (DiT: `/inputs/x`, `/inputs/t`, `/inputs/y`; VAE: `/inputs/z`
    /// decodes, `/inputs/image` encodes; diffusers families: the `forward` keyword arguments).
    public static func verify(_ model: LoadedModel, reference referencePath: String, profile: TolerancePolicy? = nil) throws -> VerificationResult {
        let ref = try FileError.wrapping(referencePath) { try HDF5Snapshot.read(referencePath) }
        let policy = profile ?? .forStorage(model.storage)
        let configuration = model.configuration
        let family = configuration.family
        // The file names the model it was made from; another family's file is the wrong file.
        if let named = ref.stringAttribute("model")?.lowercased(), !named.isEmpty {
            let madeBy = ModelFamilies.named(named) ?? ModelDetector.requestedFamily(named)
            if let f = madeBy, f.name != family.name {
                throw FileError(path: referencePath, VerifyError.reference("made from '\(named)' (\(f.title)), but the model under test is \(configuration.variant) (\(family.title))"))
            }
        }
        let passes = family.passes(configuration)
        guard let pass = passes.first(where: { $0.required.allSatisfy { ref.exists("/inputs/" + $0) } }) else {
            let wanted = passes.map { $0.required.map { "/inputs/" + $0 }.joined(separator: " + ") }.joined(separator: ", or ")
            throw FileError(path: referencePath, VerifyError.reference("a \(family.title) reference needs \(wanted)"))
        }
        var inputs: ModelInputs = [:]
        for i in pass.inputs where ref.exists("/inputs/" + i.name) {
            let (shape, values) = try FileError.wrapping(referencePath) { try ref.readFloats("/inputs/" + i.name) }
            inputs[i.name] = Tensor(shape: shape, data: values)
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
        do {
            output = try family.forward(pass.name, configuration, weights: model.weights, inputs: inputs, trace: trace)
        } catch let e as ModelError {
            throw FileError(path: referencePath, VerifyError.reference("its inputs do not fit \(configuration.variant): \(e)"))
        }
        if ref.exists("/output") {
            let (shape, values) = try FileError.wrapping(referencePath) { try ref.readFloats("/output") }
            guard shape == output.shape else {
                throw FileError(path: referencePath, VerifyError.reference("/output has shape \(shape); DiTKit produced \(output.shape)"))
            }
            rows.append(.compare("output", output.data, values, shape: output.shape, threshold: policy.maxRelL2))
        }
        let skipped = available.subtracting(seen).sorted()
        return VerificationResult(model: configuration.variant, profile: policy, layers: rows, skipped: skipped,
                                  baseline: .reference(referencePath))
    }

    /// Options of `verify --against`.
    public struct AgainstOptions: Sendable {
        public var seed: UInt64 = 0
        /// Batch of every pass (nil: the family's default; DiT 4, VAE 2).
        public var batch: Int?
        /// Image size of the passes that take one (VAE: 256 for the SD VAE, 64 otherwise).
        public var imageSize: Int?
        /// Forwards run at once: 1 (the source's, then the converted model's) or 2 (side by side,
        /// one thread each). The caller that owns OpenBLAS's thread count chooses: `sharingCores`.
        public var forwardsAtOnce = 1
        public init() {}

        var inputOptions: VerificationInputOptions { VerificationInputOptions(seed: seed, batch: batch, imageSize: imageSize) }
    }

    /// Runs `converted` and `source` on the same deterministic inputs and compares every layer
    /// of every pass the family declares (the source model is the reference).
    public static func verify(_ converted: LoadedModel, against source: LoadedModel, options: AgainstOptions = AgainstOptions(),
                              profile: TolerancePolicy? = nil, progress: ProgressReporter? = nil) throws -> VerificationResult {
        let configuration = converted.configuration
        let differences = configurationDifferences(configuration, source.configuration)
        guard differences.isEmpty else {
            throw VerifyError.incompatible(describe(differences, converted: converted, source: source))
        }
        let family = configuration.family
        let policy = profile ?? .forStorage(converted.storage)
        var rows: [LayerComparison] = []
        let passes = family.passes(configuration)
        progress?.begin("verifying", total: 2 * passes.count, unit: .steps)
        defer { progress?.finish() }
        for pass in passes {
            let inputs = try family.verificationInputs(pass.name, configuration, options: options.inputOptions)
            let pairing = LayerPairing(threshold: policy.maxRelL2)
            // Side 0 is the source (the reference), side 1 the converted model.
            let outputs = try parallelMap(2, workers: max(1, min(options.forwardsAtOnce, 2))) { side in
                let out = try family.forward(pass.name, configuration, weights: side == 0 ? source.weights : converted.weights,
                                             inputs: inputs) { name, value in pairing.add(side, name, value) }
                progress?.advance(1)
                return out
            }
            rows += pairing.comparisons
            rows.append(.compare(pass.name, outputs[1].data, outputs[0].data, shape: outputs[1].shape, threshold: policy.maxRelL2))
        }
        return VerificationResult(model: configuration.variant, profile: policy, layers: rows, skipped: [],
                                  baseline: .against(source.path))
    }
}

extension Verifier {
    /// Configuration members that do not change what the model computes (the VAE's `sample_size`
    /// only records the size it was configured for).
    static let informational: Set<String> = ["sample_size"]

    /// The configuration members whose values differ (`num_heads 2 instead of 4`), leaving out the
    /// informational ones.
    static func configurationDifferences(_ a: ModelConfiguration, _ b: ModelConfiguration) -> [String] {
        a.differences(from: b).filter { !informational.contains(key(of: $0)) }
    }

    /// The member a difference is about: its first word.
    static func key(of difference: String) -> String { String(difference.prefix { $0 != " " }) }

    /// One line: which members differ, with both values, and the option that reads the source as the
    /// model when the difference is one a source's weights cannot show (heads, image size).
    static func describe(_ d: [String], converted: LoadedModel, source: LoadedModel) -> String {
        let keys = Set(d.map(key(of:)))
        var line = "\(converted.path) and \(source.path) are different models: "
        line += d.prefix(5).joined(separator: ", ") + (d.count > 5 ? " and \(d.count - 5) more" : "")
        let config = converted.configuration.json
        var options: [String] = []
        if !keys.isDisjoint(with: ["num_heads", "head_dim"]), let h = config["num_heads"]?.intValue { options.append("--heads \(h)") }
        if !keys.isDisjoint(with: ["input_size", "image_size"]), let s = config["image_size"]?.intValue { options.append("--image-size \(s)") }
        let rest = keys.subtracting(["num_heads", "head_dim", "input_size", "image_size"])
        if !options.isEmpty && rest.isEmpty {
            line += "; heads and image size come from config.json or are guessed: if the source is the same model, \(options.joined(separator: " and ")) read\(options.count == 1 ? "s" : "") it as one"
        } else {
            line += "; compare a model with the file it was converted from"
        }
        return line
    }

    /// Opens the `--against` source for `model`. The source is detected on its own (with `hints`:
    /// `--select`, `--image-size`, `--heads`); only when the user chose no subtree and `model` is a
    /// bundle whose provenance records one that the source also has (the very file it was converted
    /// from, say a train.py checkpoint converted with `--select model`) is that subtree used.
    public static func openSource(_ path: String, for model: LoadedModel, hints: DetectionHints) throws -> LoadedModel {
        var h = hints
        if h.select == nil, let bundle = model.container as? NativeBundle,
           let subtree = bundle.manifest.provenance["source"]?["subtree"]?.stringValue, !subtree.isEmpty {
            let names = try Checkpoint.open(LoadedModel.resolve(path, hints: h)).tensors.map(\.name)
            if ModelDetector.candidateSubtrees(names).contains(where: { $0.prefix == subtree }) { h.select = subtree }
        }
        return try LoadedModel.open(path, hints: h)
    }

    /// Shares the cores between `jobs` verifications `--against` and, within each, between its two
    /// forwards when it has two cores or more: runs `body` with OpenBLAS's thread count set to
    /// cores / jobs / forwards and the forwards each verification runs at once as its argument
    /// (`AgainstOptions.forwardsAtOnce`), then sets the thread count back. Two single-threaded
    /// forwards side by side beat one forward after the other on two threads: neither waits for
    /// the other's half of each product.
    public static func sharingCores<R>(jobs: Int, _ body: (Int) throws -> R) rethrows -> R {
        let perJob = max(1, ProcessInfoLite.activeProcessorCount / max(1, jobs))
        let atOnce = perJob >= 2 ? 2 : 1
        let before = Gemm.threads
        Gemm.setThreads(max(1, perJob / atOnce))
        defer { Gemm.setThreads(before) }
        return try body(atOnce)
    }

    /// Verifies several models against one source, `jobs` at a time (each job gets cores/jobs
    /// threads, shared by its two forwards: `sharingCores`). Results are in input order; a model that cannot be opened gives its error.
    /// `hints` open the models under test; `sourceHints` the source (see `openSource`).
    public static func verifyMany(_ paths: [String], against source: String, hints: DetectionHints, sourceHints: DetectionHints,
                                  options: AgainstOptions, profile: TolerancePolicy?, jobs: Int) -> [Result<VerificationResult, Error>] {
        let jobs = max(1, min(jobs, paths.count))
        return sharingCores(jobs: jobs) { atOnce in
            var options = options
            options.forwardsAtOnce = atOnce
            return parallelMap(paths.count, workers: jobs) { k in
                Result {
                    let model = try LoadedModel.open(paths[k], hints: hints)
                    return try verify(model, against: try openSource(source, for: model, hints: sourceHints), options: options, profile: profile)
                }
            }
        }
    }
}

/// Pairs the layers two forwards trace (side 0 the reference, side 1 the model under test) and
/// compares each as soon as both sides have produced it. The forwards may run on two threads: the
/// side that runs ahead parks its activations here until the other catches up, so at most the gap
/// between them is held. Comparisons come out in the order the model under test traced them;
/// a layer only one side traces is not compared (as before: the reference names what is checked).
final class LayerPairing: @unchecked Sendable {
    private struct Parked {
        var value: Tensor
        /// The model under test's trace index of the layer, when it was that side that parked.
        var order: Int
    }
    private struct State {
        var parked: [[String: Parked]] = [[:], [:]]
        var traced = [0, 0]
        var rows: [(order: Int, row: LayerComparison)] = []
    }
    private let state = Locked(State())
    private let threshold: Double

    init(threshold: Double) { self.threshold = threshold }

    /// Records `value` as `side`'s activation of layer `name` (called from that side's thread).
    func add(_ side: Int, _ name: String, _ value: Tensor) {
        let match: (other: Parked, index: Int)? = state.withLock { s in
            let index = s.traced[side]
            s.traced[side] += 1
            guard let other = s.parked[1 - side].removeValue(forKey: name) else {
                s.parked[side][name] = Parked(value: value, order: index)
                return nil
            }
            return (other, index)
        }
        guard let match else { return }
        let (ours, reference, order) = side == 1 ? (value, match.other.value, match.index) : (match.other.value, value, match.other.order)
        let row = LayerComparison.compare(name, ours.data, reference.data, shape: ours.shape, threshold: threshold)
        state.withLock { $0.rows.append((order, row)) }
    }

    /// Every comparison made, in the model under test's trace order.
    var comparisons: [LayerComparison] { state.withLock { $0.rows.sorted { $0.order < $1.order }.map(\.row) } }
}
