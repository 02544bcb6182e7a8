// PixArt-α and PixArt-Σ as a model family: detection from diffusers `transformer/` folders and the
// original releases, diffusers names as canonical names (plus the original's null caption), the
// diffusers forward pass, verification inputs, the int8 policy, exports in both layouts and the
// caption-conditioned Gaussian-diffusion sampler.
import DiTKitCore
import DiTKitNumerics
#if canImport(Glibc)
import Glibc
#endif

extension PixArtConfiguration: FamilyConfiguration {}

public struct PixArtFamily: ModelFamily {
    public init() {}

    public var name: String { "pixart" }
    public var title: String { "PixArt" }
    public var role: ModelRole { .denoiser }
    public var aliases: [String] { ["pixart-alpha", "pixart-sigma"] }
    public var canonicalNaming: String { "pixart-diffusers" }
    public var anchors: [String] { [PixArtNaming.diffusersAnchor, PixArtNaming.originalAnchor] }
    public var ggufArchitecture: String { "pixart" }

    static func pixart(_ c: ModelConfiguration) throws -> PixArtConfiguration {
        guard let p = c.as(PixArtConfiguration.self) else { throw ModelError.inconsistent("\(c.variant) is not a PixArt") }
        return p
    }

    public func configuration(json: JSONValue) throws -> ModelConfiguration {
        ModelConfiguration(self, try PixArtConfiguration(json: json))
    }

    public func configuration(named: String, imageSize: Int?) -> ModelConfiguration? {
        PixArtConfiguration.named(named).map { ModelConfiguration(self, $0) }
    }

    public func acceptsDiffusersClass(_ className: String) -> Bool {
        ["PixArtTransformer2DModel", "Transformer2DModel"].contains(className)
    }

    public func matches(model: String, _ configuration: ModelConfiguration) -> Bool {
        let l = model.lowercased()
        if aliases.contains(l) { return true }
        return configuration.variant.lowercased() == l
    }

    public func summary(_ configuration: ModelConfiguration) -> String {
        guard let c = configuration.as(PixArtConfiguration.self) else { return "" }
        return "depth \(c.numLayers), width \(c.innerDim) (\(c.numHeads)×\(c.headDim)), patch \(c.patchSize), image \(c.imageSize), "
            + "captions \(c.captionChannels)-d\(c.nullCaptionTokens.map { " (null caption \($0) tokens)" } ?? ""), "
            + "interpolation \(NumberFormat.fixed(c.interpolationScale, 2))\(c.useAdditionalConditions ? ", micro-conditions" : "")"
    }

    // MARK: detection

    public func plan(_ s: SourceTensors, hints: DetectionHints) throws -> ModelPlan? {
        if s.contains(PixArtNaming.diffusersAnchor) { return try planDiffusers(s, hints: hints) }
        if s.contains(PixArtNaming.originalAnchor) && s.contains("y_embedder.y_proj.fc1.weight") { return try planOriginal(s, hints: hints) }
        return nil
    }

    /// The hyperparameters names and shapes tell, in either layout (given the anchor names of it).
    func configuration(_ s: SourceTensors, patchEmbed: String, blocks: String, captionProj: String,
                       finalLinear: String, microAnchor: String, sampleSize: Int, interpolation: Double?, hints: DetectionHints) throws -> PixArtConfiguration {
        let x = try s.shape(patchEmbed, rank: 4)
        let (d, cin, p) = (x[0], x[1], x[2])
        let cfg = hints.diffusersConfig
        var c = PixArtConfiguration(sampleSize: sampleSize, interpolationScale: interpolation ?? cfg?["interpolation_scale"]?.doubleValue,
                                    useAdditionalConditions: s.contains(microAnchor))
        c.patchSize = p
        c.inChannels = cin
        c.numLayers = s.blockCount(prefix: blocks)
        c.outChannels = try s.shape(finalLinear, rank: 2)[0] / (p * p)
        let caption = try s.shape(captionProj, rank: 2)
        c.captionChannels = caption[1]
        c.crossAttentionDim = caption[0]
        // Heads cannot be read from weights: the config, --heads, PixArt's 72-wide heads, or 64-wide.
        if let h = hints.numHeads ?? cfg?["num_attention_heads"]?.intValue {
            c.numHeads = h
        } else if d % 72 == 0 {
            c.numHeads = d / 72
        } else if d % 64 == 0 {
            c.numHeads = d / 64
        } else {
            throw ModelError.needsOption("cannot infer the attention head count of a PixArt with width \(d); pass --heads N")
        }
        guard d % c.numHeads == 0 else { throw ModelError.badConfiguration("width \(d) is not divisible by \(c.numHeads) heads") }
        c.headDim = d / c.numHeads
        if let e = cfg?["norm_eps"]?.doubleValue { c.normEps = e }
        if let t = cfg?["num_embeds_ada_norm"]?.intValue { c.numTrainTimesteps = t }
        return c
    }

