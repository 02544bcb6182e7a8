// Which model a set of tensors is: family, naming scheme, configuration, the subtree that holds
// it, and how each canonical tensor is made from the source tensors. Loading is strict: after
// remapping, names and shapes must equal the architecture exactly, in both directions.
import DiTKitCore

/// How one canonical tensor is produced from source tensors (names are full source names).
public enum TensorRecipe: Sendable, Equatable {
    /// The source tensor as is.
    case copy(String)
    /// The source bytes under another shape (squeezed 1x1 attention convs).
    case reshape(String, [Int])
    /// Sources concatenated along the first dimension (diffusers q, k, v -> qkv).
    case concatRows([String])
    /// Identical copies (diffusers' per-block embedders); every copy must be byte-identical.
    case foldIdentical([String])
    /// DiT's fixed 2-D sin-cos position embedding, recomputed (diffusers does not store it).
    case positionEmbedding

    /// Source tensor names this recipe reads.
    public var sources: [String] {
        switch self {
        case .copy(let s), .reshape(let s, _): return [s]
        case .concatRows(let s), .foldIdentical(let s): return s
        case .positionEmbedding: return []
        }
    }
}

/// One canonical tensor and its recipe.
public struct PlannedTensor: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var recipe: TensorRecipe
}

/// Everything convert needs to know about the model in a checkpoint.
public struct ModelPlan: Sendable {
    public var configuration: ModelConfiguration
    /// Source naming scheme: `dit-official`, `dit-diffusers`, `vae-diffusers`, `vae-diffusers-legacy`, `vae-ldm`.
    public var sourceNaming: String
    /// Dotted path of the selected subtree (`ema`, `state_dict.first_stage_model`), empty for the root.
    public var subtree: String
    /// Canonical tensors, canonical order.
    public var tensors: [PlannedTensor]
}

/// What the user or the surroundings of a file tell about the model.
public struct DetectionHints: Sendable {
    /// `--select`: dotted path of the subtree.
    public var select: String?
    /// `--model`: `dit`, `vae`, a DiT name (`DiT-XL/2`) or `sd-vae`.
    public var model: String?
    /// `--heads` for DiT widths whose head count cannot be inferred.
    public var numHeads: Int?
    /// `--image-size` in pixels (DiT in diffusers naming stores no position embedding).
    public var imageSize: Int?
    /// A diffusers `config.json` found next to the weights.
    public var diffusersConfig: JSONValue?
    /// `args.model` of a train.py checkpoint.
    public var trainArgsModel: String?
    public init() {}
}

/// The source tensors as the detector sees them.
public struct SourceTensor: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
}

public enum ModelDetector {
    /// Anchors: a tensor name that identifies a model root under some prefix.
    static let anchors: [(String, ModelFamily)] = [
        (DiTNaming.officialAnchor, .dit), (DiTNaming.diffusersAnchor, .dit), (VAENaming.anchor, .vae),
    ]

    /// Prefixes (dotted paths) under which a known model's anchor tensor sits.
    public static func candidateSubtrees(_ names: [String]) -> [(prefix: String, family: ModelFamily)] {
        var seen = Set<String>()
        var out: [(String, ModelFamily)] = []
        for n in names {
            for (a, f) in anchors {
                var prefix: String?
                if n == a { prefix = "" } else if n.hasSuffix("." + a) { prefix = String(n.dropLast(a.count + 1)) }
                if let p = prefix, seen.insert(p).inserted { out.append((p, f)) }
            }
        }
        return out
    }

    /// Detects the model and plans every canonical tensor. Throws `ModelError`.
    public static func plan(_ all: [SourceTensor], hints: DetectionHints = DetectionHints()) throws -> ModelPlan {
        let subtree = try chooseSubtree(all.map(\.name), hints: hints)
        let strip = subtree.isEmpty ? 0 : subtree.count + 1
        var local: [String: SourceTensor] = [:]
        var order: [String] = []
        for t in all where subtree.isEmpty || t.name.hasPrefix(subtree + ".") {
            let n = String(t.name.dropFirst(strip))
            local[n] = t
            order.append(n)
        }
        let full = { (n: String) in subtree.isEmpty ? n : subtree + "." + n }
        var plan: ModelPlan
        if local[DiTNaming.officialAnchor] != nil {
            plan = try planOfficialDiT(local, order: order, full: full, hints: hints)
        } else if local[DiTNaming.diffusersAnchor] != nil {
            plan = try planDiffusersDiT(local, order: order, full: full, hints: hints)
        } else if local[VAENaming.anchor] != nil {
            plan = try planVAE(local, order: order, full: full)
            if case .vae(var c) = plan.configuration, let s = hints.diffusersConfig?["sample_size"]?.intValue {
                c.sampleSize = s
                var p2 = plan
                p2.configuration = .vae(c)
                plan = p2
            }
        } else {
            throw ModelError.notRecognised("no DiT or VAE tensors under '\(subtree)'")
        }
        var p = plan
        p.subtree = subtree
        try checkModelHint(p.configuration, hints.model)
        let dtypes = Dictionary(all.map { ($0.name, $0.dtype) }, uniquingKeysWith: { a, _ in a })
        for t in p.tensors {
            for s in t.recipe.sources where !(dtypes[s]?.isConvertibleFloat ?? true) {
                throw ModelError.inconsistent("tensor '\(s)' has dtype \(dtypes[s].map { $0.name } ?? "?"); DiT and VAE weights must be F32, F16, BF16 or F64")
            }
        }
        return p
    }

