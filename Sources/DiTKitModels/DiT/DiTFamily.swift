// DiT (facebookresearch/DiT) as a model family: detection from the official and diffusers
// layouts, the official names as canonical names, the official forward pass, the inputs of
// `verify --against`, the int8 policy, exports and the class-conditional sampler.
import DiTKitCore
import DiTKitNumerics

extension DiTConfiguration: FamilyConfiguration {}

public struct DiTFamily: ModelFamily {
    public init() {}

    public var name: String { "dit" }
    public var title: String { "DiT" }
    public var role: ModelRole { .denoiser }
    public var canonicalNaming: String { "dit-official" }
    public var anchors: [String] { [DiTNaming.officialAnchor, DiTNaming.diffusersAnchor] }
    public var ggufArchitecture: String { "dit" }

    /// The configuration of a DiT, from a `ModelConfiguration` of this family.
    static func dit(_ c: ModelConfiguration) throws -> DiTConfiguration {
        guard let d = c.as(DiTConfiguration.self) else { throw ModelError.inconsistent("\(c.variant) is not a DiT") }
        return d
    }

    public func configuration(json: JSONValue) throws -> ModelConfiguration {
        ModelConfiguration(self, try DiTConfiguration(json: json))
    }

    public func configuration(named: String, imageSize: Int?) -> ModelConfiguration? {
        DiTConfiguration.named(named, imageSize: imageSize ?? 256).map { ModelConfiguration(self, $0) }
    }

    public func summary(_ configuration: ModelConfiguration) -> String {
        guard let c = configuration.as(DiTConfiguration.self) else { return "" }
        return "depth \(c.depth), hidden \(c.hiddenSize), heads \(c.numHeads), patch \(c.patchSize), image \(c.imageSize), classes \(c.numClasses)"
    }

    public func acceptsDiffusersClass(_ className: String) -> Bool {
        ["DiTTransformer2DModel", "Transformer2DModel"].contains(className)
    }

    // MARK: detection

    public func plan(_ source: SourceTensors, hints: DetectionHints) throws -> ModelPlan? {
        // The official layout: the class-label table or DiT's per-block adaLN tells it from PixArt's original layout.
        if source.contains(DiTNaming.officialAnchor) && source.contains("pos_embed")
            && (source.contains("y_embedder.embedding_table.weight") || source.contains("blocks.0.adaLN_modulation.1.weight")) {
            return try planOfficial(source, hints: hints)
        }
        if source.contains(DiTNaming.diffusersAnchor) && source.contains("proj_out_2.weight") { return try planDiffusers(source, hints: hints) }
        return nil
    }

    static func headCount(hidden: Int, depth: Int, hints: DetectionHints, fromConfig: Int?) throws -> Int {
        if let h = hints.numHeads ?? fromConfig { return h }
        if let name = hints.trainArgsModel, let c = DiTConfiguration.named(name), c.hiddenSize == hidden, c.depth == depth { return c.numHeads }
        if let s = DiTConfiguration.standard.first(where: { $0.hidden == hidden && $0.depth == depth }) { return s.heads }
        if hidden % 64 == 0 { return hidden / 64 }   // DiT's convention: 64-wide heads (XL is the exception)
        throw ModelError.needsOption("cannot infer the attention head count of a DiT with hidden size \(hidden); pass --heads N")
    }

    func planOfficial(_ s: SourceTensors, hints: DetectionHints) throws -> ModelPlan {
        let x = try s.shape(DiTNaming.officialAnchor, rank: 4)
        let (d, cin, p) = (x[0], x[1], x[2])
        let depth = s.blockCount(prefix: "blocks.")
        let pos = try s.shape("pos_embed", rank: 3)
        let grid = Int(Double(pos[1]).squareRoot().rounded())
        guard grid * grid == pos[1] else { throw ModelError.inconsistent("pos_embed has \(pos[1]) tokens, not a square grid") }
        let table = try s.shape("y_embedder.embedding_table.weight", rank: 2)
        let final = try s.shape("final_layer.linear.weight", rank: 2)
        let fc1 = try s.shape("blocks.0.mlp.fc1.weight", rank: 2)
        var c = DiTConfiguration(inputSize: grid * p, patchSize: p, inChannels: cin, hiddenSize: d, depth: depth,
                                 numHeads: try Self.headCount(hidden: d, depth: depth, hints: hints, fromConfig: nil),
                                 mlpRatio: Double(fc1[0]) / Double(d), numClasses: table[0] - 1,
                                 learnSigma: final[0] == p * p * cin * 2)
        if let size = hints.imageSize, size / 8 != c.inputSize {
            throw ModelError.inconsistent("--image-size \(size) disagrees with pos_embed (trained at \(c.imageSize))")
        }
        c.frequencyEmbeddingSize = try s.shape("t_embedder.mlp.0.weight", rank: 2)[1]
        try c.validate()
        var b = PlanBuilder(s)
        for n in s.order { try b.copy(n, as: n) }
        return try b.finish(ModelConfiguration(self, c), sourceNaming: "dit-official")
    }

