// FLUX.1 (dev, schnell, custom sizes) as a model family: detection from diffusers `transformer/`
// folders (sharded or not), Black Forest Labs' files and ComfyUI's `model.diffusion_model.` copies
// of them (bf16 or float8), diffusers names as canonical names, the diffusers forward pass,
// verification inputs as FluxPipeline builds them, the int8 policy, diffusers and BFL exports, and
// the flow-matching sampler.
import DiTKitCore
import DiTKitNumerics

extension FluxConfiguration: FamilyConfiguration {}

public struct FluxFamily: ModelFamily {
    public init() {}

    public var name: String { "flux" }
    public var title: String { "FLUX.1" }
    public var role: ModelRole { .denoiser }
    public var aliases: [String] { ["flux.1", "flux1"] }
    public var canonicalNaming: String { "flux-diffusers" }
    public var anchors: [String] { [FluxNaming.diffusersAnchor, FluxNaming.originalAnchor] }
    public var ggufArchitecture: String { "flux" }
    /// A single file holding FLUX.1 and its VAE (ComfyUI's checkpoints): the VAE's latents are FLUX.1's.
    public var companionAutoencoderScaling: (scalingFactor: Double, shiftFactor: Double?)? {
        (VAEConfiguration.fluxVAE.scalingFactor, VAEConfiguration.fluxVAE.shiftFactor)
    }

    static func flux(_ c: ModelConfiguration) throws -> FluxConfiguration {
        guard let f = c.as(FluxConfiguration.self) else { throw ModelError.inconsistent("\(c.variant) is not a FLUX.1") }
        return f
    }

    public func configuration(json: JSONValue) throws -> ModelConfiguration {
        ModelConfiguration(self, try FluxConfiguration(json: json))
    }

    public func configuration(named: String, imageSize: Int?) -> ModelConfiguration? {
        FluxConfiguration.named(named).map { ModelConfiguration(self, $0) }
    }

    public func acceptsDiffusersClass(_ className: String) -> Bool { className == "FluxTransformer2DModel" }

    public func matches(model: String, _ configuration: ModelConfiguration) -> Bool {
        let l = model.lowercased()
        return aliases.contains(l) || configuration.variant.lowercased() == l
    }

    public func summary(_ configuration: ModelConfiguration) -> String {
        guard let c = configuration.as(FluxConfiguration.self) else { return "" }
        return "\(c.numLayers) double + \(c.numSingleLayers) single blocks, width \(c.innerDim) (\(c.numHeads)×\(c.headDim)), "
            + "in \(c.inChannels), text \(c.jointAttentionDim)-d, pooled \(c.pooledProjectionDim)-d, rope \(c.axesDimsRope), "
            + (c.guidanceEmbeds ? "guidance embedding" : "no guidance embedding")
    }

    // MARK: detection

    public func plan(_ s: SourceTensors, hints: DetectionHints) throws -> ModelPlan? {
        if s.contains(FluxNaming.diffusersAnchor), s.contains("time_text_embed.timestep_embedder.linear_1.weight"),
           s[FluxNaming.diffusersAnchor]?.shape.count == 2 {
            return try planDiffusers(s, hints: hints)
        }
        if s.contains(FluxNaming.originalAnchor), s.contains("time_in.in_layer.weight") { return try planOriginal(s, hints: hints) }
        return nil
    }

    /// The names a layout gives the tensors that tell the configuration.
    struct LayoutNames {
        var input, context, pooled, guidance, output, doublePrefix, singlePrefix: String
        var headNorm: (Int) -> String
        var singleHeadNorm: (Int) -> String
        var mlpIn: (Int) -> String