    static func chooseSubtree(_ names: [String], hints: DetectionHints) throws -> String {
        let candidates = candidateSubtrees(names)
        if let s = hints.select {
            let sel = s == "." ? "" : s
            guard candidates.contains(where: { $0.prefix == sel }) else {
                let list = candidates.map { $0.prefix.isEmpty ? "(root)" : $0.prefix }.joined(separator: ", ")
                throw ModelError.notRecognised("--select \(s): no DiT or VAE under that path (found: \(list.isEmpty ? "none" : list))")
            }
            return sel
        }
        var filtered = candidates
        if let m = hints.model?.lowercased() {
            let want: ModelFamily? = m.hasPrefix("dit") ? .dit : (m.contains("vae") ? .vae : nil)
            if let want { filtered = candidates.filter { $0.family == want } }
        }
        guard !filtered.isEmpty else {
            throw ModelError.notRecognised("no DiT or VAE found: expected tensors such as '\(DiTNaming.officialAnchor)', '\(DiTNaming.diffusersAnchor)' or '\(VAENaming.anchor)'")
        }
        if filtered.count == 1 { return filtered[0].prefix }
        // train.py checkpoints hold both `model` and `ema`: the EMA weights are the ones to use.
        if filtered.contains(where: { $0.prefix == "ema" }) { return "ema" }
        let list = filtered.map { $0.prefix.isEmpty ? "(root)" : $0.prefix }.joined(separator: ", ")
        throw ModelError.needsOption("several models in one file (\(list)); choose one with --select PATH")
    }

    static func checkModelHint(_ c: ModelConfiguration, _ hint: String?) throws {
        guard let h = hint else { return }
        let l = h.lowercased()
        let ok: Bool
        switch l {
        case "dit": ok = c.family == .dit
        case "vae": ok = c.family == .vae
        case "sd-vae", "sd-vae-kl-f8": ok = c.variant == "sd-vae-kl-f8"
        default: ok = c.variant.lowercased() == l
        }
        guard ok else { throw ModelError.inconsistent("--model \(h): the weights are \(c.variant)") }
    }

    // MARK: DiT

    static func headCount(hidden: Int, depth: Int, hints: DetectionHints, fromConfig: Int?) throws -> Int {
        if let h = hints.numHeads ?? fromConfig { return h }
        if let name = hints.trainArgsModel, let c = DiTConfiguration.named(name), c.hiddenSize == hidden, c.depth == depth { return c.numHeads }
        if let s = DiTConfiguration.standard.first(where: { $0.hidden == hidden && $0.depth == depth }) { return s.heads }
        if hidden % 64 == 0 { return hidden / 64 }   // DiT's convention: 64-wide heads (XL is the exception)
        throw ModelError.needsOption("cannot infer the attention head count of a DiT with hidden size \(hidden); pass --heads N")
    }

    static func shape(_ local: [String: SourceTensor], _ name: String, rank: Int) throws -> [Int] {
        guard let t = local[name] else { throw ModelError.notRecognised("missing '\(name)', needed to read the configuration") }
        guard t.shape.count == rank else { throw ModelError.inconsistent("'\(name)' has shape \(t.shape), expected rank \(rank)") }
        return t.shape
    }

