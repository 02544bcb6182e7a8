// SD3 / SD3.5 (MMDiT, MMDiT-X) as a model family: detection from diffusers `transformer/` folders
// and Stability's layout (bare, or under `model.diffusion_model.` in Stability's and ComfyUI's
// single files, beside the VAE and text encoders), diffusers names as canonical names, the diffusers
// forward pass, verification inputs, the int8 policy, exports in both layouts and the flow-matching
// sampler.
import DiTKitCore
import DiTKitNumerics
#if canImport(Glibc)
import Glibc
#endif

extension SD3Configuration: FamilyConfiguration {}

public struct SD3Family: ModelFamily {
    public init() {}

    public var name: String { "sd3" }
    public var title: String { "SD3 / SD3.5 (MMDiT)" }
    public var role: ModelRole { .denoiser }
    public var aliases: [String] { ["sd3.5", "sd35", "mmdit"] }
    public var canonicalNaming: String { "sd3-diffusers" }
    public var anchors: [String] { [SD3Naming.diffusersAnchor, SD3Naming.originalAnchor] }
    public var ggufArchitecture: String { "sd3" }

    /// The latent scaling of the VAE SD3 ships with (diffusers `AutoencoderKL` config of the releases;
    /// Stability's `SD3LatentFormat`): latents are `(z − 0.0609) × 1.5305` going in.
    public static let vaeScaling = (scalingFactor: 1.5305, shiftFactor: 0.0609)

    static func sd3(_ c: ModelConfiguration) throws -> SD3Configuration {
        guard let s = c.as(SD3Configuration.self) else { throw ModelError.inconsistent("\(c.variant) is not an SD3 transformer") }
        return s
    }

    public func configuration(json: JSONValue) throws -> ModelConfiguration {
        ModelConfiguration(self, try SD3Configuration(json: json))
    }

    public func configuration(named: String, imageSize: Int?) -> ModelConfiguration? {
        SD3Configuration.named(named).map { ModelConfiguration(self, $0) }
    }

    public func acceptsDiffusersClass(_ className: String) -> Bool { className == "SD3Transformer2DModel" }

    public func matches(model: String, _ configuration: ModelConfiguration) -> Bool {
        let l = model.lowercased()
        if aliases.contains(l) { return true }
        if let named = SD3Configuration.named(l), configuration.as(SD3Configuration.self) == named { return true }
        return configuration.variant.lowercased() == l
    }

    public func summary(_ configuration: ModelConfiguration) -> String {
        guard let c = configuration.as(SD3Configuration.self) else { return "" }
        return "depth \(c.numLayers), width \(c.innerDim) (\(c.numHeads)×\(c.headDim)), patch \(c.patchSize), "
            + "text \(c.jointAttentionDim)-d + pooled \(c.pooledProjectionDim)-d, "
            + (c.posEmbedMaxSize.map { "positions \($0)×\($0)" } ?? "computed positions")
            + (c.dualAttentionLayers.isEmpty ? "" : ", dual attention in \(c.dualAttentionLayers.count) layers")
            + (c.qkNorm.map { ", qk \($0.rawValue)" } ?? "")
    }

    /// The VAE beside an SD3 transformer in Stability's and ComfyUI's single files takes SD3's latent scaling.
    public var companionAutoencoderScaling: (scalingFactor: Double, shiftFactor: Double?)? {
        (Self.vaeScaling.scalingFactor, Self.vaeScaling.shiftFactor)
    }

    // MARK: detection

    public func plan(_ s: SourceTensors, hints: DetectionHints) throws -> ModelPlan? {
        if s.contains(SD3Naming.originalAnchor) { return try planOriginal(s, hints: hints) }
        if s.contains(SD3Naming.diffusersAnchor), s.contains("pos_embed.proj.weight"), s.contains("context_embedder.weight"),
           s.contains("transformer_blocks.0.norm1_context.linear.weight") {
            return try planDiffusers(s, hints: hints)
        }
        return nil
    }