        static let diffusers = LayoutNames(
            input: "x_embedder.weight", context: "context_embedder.weight", pooled: "time_text_embed.text_embedder.linear_1.weight",
            guidance: "time_text_embed.guidance_embedder.linear_1.weight", output: "proj_out.weight",
            doublePrefix: "transformer_blocks.", singlePrefix: "single_transformer_blocks.",
            headNorm: { "transformer_blocks.\($0).attn.norm_q.weight" }, singleHeadNorm: { "single_transformer_blocks.\($0).attn.norm_q.weight" },
            mlpIn: { "transformer_blocks.\($0).ff.net.0.proj.weight" })
        static let original = LayoutNames(
            input: "img_in.weight", context: "txt_in.weight", pooled: "vector_in.in_layer.weight",
            guidance: "guidance_in.in_layer.weight", output: "final_layer.linear.weight",
            doublePrefix: "double_blocks.", singlePrefix: "single_blocks.",
            headNorm: { "double_blocks.\($0).img_attn.norm.query_norm.scale" }, singleHeadNorm: { "single_blocks.\($0).norm.query_norm.scale" },
            mlpIn: { "double_blocks.\($0).img_mlp.0.weight" })
    }

    /// The hyperparameters names and shapes tell, completed by `config.json` (patch size, rotary
    /// axes) and checked against it.
    func configuration(_ s: SourceTensors, _ names: LayoutNames, hints: DetectionHints) throws -> FluxConfiguration {
        let cfg = hints.diffusersConfig
        let x = try s.shape(names.input, rank: 2)
        let d = x[0]
        var c = FluxConfiguration(guidanceEmbeds: s.contains(names.guidance))
        c.numLayers = s.blockCount(prefix: names.doublePrefix)
        c.numSingleLayers = s.blockCount(prefix: names.singlePrefix)
        guard c.numLayers + c.numSingleLayers > 0 else { throw ModelError.notRecognised("a FLUX.1 without double or single blocks") }
        c.headDim = try s.shape(c.numLayers > 0 ? names.headNorm(0) : names.singleHeadNorm(0), rank: 1)[0]
        guard c.headDim > 0, d % c.headDim == 0 else { throw ModelError.inconsistent("width \(d) is not a multiple of the head width \(c.headDim)") }
        c.numHeads = d / c.headDim
        c.jointAttentionDim = try s.shape(names.context, rank: 2)[1]
        c.pooledProjectionDim = try s.shape(names.pooled, rank: 2)[1]
        c.patchSize = cfg?["patch_size"]?.intValue ?? 1
        guard c.patchSize > 0, x[1] % (c.patchSize * c.patchSize) == 0 else {
            throw ModelError.inconsistent("the input projection takes \(x[1]) values, not a multiple of patch \(c.patchSize)²")
        }
        c.inChannels = x[1] / (c.patchSize * c.patchSize)
        let out = try s.shape(names.output, rank: 2)[0] / (c.patchSize * c.patchSize)
        c.outChannels = out == c.inChannels ? nil : out
        // The MLP width: a double block's first MLP layer, else a single block's proj_mlp / linear1.
        let mlp: Int
        if c.numLayers > 0 {
            mlp = try s.shape(names.mlpIn(0), rank: 2)[0]
        } else if s.contains("single_transformer_blocks.0.proj_mlp.weight") {
            mlp = try s.shape("single_transformer_blocks.0.proj_mlp.weight", rank: 2)[0]
        } else {
            mlp = try s.shape("single_blocks.0.linear1.weight", rank: 2)[0] - 3 * d
        }
        guard mlp > 0, mlp % d == 0 else { throw ModelError.badConfiguration("MLP width \(mlp) is not a whole multiple of the width \(d)") }
        c.mlpRatio = mlp / d
        // Rotary axes are not in the weights: config.json, else FLUX.1's proportions at this head width
        // ((16, 56, 56) at 128, every release).
        if let axes = cfg?["axes_dims_rope"]?.arrayValue?.compactMap(\.intValue) {
            c.axesDimsRope = axes
        } else if let axes = FluxConfiguration.defaultAxes(headDim: c.headDim) {
            c.axesDimsRope = axes
        } else {
            throw ModelError.needsOption("a FLUX with \(c.headDim)-wide heads has no default rotary axes; put its diffusers config.json (axes_dims_rope) beside the weights")
        }
        if let cfg { try check(c, against: cfg) }
        try c.validate()
        return c
    }