    func planDiffusers(_ s: SourceTensors, hints: DetectionHints) throws -> ModelPlan {
        let cfg = hints.diffusersConfig
        let sample: Int
        if let size = hints.imageSize {
            sample = size / 8
        } else if let v = cfg?["sample_size"]?.intValue {
            sample = v
        } else {
            throw ModelError.needsOption("PixArt weights in diffusers naming do not record the image size; pass --image-size 512, 1024 or 2048 (or keep config.json next to the weights)")
        }
        var c = try configuration(s, patchEmbed: "pos_embed.proj.weight", blocks: "transformer_blocks.",
                                  captionProj: "caption_projection.linear_1.weight", finalLinear: "proj_out.weight",
                                  microAnchor: "adaln_single.emb.resolution_embedder.linear_1.weight", sampleSize: sample,
                                  interpolation: nil, hints: hints)
        if let yl = s[PixArtNaming.nullCaption]?.shape, yl.count == 2 { c.nullCaptionTokens = yl[0] }
        try c.validate()
        var b = PlanBuilder(s)
        for n in s.order { try b.copy(n, as: n) }
        return try b.finish(ModelConfiguration(self, c), sourceNaming: "pixart-diffusers")
    }

    func planOriginal(_ s: SourceTensors, hints: DetectionHints) throws -> ModelPlan {
        let pos = try s.shape("pos_embed", rank: 3)
        let x = try s.shape("x_embedder.proj.weight", rank: 4)
        let p = x[2]
        let grid = Int(Double(pos[1]).squareRoot().rounded())
        guard grid * grid == pos[1], pos[2] == x[0] else { throw ModelError.inconsistent("pos_embed has shape \(pos), not a square grid of width \(x[0])") }
        if let size = hints.imageSize, size / 8 != grid * p {
            throw ModelError.inconsistent("--image-size \(size) disagrees with pos_embed (trained at \(grid * p * 8))")
        }
        // The position embedding is a fixed buffer: read its interpolation scale from its values and
        // check that it is the sin-cos embedding the forward pass recomputes.
        var scale: Double?
        if let values = try s.values("pos_embed") {
            scale = try Self.interpolationScale(of: values, grid: grid, dim: x[0])
        }
        var c = try configuration(s, patchEmbed: "x_embedder.proj.weight", blocks: "blocks.",
                                  captionProj: "y_embedder.y_proj.fc1.weight", finalLinear: "final_layer.linear.weight",
                                  microAnchor: "csize_embedder.mlp.0.weight", sampleSize: grid * p, interpolation: scale, hints: hints)
        if scale == nil, hints.diffusersConfig?["interpolation_scale"] == nil,
           let published = PixArtConfiguration.published.first(where: { $0.sampleSize == c.sampleSize }) {
            c.interpolationScale = published.interpolation
        }
        if let yl = s["y_embedder.y_embedding"]?.shape, yl.count == 2 { c.nullCaptionTokens = yl[0] }
        try c.validate()
        var b = PlanBuilder(s)
        b.consume("pos_embed")
        for i in 0..<c.numLayers {
            for suffix in ["weight", "bias"] {
                for (original, parts) in PixArtNaming.fused(block: i, suffix) { try b.splitRows(original, into: parts) }
            }
        }
        try b.renameRemaining(PixArtNaming.fromOriginal)
        return try b.finish(ModelConfiguration(self, c), sourceNaming: "pixart-original")
    }

    /// The interpolation scale of an original `pos_embed` `[1, g·g, D]`: token 1 (column 1) holds
    /// sin and cos of `1/scale` in its first frequency; the whole table must then equal the
    /// recomputed embedding (max abs difference ≤ 1e-5), else the file is refused.
    public static func interpolationScale(of values: [Float], grid: Int, dim: Int) throws -> Double {
        guard grid > 1, values.count == grid * grid * dim, dim % 4 == 0 else {
            throw ModelError.inconsistent("pos_embed is too small to tell its interpolation scale")
        }
        var angle = atan2(Double(values[dim]), Double(values[dim + dim / 4]))
        if angle <= 0 { angle += 2 * Double.pi }
        var scale = 1 / angle
        // Published scales are simple fractions (0.5, 1, 2, 4): snap to sixteenths when that close.
        let snapped = (scale * 16).rounded() / 16
        if abs(snapped - scale) < 1e-4, snapped > 0 { scale = snapped }
        let expected = Layers.sincosPositionEmbedding(dim: dim, gridHeight: grid, gridWidth: grid, baseSize: grid, interpolationScale: scale)
        var worst: Float = 0
        for (a, b) in zip(values, expected) { worst = max(worst, abs(a - b)) }
        guard worst <= 1e-5 else {
            throw ModelError.inconsistent("pos_embed is not PixArt's fixed 2-D sin-cos embedding (closest: interpolation scale \(NumberFormat.fixed(scale, 4)), off by \(worst)); DiTKit recomputes it and cannot carry other values")
        }
        return scale
    }