    /// The tensor names the hyperparameters are read from, in one layout.
    struct Landmarks {
        var patchEmbed: String, blocks: String, context: String, pooled: String, finalLinear: String, positions: String
        var dual: (Int) -> String
        var queryNorm: String
    }

    static let diffusersLandmarks = Landmarks(
        patchEmbed: "pos_embed.proj.weight", blocks: "transformer_blocks.", context: "context_embedder.weight",
        pooled: "time_text_embed.text_embedder.linear_1.weight", finalLinear: "proj_out.weight", positions: "pos_embed.pos_embed",
        dual: { "transformer_blocks.\($0).attn2.to_q.weight" }, queryNorm: "transformer_blocks.0.attn.norm_q")
    static let originalLandmarks = Landmarks(
        patchEmbed: "x_embedder.proj.weight", blocks: "joint_blocks.", context: "context_embedder.weight",
        pooled: "y_embedder.mlp.0.weight", finalLinear: "final_layer.linear.weight", positions: "pos_embed",
        dual: { "joint_blocks.\($0).x_block.attn2.qkv.weight" }, queryNorm: "joint_blocks.0.x_block.attn.ln_q")

    /// The hyperparameters names and shapes tell (plus config.json and the hints for what they cannot:
    /// the sample size, a parameterless qk norm, the head count of a width without qk norm that is
    /// not a multiple of 64).
    func configuration(_ s: SourceTensors, _ n: Landmarks, hints: DetectionHints) throws -> SD3Configuration {
        let cfg = hints.diffusersConfig
        var c = SD3Configuration()
        let x = try s.shape(n.patchEmbed, rank: 4)
        let d = x[0]
        guard x[2] == x[3], x[2] > 0 else { throw ModelError.inconsistent("'\(n.patchEmbed)' has shape \(x): patches must be square") }
        c.inChannels = x[1]
        c.patchSize = x[2]
        c.numLayers = s.blockCount(prefix: n.blocks)
        guard c.numLayers > 0 else { throw ModelError.notRecognised("no '\(n.blocks)N' blocks") }
        let context = try s.shape(n.context, rank: 2)
        c.captionProjectionDim = context[0]
        c.jointAttentionDim = context[1]
        c.pooledProjectionDim = try s.shape(n.pooled, rank: 2)[1]
        let out = try s.shape(n.finalLinear, rank: 2)[0]
        guard out % (c.patchSize * c.patchSize) == 0 else { throw ModelError.inconsistent("'\(n.finalLinear)' has \(out) rows, not a multiple of patch² \(c.patchSize * c.patchSize)") }
        c.outChannels = out / (c.patchSize * c.patchSize)
        if let pe = s[n.positions] {
            guard pe.shape.count == 3, pe.shape[0] == 1, pe.shape[2] == d else { throw ModelError.inconsistent("'\(n.positions)' has shape \(pe.shape), expected [1, M², \(d)]") }
            let m = Int(Double(pe.shape[1]).squareRoot().rounded())
            guard m * m == pe.shape[1] else { throw ModelError.inconsistent("'\(n.positions)' holds \(pe.shape[1]) positions, not a square table") }
            c.posEmbedMaxSize = m
        } else {
            c.posEmbedMaxSize = nil
        }
        c.dualAttentionLayers = (0..<c.numLayers).filter { s.contains(n.dual($0)) }
        let normWidth = s[n.queryNorm + ".weight"]?.shape
        if let v = cfg?["qk_norm"] {
            c.qkNorm = try SD3QKNorm.parse(v)
        } else if normWidth != nil {
            c.qkNorm = s.contains(n.queryNorm + ".bias") ? .layerNorm : .rmsNorm
        }
        // Heads: --heads, config.json, the per-head norm's width, or SD3's 64-wide heads (Stability's
        // MMDiTX: width 64 per layer, one head per layer).
        if let h = hints.numHeads ?? cfg?["num_attention_heads"]?.intValue {
            c.numHeads = h
        } else if let w = normWidth, w.count == 1, w[0] > 0, d % w[0] == 0 {
            c.numHeads = d / w[0]
        } else if d % 64 == 0 {
            c.numHeads = d / 64
        } else {
            throw ModelError.needsOption("cannot infer the attention head count of an SD3 transformer of width \(d); pass --heads N")
        }
        guard c.numHeads > 0, d % c.numHeads == 0 else { throw ModelError.badConfiguration("width \(d) is not divisible by \(c.numHeads) heads") }
        c.headDim = d / c.numHeads
        // The sample size is not in the weights: config.json, --image-size, or the releases' 128 (1024 px).
        if let v = cfg?["sample_size"]?.intValue {
            c.sampleSize = v
        } else if let size = hints.imageSize {
            guard size > 0, size % 8 == 0 else { throw ModelError.needsOption("--image-size \(size) must be a positive multiple of 8") }
            c.sampleSize = size / 8
        }
        try c.validate()
        return c
    }