    static func blockCount(_ order: [String], prefix: String) -> Int {
        var indices = Set<Int>()
        for n in order where n.hasPrefix(prefix) {
            let rest = n.dropFirst(prefix.count)
            if let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]) { indices.insert(i) }
        }
        return indices.count
    }

    static func planOfficialDiT(_ local: [String: SourceTensor], order: [String], full: (String) -> String, hints: DetectionHints) throws -> ModelPlan {
        let x = try shape(local, DiTNaming.officialAnchor, rank: 4)
        let (d, cin, p) = (x[0], x[1], x[2])
        let depth = blockCount(order, prefix: "blocks.")
        let pos = try shape(local, "pos_embed", rank: 3)
        let grid = Int(Double(pos[1]).squareRoot().rounded())
        guard grid * grid == pos[1] else { throw ModelError.inconsistent("pos_embed has \(pos[1]) tokens, not a square grid") }
        let table = try shape(local, "y_embedder.embedding_table.weight", rank: 2)
        let final = try shape(local, "final_layer.linear.weight", rank: 2)
        let fc1 = try shape(local, "blocks.0.mlp.fc1.weight", rank: 2)
        var c = DiTConfiguration(inputSize: grid * p, patchSize: p, inChannels: cin, hiddenSize: d, depth: depth,
                                 numHeads: try headCount(hidden: d, depth: depth, hints: hints, fromConfig: nil),
                                 mlpRatio: Double(fc1[0]) / Double(d), numClasses: table[0] - 1,
                                 learnSigma: final[0] == p * p * cin * 2)
        if let size = hints.imageSize, size / 8 != c.inputSize {
            throw ModelError.inconsistent("--image-size \(size) disagrees with pos_embed (trained at \(c.imageSize))")
        }
        c.frequencyEmbeddingSize = try shape(local, "t_embedder.mlp.0.weight", rank: 2)[1]
        try c.validate()
        let expected = c.tensorShapes()
        var recipes: [String: (TensorRecipe, [Int])] = [:]
        for n in order { if let t = local[n] { recipes[n] = (.copy(full(n)), t.shape) } }
        return ModelPlan(configuration: .dit(c), sourceNaming: "dit-official", subtree: "",
                         tensors: try strict(expected, recipes, sourceNames: order, model: c.variant))
    }

    static func planDiffusersDiT(_ local: [String: SourceTensor], order: [String], full: (String) -> String, hints: DetectionHints) throws -> ModelPlan {
        let x = try shape(local, DiTNaming.diffusersAnchor, rank: 4)
        let (d, cin, p) = (x[0], x[1], x[2])
        let depth = blockCount(order, prefix: "transformer_blocks.")
        let cfg = hints.diffusersConfig
        var inputSize: Int
        if let size = hints.imageSize {
            inputSize = size / 8
        } else if let s = cfg?["sample_size"]?.intValue {
            inputSize = s
        } else {
            throw ModelError.needsOption("DiT weights in diffusers naming do not record the image size; pass --image-size 256 or 512 (or keep config.json next to the weights)")
        }
        let table = try shape(local, "transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight", rank: 2)
        let final = try shape(local, "proj_out_2.weight", rank: 2)
        let fc1 = try shape(local, "transformer_blocks.0.ff.net.0.proj.weight", rank: 2)
        let heads = try headCount(hidden: d, depth: depth, hints: hints, fromConfig: cfg?["num_attention_heads"]?.intValue)
        var c = DiTConfiguration(inputSize: inputSize, patchSize: p, inChannels: cin, hiddenSize: d, depth: depth, numHeads: heads,
                                 mlpRatio: Double(fc1[0]) / Double(d), numClasses: table[0] - 1, learnSigma: final[0] == p * p * cin * 2)
        c.frequencyEmbeddingSize = try shape(local, "transformer_blocks.0.norm1.emb.timestep_embedder.linear_1.weight", rank: 2)[1]
        try c.validate()

        var recipes: [String: (TensorRecipe, [Int])] = [:]
        var consumed = Set<String>()
        for n in order {
            let mapped = DiTNaming.fromDiffusers.remap(n)
            if mapped.name != n, let t = local[n] {
                recipes[mapped.name] = (.copy(full(n)), t.shape)
                consumed.insert(n)
            }
        }
        for (official, diffusersName) in DiTNaming.foldedEmbedders {
            let copies = (0..<depth).map(diffusersName).filter { local[$0] != nil }
            guard let first = copies.first, let t = local[first] else { continue }
            for cp in copies where local[cp]?.shape != t.shape {
                throw ModelError.inconsistent("embedder copy '\(cp)' has shape \(local[cp]?.shape ?? []) but '\(first)' has \(t.shape)")
            }
            recipes[official] = (.foldIdentical(copies.map(full)), t.shape)
            consumed.formUnion(copies)
        }
        for i in 0..<depth {
            for suffix in ["weight", "bias"] {
                let parts = DiTNaming.splitAttention(block: i, suffix)
                let shapes = parts.compactMap { local[$0]?.shape }
                guard shapes.count == 3 else { continue }
                guard shapes.allSatisfy({ $0.dropFirst() == shapes[0].dropFirst() }) else {
                    throw ModelError.inconsistent("q, k, v of block \(i) have different shapes")
                }
                recipes["blocks.\(i).attn.qkv.\(suffix)"] = (.concatRows(parts.map(full)), [shapes.reduce(0) { $0 + $1[0] }] + shapes[0].dropFirst())
                consumed.formUnion(parts)
            }
        }
        recipes["pos_embed"] = (.positionEmbedding, [1, c.tokens, d])
        let leftovers = order.filter { !consumed.contains($0) }
        return ModelPlan(configuration: .dit(c), sourceNaming: "dit-diffusers", subtree: "",
                         tensors: try strict(c.tensorShapes(), recipes, sourceNames: leftovers, model: c.variant, sourceNamesAreCanonical: false))
    }

    // MARK: VAE

    static func planVAE(_ local: [String: SourceTensor], order: [String], full: (String) -> String) throws -> ModelPlan {
        let ldm = local[VAENaming.ldmAnchor] != nil
        let naming = ldm ? "vae-ldm" : (local[VAENaming.legacyAttentionAnchor] != nil ? "vae-diffusers-legacy" : "vae-diffusers")
        let levels = ldm ? blockCount(order, prefix: "encoder.down.") : blockCount(order, prefix: "encoder.down_blocks.")
        guard levels > 0 else { throw ModelError.notRecognised("VAE without encoder levels") }
        var recipes: [String: (TensorRecipe, [Int])] = [:]
        var canonicalShapes: [String: [Int]] = [:]
        for n in order {
            guard let t = local[n] else { continue }
            let m = VAENaming.toCanonical.remap(n, levels: levels)
            var s = t.shape
            if m.transform == .squeezeTo2D, s.count > 2 {
                guard s.dropFirst(2).allSatisfy({ $0 == 1 }) else { throw ModelError.inconsistent("'\(n)' has shape \(s); expected trailing 1x1") }
                s = Array(s.prefix(2))
            }
            guard recipes[m.name] == nil else { throw ModelError.inconsistent("'\(n)' and another tensor both map to '\(m.name)'") }
            recipes[m.name] = (s == t.shape ? .copy(full(n)) : .reshape(full(n), s), s)
            canonicalShapes[m.name] = s
        }
        var c = VAEConfiguration()
        func cs(_ name: String) throws -> [Int] {
            guard let s = canonicalShapes[name] else { throw ModelError.notRecognised("missing VAE tensor '\(name)' (after renaming), needed to read the configuration") }
            return s
        }
        c.blockOutChannels = try (0..<levels).map { try cs("encoder.down_blocks.\($0).resnets.0.conv2.weight")[0] }
        c.layersPerBlock = blockCount(Array(canonicalShapes.keys), prefix: "encoder.down_blocks.0.resnets.")
        c.inChannels = try cs("encoder.conv_in.weight")[1]
        c.latentChannels = try cs("decoder.conv_in.weight")[1]
        c.outChannels = try cs("decoder.conv_out.weight")[0]
        c.midAttention = canonicalShapes["encoder.mid_block.attentions.0.to_q.weight"] != nil
        c.useQuantConv = canonicalShapes["quant_conv.weight"] != nil
        c.usePostQuantConv = canonicalShapes["post_quant_conv.weight"] != nil
        try c.validate()
        let plan = try strict(c.tensorShapes(), recipes, sourceNames: [], model: c.variant, sourceNamesAreCanonical: true)
        return ModelPlan(configuration: .vae(c), sourceNaming: naming, subtree: "", tensors: plan)
    }

    // MARK: strict loading

    /// Matches planned recipes against the architecture in both directions, with shapes.
    /// `sourceNames` lists source tensors no recipe consumed (reported as unexpected).
    static func strict(_ expected: [(name: String, shape: [Int])], _ recipes: [String: (TensorRecipe, [Int])], sourceNames: [String],
                       model: String, sourceNamesAreCanonical: Bool = true) throws -> [PlannedTensor] {
        var missing: [String] = [], shapes: [String] = []
        var planned: [PlannedTensor] = []
        let expectedNames = Set(expected.map(\.name))
        for (name, shape) in expected {
            guard let (recipe, s) = recipes[name] else { missing.append(name); continue }
            if s != shape { shapes.append("\(name): \(s) instead of \(shape)") }
            planned.append(PlannedTensor(name: name, shape: shape, recipe: recipe))
        }
        var unexpected = recipes.keys.filter { !expectedNames.contains($0) }.sorted()
        if !sourceNamesAreCanonical { unexpected += sourceNames.filter { recipes[$0] == nil && !expectedNames.contains($0) } }
        guard missing.isEmpty, unexpected.isEmpty, shapes.isEmpty else {
            throw ModelError.mismatch(model: model, missing: missing, unexpected: unexpected, shapes: shapes)
        }
        return planned
    }
}