    // MARK: quantization policy

    public func quantizesByDefault(_ name: String, shape: [Int], _ configuration: ModelConfiguration) -> Bool {
        guard name.hasSuffix(".weight"), shape.count == 2 else { return false }
        return !(name.hasPrefix("pos_embed.") || name.hasPrefix("proj_out."))
    }

    public var int8PolicyDescription: String {
        "linear weights of attention, cross-attention, MLP, adaLN-single, timestep, micro-condition and caption embedders; pos_embed.proj, proj_out, scale_shift_tables, the null caption and biases stay float"
    }

    public func blockPolicy(_ configuration: ModelConfiguration) -> BlockPolicy {
        BlockPolicy(quantized: "self- and cross-attention (attn1, attn2: to_q, to_k, to_v, to_out.0) and MLP (ff.net.0.proj, ff.net.2) weights of the blocks", keep: [
            BlockKeepRule("pos_embed.*", "input layer"),
            BlockKeepRule("adaln_single.*", "timestep and micro-condition embedding, adaLN-single modulation"),
            BlockKeepRule("caption_projection.*", "caption embedding"),
            BlockKeepRule("*scale_shift_table", "modulation table"),
            BlockKeepRule("proj_out.*", "output layer"),
        ])
    }

    // MARK: exports

    public func exportNamings(_ configuration: ModelConfiguration) -> [ExportNaming] {
        guard let c = configuration.as(PixArtConfiguration.self) else { return [] }
        var diffusers = ExportNaming("diffusers", "diffusers PixArtTransformer2DModel names (the canonical names, without the null caption)") { name, _ in
            name == PixArtNaming.nullCaption ? [] : [ExportedTensor(name)]
        }
        if c.nullCaptionTokens != nil {
            diffusers.notes = ["the null caption (caption_projection.y_embedding, [\(c.nullCaptionTokens ?? 0), \(c.captionChannels)]) is not written: diffusers' PixArtTransformer2DModel has no slot for it (its pipeline guides with an encoded empty prompt)"]
        }
        var original = ExportNaming("original", "PixArt-alpha / PixArt-sigma names, fused qkv and kv, with the fixed pos_embed") { name, _ in
            [PixArtNaming.toOriginal(name)]
        }
        let g = c.sampleSize / c.patchSize, d = c.innerDim, scale = c.interpolationScale
        original.extras = [ExtraTensor("pos_embed", shape: [1, g * g, d]) {
            Layers.sincosPositionEmbedding(dim: d, gridHeight: g, gridWidth: g, baseSize: g, interpolationScale: scale)
        }]
        if c.nullCaptionTokens == nil {
            original.refusal = "the bundle has no null caption (caption_projection.y_embedding: diffusers folders do not carry it), and the original layout requires y_embedder.y_embedding; convert from an original release instead"
        }
        return [diffusers, original]
    }

    /// The original PixArt names (fused qkv and kv, the fixed pos_embed, the null caption).
    public func ggufNaming(_ configuration: ModelConfiguration) -> ExportNaming? {
        exportNamings(configuration).first { $0.name == "original" }
    }

    public func diffusersConfig(_ configuration: ModelConfiguration) -> JSONValue? {
        guard let c = configuration.as(PixArtConfiguration.self) else { return nil }
        return .object([
            ("_class_name", .string("PixArtTransformer2DModel")), ("_diffusers_version", .string(diffusersVersion)),
            ("activation_fn", .string("gelu-approximate")), ("attention_bias", .bool(true)), ("attention_head_dim", .int(c.headDim)),
            ("attention_type", .string("default")), ("caption_channels", .int(c.captionChannels)),
            ("cross_attention_dim", .int(c.crossAttentionDim)), ("dropout", .double(0)), ("in_channels", .int(c.inChannels)),
            ("interpolation_scale", c.interpolationScale == c.interpolationScale.rounded() ? .int(Int(c.interpolationScale)) : .double(c.interpolationScale)),
            ("norm_elementwise_affine", .bool(false)), ("norm_eps", .double(c.normEps)), ("norm_num_groups", .int(32)),
            ("norm_type", .string("ada_norm_single")), ("num_attention_heads", .int(c.numHeads)),
            ("num_embeds_ada_norm", .int(c.numTrainTimesteps)), ("num_layers", .int(c.numLayers)), ("out_channels", .int(c.outChannels)),
            ("patch_size", .int(c.patchSize)), ("sample_size", .int(c.sampleSize)), ("upcast_attention", .bool(false)),
            ("use_additional_conditions", .bool(c.useAdditionalConditions)),
        ])
    }