    func planDiffusers(_ s: SourceTensors, hints: DetectionHints) throws -> ModelPlan {
        let x = try s.shape(DiTNaming.diffusersAnchor, rank: 4)
        let (d, cin, p) = (x[0], x[1], x[2])
        let depth = s.blockCount(prefix: "transformer_blocks.")
        let cfg = hints.diffusersConfig
        let inputSize: Int
        if let size = hints.imageSize {
            inputSize = size / 8
        } else if let v = cfg?["sample_size"]?.intValue {
            inputSize = v
        } else {
            throw ModelError.needsOption("DiT weights in diffusers naming do not record the image size; pass --image-size 256 or 512 (or keep config.json next to the weights)")
        }
        let table = try s.shape("transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight", rank: 2)
        let final = try s.shape("proj_out_2.weight", rank: 2)
        let fc1 = try s.shape("transformer_blocks.0.ff.net.0.proj.weight", rank: 2)
        let heads = try Self.headCount(hidden: d, depth: depth, hints: hints, fromConfig: cfg?["num_attention_heads"]?.intValue)
        var c = DiTConfiguration(inputSize: inputSize, patchSize: p, inChannels: cin, hiddenSize: d, depth: depth, numHeads: heads,
                                 mlpRatio: Double(fc1[0]) / Double(d), numClasses: table[0] - 1, learnSigma: final[0] == p * p * cin * 2)
        c.frequencyEmbeddingSize = try s.shape("transformer_blocks.0.norm1.emb.timestep_embedder.linear_1.weight", rank: 2)[1]
        try c.validate()

        var b = PlanBuilder(s)
        for n in s.order {
            let mapped = DiTNaming.fromDiffusers.remap(n)
            if mapped.name != n { try b.copy(n, as: mapped.name) }
        }
        for (official, diffusersName) in DiTNaming.foldedEmbedders {
            try b.foldIdentical((0..<depth).map(diffusersName), as: official)
        }
        for i in 0..<depth {
            for suffix in ["weight", "bias"] {
                try b.concatRows(DiTNaming.splitAttention(block: i, suffix), as: "blocks.\(i).attn.qkv.\(suffix)")
            }
        }
        try b.computed("pos_embed", "2d-sincos", shape: [1, c.tokens, d])
        return try b.finish(ModelConfiguration(self, c), sourceNaming: "dit-diffusers")
    }

    public func computedTensor(_ name: String, _ configuration: ModelConfiguration) throws -> [Float] {
        let c = try Self.dit(configuration)
        guard name == "pos_embed" else { throw ModelError.inconsistent("DiT computes no tensor '\(name)'") }
        return DiTPositionEmbedding.values(hiddenSize: c.hiddenSize, gridSize: c.gridSize)
    }

    // MARK: quantization policy

    public func quantizesByDefault(_ name: String, shape: [Int], _ configuration: ModelConfiguration) -> Bool {
        guard name.hasSuffix(".weight"), shape.count == 2 || shape.count == 4 else { return false }
        return !(name.hasPrefix("y_embedder.") || name.hasPrefix("x_embedder.") || name == "final_layer.linear.weight")
    }

    public var int8PolicyDescription: String {
        "linear weights of attention, MLP, adaLN modulation, timestep embedder and final adaLN; x_embedder, final_layer.linear, y_embedder, pos_embed, biases stay float"
    }

    public func blockPolicy(_ configuration: ModelConfiguration) -> BlockPolicy {
        BlockPolicy(quantized: "attention (attn.qkv, attn.proj) and MLP (mlp.fc1, mlp.fc2) weights of the blocks", keep: [
            BlockKeepRule("x_embedder.*", "input layer"),
            BlockKeepRule("t_embedder.*", "timestep embedding"),
            BlockKeepRule("y_embedder.*", "embedding table"),
            BlockKeepRule("pos_embed", "position embedding"),
            BlockKeepRule("blocks.*.adaLN_modulation.*", "adaLN modulation", blockModulation: true),
            BlockKeepRule("final_layer.*", "output layer"),
        ])
    }

    // MARK: exports