    /// A `config.json` beside the weights must describe them.
    func check(_ c: FluxConfiguration, against cfg: JSONValue) throws {
        var wrong: [String] = []
        func expect(_ key: String, _ value: Int) {
            if let v = cfg[key]?.intValue, v != value { wrong.append("\(key) \(v) (the weights have \(value))") }
        }
        expect("num_layers", c.numLayers)
        expect("num_single_layers", c.numSingleLayers)
        expect("attention_head_dim", c.headDim)
        expect("num_attention_heads", c.numHeads)
        expect("in_channels", c.inChannels)
        expect("joint_attention_dim", c.jointAttentionDim)
        expect("pooled_projection_dim", c.pooledProjectionDim)
        if let g = cfg["guidance_embeds"]?.boolValue, g != c.guidanceEmbeds {
            wrong.append("guidance_embeds \(g) (the weights \(c.guidanceEmbeds ? "have" : "have no") guidance embedder)")
        }
        guard wrong.isEmpty else { throw ModelError.inconsistent("config.json disagrees with the weights: " + wrong.joined(separator: ", ")) }
    }

    func planDiffusers(_ s: SourceTensors, hints: DetectionHints) throws -> ModelPlan {
        let c = try configuration(s, .diffusers, hints: hints)
        var b = PlanBuilder(s)
        for n in s.order { try b.copy(n, as: n) }
        return try b.finish(ModelConfiguration(self, c), sourceNaming: "flux-diffusers")
    }

    func planOriginal(_ s: SourceTensors, hints: DetectionHints) throws -> ModelPlan {
        if let scaled = s.order.first(where: { $0.hasSuffix(".scale_weight") || $0.hasSuffix(".scale_input") }) {
            throw ModelError.notRecognised("'\(s.full(scaled))': a scaled-float8 checkpoint (per-tensor scales beside float8 weights), which DiTKit does not read; convert from the bf16 release or a plain float8 file")
        }
        let c = try configuration(s, .original, hints: hints)
        var b = PlanBuilder(s)
        for (original, parts) in FluxNaming.fused(width: c.innerDim, mlp: c.mlpHidden, doubleBlocks: c.numLayers, singleBlocks: c.numSingleLayers) {
            if original.contains(".linear1.") {
                try b.splitRows(original, sizes: parts.map(\.rows), into: parts.map(\.name))
            } else {
                try b.splitRows(original, into: parts.map(\.name))
            }
        }
        for (original, canonical) in FluxNaming.finalModulation { try b.swapHalves(original, as: canonical) }
        try b.renameRemaining(FluxNaming.fromOriginal)
        return try b.finish(ModelConfiguration(self, c), sourceNaming: "flux-original")
    }

    // MARK: quantization policy

    /// int8 applies to the linear weights inside the blocks (attention projections, MLPs, the single
    /// blocks' proj_mlp and proj_out) with at least 1024 values. The input and output layers, the
    /// embedders, every adaLN modulation, the qk norms and biases stay float32.
    public func quantizesByDefault(_ name: String, shape: [Int], _ configuration: ModelConfiguration) -> Bool {
        guard name.hasSuffix(".weight"), shape.count == 2, shape.reduce(1, *) >= 1024 else { return false }
        guard name.hasPrefix("transformer_blocks.") || name.hasPrefix("single_transformer_blocks.") else { return false }
        return !(name.contains(".norm1.") || name.contains(".norm1_context.") || name.contains(".norm.linear."))
    }

    public var int8PolicyDescription: String {
        "linear weights inside the double and single blocks (attention q/k/v/out and the text-stream projections, MLPs, proj_mlp, proj_out); x_embedder, context_embedder, the time/guidance/text embedders, every adaLN modulation (norm1, norm1_context, norm.linear, norm_out), proj_out, the qk RMSNorm weights, biases and tensors under 1024 values stay float"
    }