    func planDiffusers(_ s: SourceTensors, hints: DetectionHints) throws -> ModelPlan {
        let c = try configuration(s, Self.diffusersLandmarks, hints: hints)
        var b = PlanBuilder(s)
        for n in s.order { try b.copy(n, as: n) }
        return try b.finish(ModelConfiguration(self, c), sourceNaming: "sd3-diffusers")
    }

    func planOriginal(_ s: SourceTensors, hints: DetectionHints) throws -> ModelPlan {
        guard s.contains("pos_embed") else {
            throw ModelError.mismatch(model: "SD3 (Stability layout)", missing: ["pos_embed"], unexpected: [], shapes: [])
        }
        let c = try configuration(s, Self.originalLandmarks, hints: hints)
        var b = PlanBuilder(s)
        for i in 0..<c.numLayers {
            for suffix in ["weight", "bias"] {
                for (original, parts) in SD3Naming.fused(block: i, suffix) { try b.splitRows(original, into: parts) }
            }
        }
        // [shift, scale] (Stability) -> [scale, shift] (diffusers' AdaLayerNormContinuous).
        let last = c.numLayers - 1
        for suffix in ["weight", "bias"] {
            try b.swapHalves("joint_blocks.\(last).context_block.adaLN_modulation.1.\(suffix)", as: "transformer_blocks.\(last).norm1_context.linear.\(suffix)")
            try b.swapHalves("final_layer.adaLN_modulation.1.\(suffix)", as: "norm_out.linear.\(suffix)")
        }
        try b.renameRemaining(SD3Naming.fromOriginal)
        return try b.finish(ModelConfiguration(self, c), sourceNaming: "sd3-original")
    }

    // MARK: quantization policy

    public func quantizesByDefault(_ name: String, shape: [Int], _ configuration: ModelConfiguration) -> Bool {
        // At least as conservative as ComfyUI-GGUF: 1-D tensors and tensors under 1024 values stay
        // float; so do the embedders (patch, position, timestep, pooled text, context), every adaLN
        // modulation and the output layer. What remains: the attention and MLP weights of the blocks.
        guard name.hasSuffix(".weight"), shape.count == 2, shape.reduce(1, *) >= 1024, name.hasPrefix("transformer_blocks.") else { return false }
        return !(name.contains(".norm1.") || name.contains(".norm1_context."))
    }

    public var int8PolicyDescription: String {
        "attention (attn, attn2: to_q/k/v, add_q/k/v_proj, to_out, to_add_out) and MLP (ff, ff_context) weights of the joint blocks with at least 1024 values; patch, position, timestep, pooled-text and context embedders, adaLN modulations (norm1, norm1_context, norm_out), proj_out, qk norms, biases and small tensors stay float"
    }