    // MARK: forward and verification

    public func passes(_ configuration: ModelConfiguration) -> [ForwardPass] {
        let micro = (configuration.as(PixArtConfiguration.self)?.useAdditionalConditions ?? false)
        return [ForwardPass("output", inputs: [
            PassInput("hidden_states"), PassInput("encoder_hidden_states"), PassInput("timestep"),
            PassInput("encoder_attention_mask", optional: true),
            PassInput("resolution", optional: !micro), PassInput("aspect_ratio", optional: !micro),
        ])]
    }

    public func forward(_ pass: String, _ configuration: ModelConfiguration, weights: any WeightStore, inputs: ModelInputs,
                        trace: LayerTrace?) throws -> Tensor {
        let c = try Self.pixart(configuration)
        guard let x = inputs["hidden_states"], let y = inputs["encoder_hidden_states"], let t = inputs["timestep"] else {
            throw ModelError.inconsistent("PixArt needs inputs hidden_states, encoder_hidden_states and timestep")
        }
        // A single timestep applies to the whole batch, as in diffusers.
        let n = x.shape.first ?? 1
        let timesteps = t.count == 1 ? [Float](repeating: t.data[0], count: n) : t.data
        return try PixArtModel(config: c, weights: weights).forward(
            hiddenStates: x, encoderHiddenStates: y, timestep: timesteps, encoderAttentionMask: inputs["encoder_attention_mask"],
            resolution: inputs["resolution"], aspectRatio: inputs["aspect_ratio"], trace: trace)
    }

    /// Seeded latents at the trained size, seeded caption features (as many tokens as the null
    /// caption, else 120) with a mask that leaves a different tail of tokens out for each item,
    /// timesteps from 999 down to 0, and square micro-conditions at the trained size.
    public func verificationInputs(_ pass: String, _ configuration: ModelConfiguration, options: VerificationInputOptions) throws -> ModelInputs {
        let c = try Self.pixart(configuration)
        let n = max(1, options.batch ?? 3)
        let size = options.imageSize.map { $0 / 8 } ?? c.sampleSize
        guard size > 0, size % c.patchSize == 0 else { throw ModelError.inconsistent("image size \(size * 8) does not fit patch \(c.patchSize) at 8x downsampling") }
        let tokens = c.nullCaptionTokens ?? 120
        var rng = SeededRandom(seed: options.seed)
        let x = Tensor(shape: [n, c.inChannels, size, size], data: rng.normals(n * c.inChannels * size * size))
        let y = Tensor(shape: [n, tokens, c.captionChannels], data: rng.normals(n * tokens * c.captionChannels))
        var mask = Tensor(zeros: [n, tokens])
        for b in 0..<n {
            let keep = max(1, tokens - (b + 1) * tokens / (2 * n + 1))
            for k in 0..<keep { mask.data[b * tokens + k] = 1 }
        }
        let t = (0..<n).map { n == 1 ? Float(500) : (Float(999) * Float(n - 1 - $0) / Float(n - 1)).rounded() }
        var inputs: ModelInputs = ["hidden_states": x, "encoder_hidden_states": y, "timestep": Tensor(shape: [n], data: t),
                                   "encoder_attention_mask": mask]
        if c.useAdditionalConditions {
            inputs["resolution"] = Tensor(shape: [n, 2], data: Array(repeating: Float(size * 8), count: 2 * n))
            inputs["aspect_ratio"] = Tensor(shape: [n, 1], data: Array(repeating: 1, count: n))
        }
        return inputs
    }

    // MARK: sampling

    public func sampler(_ configuration: ModelConfiguration, weights: any WeightStore, options: SamplingOptions,
                        conditioning: SamplingConditioning) throws -> (any LatentSampler)? {
        let c = try Self.pixart(configuration)
        guard conditioning.classes == nil else { throw ModelError.inconsistent("PixArt is caption-conditioned: give --captions FILE.h5, not classes") }
        guard let path = conditioning.featuresPath else {
            throw ModelError.needsOption("PixArt samples from precomputed T5 caption features: give --captions FILE.h5 (/encoder_hidden_states, /encoder_attention_mask)")
        }
        let captions = try PixArtCaptions.read(path, configuration: c)
        return try PixArtSampler(model: PixArtModel(config: c, weights: weights), captions: captions, options: options,
                                 imageSize: conditioning.imageSize ?? c.imageSize)
    }

    public func latentChannels(_ configuration: ModelConfiguration) -> Int {
        configuration.as(PixArtConfiguration.self)?.inChannels ?? 0
    }
}