    public func blockPolicy(_ configuration: ModelConfiguration) -> BlockPolicy {
        BlockPolicy(quantized: "linear weights inside the double and single blocks (attention q/k/v/out and the text-stream projections, the MLPs, proj_mlp, the single blocks' proj_out)", keep: [
            BlockKeepRule("x_embedder.*", "input layer"),
            BlockKeepRule("context_embedder.*", "input layer"),
            BlockKeepRule("time_text_embed.*", "timestep, guidance and pooled-text embedding"),
            BlockKeepRule("transformer_blocks.*.norm1.*", "adaLN modulation", blockModulation: true),
            BlockKeepRule("transformer_blocks.*.norm1_context.*", "adaLN modulation", blockModulation: true),
            BlockKeepRule("single_transformer_blocks.*.norm.*", "adaLN modulation", blockModulation: true),
            BlockKeepRule("norm_out.*", "adaLN modulation"),
            BlockKeepRule("proj_out.*", "output layer"),
        ])
    }

    // MARK: exports

    public func exportNamings(_ configuration: ModelConfiguration) -> [ExportNaming] {
        guard let c = configuration.as(FluxConfiguration.self) else { return [] }
        var diffusers = ExportNaming("diffusers", "diffusers FluxTransformer2DModel names (the canonical names)") { name, _ in [ExportedTensor(name)] }
        var original = ExportNaming("original", "Black Forest Labs' names (flux/model.py Flux): fused qkv and linear1, final modulation as [shift, scale]") { name, _ in
            [FluxNaming.toOriginal(name)]
        }
        if c.patchSize != 1 {
            original.refusal = "BFL's Flux has no patch size: this model's patch size is \(c.patchSize)"
        }
        if c.mlpRatio != 4 || c.theta != 10000 {
            diffusers.refusal = "diffusers' FluxTransformer2DModel fixes mlp_ratio 4 and theta 10000; this model has \(c.mlpRatio) and \(c.theta)"
        }
        return [diffusers, original]
    }

    /// BFL's names at the root (fused qkv and linear1, [shift, scale]): what ComfyUI-GGUF's converter writes.
    public func ggufNaming(_ configuration: ModelConfiguration) -> ExportNaming? {
        exportNamings(configuration).first { $0.name == "original" }
    }

    public func diffusersConfig(_ configuration: ModelConfiguration) -> JSONValue? {
        guard let c = configuration.as(FluxConfiguration.self), c.mlpRatio == 4, c.theta == 10000 else { return nil }
        return .object([
            ("_class_name", .string("FluxTransformer2DModel")), ("_diffusers_version", .string(diffusersVersion)),
            ("attention_head_dim", .int(c.headDim)), ("axes_dims_rope", .array(c.axesDimsRope.map { .int($0) })),
            ("guidance_embeds", .bool(c.guidanceEmbeds)), ("in_channels", .int(c.inChannels)),
            ("joint_attention_dim", .int(c.jointAttentionDim)), ("num_attention_heads", .int(c.numHeads)),
            ("num_layers", .int(c.numLayers)), ("num_single_layers", .int(c.numSingleLayers)),
            ("out_channels", c.outChannels.map { .int($0) } ?? .null), ("patch_size", .int(c.patchSize)),
            ("pooled_projection_dim", .int(c.pooledProjectionDim)),
        ])
    }

    // MARK: forward and verification

    public func passes(_ configuration: ModelConfiguration) -> [ForwardPass] {
        let guided = configuration.as(FluxConfiguration.self)?.guidanceEmbeds ?? false
        return [ForwardPass("output", inputs: [
            PassInput("hidden_states"), PassInput("encoder_hidden_states"), PassInput("pooled_projections"), PassInput("timestep"),
            PassInput("img_ids"), PassInput("txt_ids"), PassInput("guidance", optional: !guided),
        ])]
    }