    public func blockPolicy(_ configuration: ModelConfiguration) -> BlockPolicy {
        BlockPolicy(quantized: "attention (attn, attn2: to_q, to_k, to_v, add_q/k/v_proj, to_out.0, to_add_out) and MLP (ff, ff_context) weights of the joint blocks", keep: [
            BlockKeepRule("pos_embed.*", "input layer"),
            BlockKeepRule("time_text_embed.*", "timestep and pooled-text embedding"),
            BlockKeepRule("context_embedder.*", "input layer"),
            BlockKeepRule("transformer_blocks.*.norm1.*", "adaLN modulation", blockModulation: true),
            BlockKeepRule("transformer_blocks.*.norm1_context.*", "adaLN modulation", blockModulation: true),
            BlockKeepRule("norm_out.*", "adaLN modulation"),
            BlockKeepRule("proj_out.*", "output layer"),
        ])
    }

    // MARK: exports

    public func exportNamings(_ configuration: ModelConfiguration) -> [ExportNaming] {
        guard let c = configuration.as(SD3Configuration.self) else { return [] }
        let diffusers = ExportNaming("diffusers", "diffusers SD3Transformer2DModel names (the canonical names)") { name, _ in [ExportedTensor(name)] }
        var original = ExportNaming("original", "Stability's single-file names (model.diffusion_model.joint_blocks.N.…), fused qkv, [shift, scale] final norms") { name, _ in
            var t = SD3Naming.toOriginal(name, c)
            t.name = SD3Naming.singleFilePrefix + t.name
            return [t]
        }
        if c.posEmbedMaxSize == nil {
            original.refusal = "this transformer has no stored position table (pos_embed_max_size null), which Stability's MMDiTX needs as pos_embed"
        } else if c.qkNorm == .fp32LayerNorm {
            original.refusal = "its qk norm (fp32_layer_norm, no parameters) has no counterpart in Stability's MMDiTX (rms or ln, both with weights)"
        } else if c.isDual(c.numLayers - 1) {
            original.refusal = "its last block has a dual attention, which Stability's MMDiTX does not build (x_block_self_attn needs a block that is not pre_only)"
        }
        original.notes = ["written as the transformer of a Stability single file (prefix model.diffusion_model.); the VAE (first_stage_model.) and text encoders are not part of an SD3 bundle"]
        return [diffusers, original]
    }

    /// Stability's names at the root (ComfyUI-GGUF's converter strips `model.diffusion_model.`).
    public func ggufNaming(_ configuration: ModelConfiguration) -> ExportNaming? {
        guard var original = exportNamings(configuration).first(where: { $0.name == "original" }) else { return nil }
        let map = original.map
        original.map = { name, shape in
            map(name, shape).map { t in
                var t = t
                if t.name.hasPrefix(SD3Naming.singleFilePrefix) { t.name.removeFirst(SD3Naming.singleFilePrefix.count) }
                return t
            }
        }
        original.notes = []
        return original
    }

    public func diffusersConfig(_ configuration: ModelConfiguration) -> JSONValue? {
        guard let c = configuration.as(SD3Configuration.self) else { return nil }
        return .object([
            ("_class_name", .string("SD3Transformer2DModel")), ("_diffusers_version", .string(diffusersVersion)),
            ("attention_head_dim", .int(c.headDim)), ("caption_projection_dim", .int(c.captionProjectionDim)),
            ("dual_attention_layers", .array(c.dualAttentionLayers.map { .int($0) })), ("in_channels", .int(c.inChannels)),
            ("joint_attention_dim", .int(c.jointAttentionDim)), ("num_attention_heads", .int(c.numHeads)), ("num_layers", .int(c.numLayers)),
            ("out_channels", .int(c.outChannels)), ("patch_size", .int(c.patchSize)), ("pooled_projection_dim", .int(c.pooledProjectionDim)),
            ("pos_embed_max_size", c.posEmbedMaxSize.map { .int($0) } ?? .null), ("qk_norm", c.qkNorm.map { .string($0.rawValue) } ?? .null),
            ("sample_size", .int(c.sampleSize)),
        ])
    }

    // MARK: forward and verification