    public func exportNamings(_ configuration: ModelConfiguration) -> [ExportNaming] {
        let depth = (try? Self.dit(configuration).depth) ?? 0
        return [
            ExportNaming("diffusers", "diffusers DiTTransformer2DModel names (qkv split, embedders copied into every block, no pos_embed)") { name, _ in
                DiTNaming.toDiffusers(name, depth: depth)
            },
            ExportNaming("official", "facebookresearch/DiT names (the canonical names)") { name, _ in [ExportedTensor(name)] },
        ]
    }

    public func diffusersConfig(_ configuration: ModelConfiguration) -> JSONValue? {
        guard let d = configuration.as(DiTConfiguration.self) else { return nil }
        return .object([
            ("_class_name", .string("DiTTransformer2DModel")), ("_diffusers_version", .string(diffusersVersion)),
            ("activation_fn", .string("gelu-approximate")), ("attention_bias", .bool(true)), ("attention_head_dim", .int(d.headDim)),
            ("dropout", .double(0)), ("in_channels", .int(d.inChannels)), ("norm_elementwise_affine", .bool(false)),
            ("norm_eps", .double(1e-5)), ("norm_num_groups", .int(32)), ("norm_type", .string("ada_norm_zero")),
            ("num_attention_heads", .int(d.numHeads)), ("num_embeds_ada_norm", .int(d.numClasses)), ("num_layers", .int(d.depth)),
            ("out_channels", .int(d.outChannels)), ("patch_size", .int(d.patchSize)), ("sample_size", .int(d.inputSize)),
            ("upcast_attention", .bool(false)),
        ])
    }

    // MARK: forward and verification

    public func passes(_ configuration: ModelConfiguration) -> [ForwardPass] {
        [ForwardPass("output", inputs: [PassInput("x"), PassInput("t"), PassInput("y")])]
    }

    public func forward(_ pass: String, _ configuration: ModelConfiguration, weights: any WeightStore, inputs: ModelInputs,
                        trace: LayerTrace?) throws -> Tensor {
        let c = try Self.dit(configuration)
        guard let x = inputs["x"], let t = inputs["t"], let y = inputs["y"] else { throw ModelError.inconsistent("DiT needs inputs x, t and y") }
        guard x.shape.count == 4 else { throw ModelError.inconsistent("DiT input x must be [N, C, H, W]; got \(x.shape)") }
        let labels = try y.data.map { v -> Int in
            guard v.rounded() == v, v >= 0, v <= Float(c.numClasses) else { throw ModelError.inconsistent("class label \(v) is not in 0...\(c.numClasses)") }
            return Int(v)
        }
        return try DiTModel(config: c, weights: weights).forward(x: x, t: t.data, y: labels, trace: trace)
    }

    public func verificationInputs(_ pass: String, _ configuration: ModelConfiguration, options: VerificationInputOptions) throws -> ModelInputs {
        let c = try Self.dit(configuration)
        let (x, t, y) = Self.inputs(c, batch: max(1, options.batch ?? 4), seed: options.seed)
        return ["x": x, "t": Tensor(shape: [t.count], data: t), "y": Tensor(shape: [y.count], data: y.map(Float.init))]
    }

    /// The deterministic inputs of `verify --against`: normal latents, timesteps spread from
    /// 999 down to 0, labels spread over the classes with the null class last.
    public static func inputs(_ c: DiTConfiguration, batch: Int, seed: UInt64) -> (x: Tensor, t: [Float], y: [Int]) {
        var rng = SeededRandom(seed: seed)
        let x = Tensor(shape: [batch, c.inChannels, c.inputSize, c.inputSize], data: rng.normals(batch * c.inChannels * c.inputSize * c.inputSize))
        let t = (0..<batch).map { batch == 1 ? Float(500) : (Float(999) * Float(batch - 1 - $0) / Float(batch - 1)).rounded() }
        var y = (0..<batch).map { ($0 * 397 + 1) % c.numClasses }
        y[batch - 1] = c.nullClass
        return (x, t, y)
    }

    // MARK: sampling

    public func sampler(_ configuration: ModelConfiguration, weights: any WeightStore, options: SamplingOptions,
                        conditioning: SamplingConditioning) throws -> (any LatentSampler)? {
        let c = try Self.dit(configuration)
        guard conditioning.featuresPath == nil else { throw ModelError.inconsistent("DiT is class-conditional: give classes, not a features file") }
        if let size = conditioning.imageSize, size != c.imageSize {
            throw ModelError.inconsistent("this DiT samples at \(c.imageSize) px (its position embedding is fixed), not \(size)")
        }
        return try DiTSampler(model: DiTModel(config: c, weights: weights), classes: conditioning.classes ?? [], options: options)
    }

    public func latentChannels(_ configuration: ModelConfiguration) -> Int {
        configuration.as(DiTConfiguration.self)?.inChannels ?? 0
    }
}