    public func forward(_ pass: String, _ configuration: ModelConfiguration, weights: any WeightStore, inputs: ModelInputs,
                        trace: LayerTrace?) throws -> Tensor {
        let c = try Self.flux(configuration)
        guard let x = inputs["hidden_states"], let y = inputs["encoder_hidden_states"], let pooled = inputs["pooled_projections"],
              let t = inputs["timestep"], let img = inputs["img_ids"], let txt = inputs["txt_ids"] else {
            throw ModelError.inconsistent("FLUX needs inputs hidden_states, encoder_hidden_states, pooled_projections, timestep, img_ids and txt_ids")
        }
        let n = x.shape.first ?? 1
        // A single timestep (or guidance) applies to the whole batch; batched ids ([N, S, 3]) use the first, as diffusers does.
        func perItem(_ v: Tensor) -> [Float] { v.count == 1 ? [Float](repeating: v.data[0], count: n) : v.data }
        func ids(_ v: Tensor) -> [Float] { v.shape.count == 3 ? Array(v.data.prefix(v.count / max(v.shape[0], 1))) : v.data }
        return try FluxModel(config: c, weights: weights).forward(
            hiddenStates: x, encoderHiddenStates: y, pooledProjections: pooled, timestep: perItem(t), imgIds: ids(img), txtIds: ids(txt),
            guidance: inputs["guidance"].map(perItem), trace: trace)
    }

    /// Two seeded packed latents of a 128×96-pixel image (8×6 tokens: rows and columns differ), seeded
    /// text features (8 tokens) and pooled projections, img_ids as FluxPipeline builds them (0, row,
    /// col), txt_ids zeros, timesteps across the range (1.0 and 0.25 for two items) and, for guidance-
    /// distilled models, guidance 3.5 and 1.0.
    public func verificationInputs(_ pass: String, _ configuration: ModelConfiguration, options: VerificationInputOptions) throws -> ModelInputs {
        let c = try Self.flux(configuration)
        let n = max(1, options.batch ?? 2)
        let (rows, cols): (Int, Int)
        if let size = options.imageSize {
            guard size > 0, size % 16 == 0 else { throw ModelError.inconsistent("FLUX image size \(size) must be a multiple of 16 (8× VAE, 2×2 packing)") }
            (rows, cols) = (size / 16, size / 16)
        } else {
            (rows, cols) = (8, 6)
        }
        let tokens = 8
        var rng = SeededRandom(seed: options.seed)
        let width = c.patchSize * c.patchSize * c.inChannels
        var inputs: ModelInputs = [
            "hidden_states": Tensor(shape: [n, rows * cols, width], data: rng.normals(n * rows * cols * width)),
            "encoder_hidden_states": Tensor(shape: [n, tokens, c.jointAttentionDim], data: rng.normals(n * tokens * c.jointAttentionDim)),
            "pooled_projections": Tensor(shape: [n, c.pooledProjectionDim], data: rng.normals(n * c.pooledProjectionDim)),
            "timestep": Tensor(shape: [n], data: (0..<n).map { n == 1 ? 0.5 : 1 - 0.75 * Float($0) / Float(n - 1) }),
            "img_ids": Tensor(shape: [rows * cols, 3], data: FluxPacking.imageIds(rows: rows, cols: cols)),
            "txt_ids": Tensor(zeros: [tokens, 3]),
        ]
        if c.guidanceEmbeds {
            inputs["guidance"] = Tensor(shape: [n], data: (0..<n).map { n == 1 ? 3.5 : 3.5 - 2.5 * Float($0) / Float(n - 1) })
        }
        return inputs
    }

    // MARK: sampling

    public func sampler(_ configuration: ModelConfiguration, weights: any WeightStore, options: SamplingOptions,
                        conditioning: SamplingConditioning) throws -> (any LatentSampler)? {
        let c = try Self.flux(configuration)
        guard conditioning.classes == nil else { throw ModelError.inconsistent("FLUX is text-conditioned: give --text FILE.h5, not classes") }
        guard let path = conditioning.featuresPath else {
            throw ModelError.needsOption("FLUX samples from precomputed text features: give --text FILE.h5 (/encoder_hidden_states from T5, /pooled_projections from CLIP)")
        }
        let text = try FluxText.read(path, configuration: c)
        return try FluxSampler(model: FluxModel(config: c, weights: weights), text: text, options: options,
                               imageSize: conditioning.imageSize ?? 1024)
    }

    public func latentChannels(_ configuration: ModelConfiguration) -> Int {
        configuration.as(FluxConfiguration.self)?.latentChannels ?? 0
    }
}