    public func passes(_ configuration: ModelConfiguration) -> [ForwardPass] {
        [ForwardPass("output", inputs: [PassInput("hidden_states"), PassInput("encoder_hidden_states"),
                                        PassInput("pooled_projections"), PassInput("timestep")])]
    }

    public func forward(_ pass: String, _ configuration: ModelConfiguration, weights: any WeightStore, inputs: ModelInputs,
                        trace: LayerTrace?) throws -> Tensor {
        let c = try Self.sd3(configuration)
        guard let x = inputs["hidden_states"], let y = inputs["encoder_hidden_states"], let pooled = inputs["pooled_projections"],
              let t = inputs["timestep"] else {
            throw ModelError.inconsistent("SD3 needs inputs hidden_states, encoder_hidden_states, pooled_projections and timestep")
        }
        // A single timestep applies to the whole batch, as in diffusers.
        let n = x.shape.first ?? 1
        let timesteps = t.count == 1 ? [Float](repeating: t.data[0], count: n) : t.data
        return try SD3Model(config: c, weights: weights).forward(hiddenStates: x, encoderHiddenStates: y, pooledProjections: pooled,
                                                                  timestep: timesteps, trace: trace)
    }

    /// Text tokens of the verification inputs (the pipeline's 77 CLIP + 256 T5 tokens are more than a
    /// check needs).
    public static let verificationTokens = 16

    /// Seeded latents (at most 32×32, 256 px, or the trained size when smaller; `--image-size` for
    /// another), seeded text features (16 tokens) and pooled projections, timesteps from 1000 down to 1.
    public func verificationInputs(_ pass: String, _ configuration: ModelConfiguration, options: VerificationInputOptions) throws -> ModelInputs {
        let c = try Self.sd3(configuration)
        let n = max(1, options.batch ?? 3)
        var size = options.imageSize.map { $0 / 8 } ?? min(c.sampleSize, 32)
        if options.imageSize == nil, let m = c.posEmbedMaxSize { size = min(size, m * c.patchSize) }
        guard size > 0, size % c.patchSize == 0 else { throw ModelError.inconsistent("image size \(size * 8) does not fit patch \(c.patchSize) at 8x downsampling") }
        let tokens = Self.verificationTokens
        var rng = SeededRandom(seed: options.seed)
        let x = Tensor(shape: [n, c.inChannels, size, size], data: rng.normals(n * c.inChannels * size * size))
        let y = Tensor(shape: [n, tokens, c.jointAttentionDim], data: rng.normals(n * tokens * c.jointAttentionDim))
        let pooled = Tensor(shape: [n, c.pooledProjectionDim], data: rng.normals(n * c.pooledProjectionDim))
        let t = (0..<n).map { n == 1 ? Float(500) : Float(1000) - Float(999) * Float($0) / Float(n - 1) }
        return ["hidden_states": x, "encoder_hidden_states": y, "pooled_projections": pooled, "timestep": Tensor(shape: [n], data: t)]
    }

    // MARK: sampling

    public func sampler(_ configuration: ModelConfiguration, weights: any WeightStore, options: SamplingOptions,
                        conditioning: SamplingConditioning) throws -> (any LatentSampler)? {
        let c = try Self.sd3(configuration)
        guard conditioning.classes == nil else { throw ModelError.inconsistent("SD3 is text-conditioned: give --text FILE.h5, not classes") }
        guard let path = conditioning.featuresPath else {
            throw ModelError.needsOption("SD3 samples from precomputed text features: give --text FILE.h5 (/encoder_hidden_states, /pooled_projections and their /negative_* for guidance)")
        }
        let text = try SD3TextFeatures.read(path, configuration: c)
        return try SD3Sampler(model: SD3Model(config: c, weights: weights), text: text, options: options,
                              imageSize: conditioning.imageSize ?? c.imageSize)
    }

    public func latentChannels(_ configuration: ModelConfiguration) -> Int {
        configuration.as(SD3Configuration.self)?.inChannels ?? 0
    }
}
