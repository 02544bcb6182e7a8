// The Stable Diffusion VAE (AutoencoderKL, kl-f8) as a model family: detection from current and
// legacy diffusers names and original LDM names (bare or inside a full SD checkpoint), diffusers
// names as canonical names, encode and decode passes, the int8 policy, exports and decoding of
// sampled latents.
import DiTKitCore
import DiTKitNumerics

extension VAEConfiguration: FamilyConfiguration {}

public struct SDVAEFamily: ModelFamily {
    public init() {}

    public var name: String { "vae" }
    public var title: String { "SD VAE (AutoencoderKL)" }
    public var role: ModelRole { .autoencoder }
    public var aliases: [String] { Array(Self.aliasVariants.keys).sorted() }
    /// `--model` aliases and the named configuration each pins.
    static let aliasVariants = ["sd-vae": "sd-vae-kl-f8", "sd-vae-kl-f8": "sd-vae-kl-f8", "sdxl-vae": "sdxl-vae-kl-f8",
                                "sdxl-vae-kl-f8": "sdxl-vae-kl-f8", "sd3-vae": "sd3-vae", "flux-vae": "flux-vae"]
    public var canonicalNaming: String { "vae-diffusers" }
    public var anchors: [String] { [VAENaming.anchor] }
    public var ggufArchitecture: String { "sdvae" }

    static func vae(_ c: ModelConfiguration) throws -> VAEConfiguration {
        guard let v = c.as(VAEConfiguration.self) else { throw ModelError.inconsistent("\(c.variant) is not a VAE") }
        return v
    }

    public func configuration(json: JSONValue) throws -> ModelConfiguration {
        ModelConfiguration(self, try VAEConfiguration(json: json))
    }

    public func configuration(named: String, imageSize: Int?) -> ModelConfiguration? {
        VAEConfiguration.named.first { $0.name == named }.map { ModelConfiguration(self, $0.config) }
    }

    public func acceptsDiffusersClass(_ className: String) -> Bool { className == "AutoencoderKL" }

    public func matches(model: String, _ configuration: ModelConfiguration) -> Bool {
        let l = model.lowercased()
        if let v = Self.aliasVariants[l] { return configuration.variant == v }
        return configuration.variant.lowercased() == l
    }

    // MARK: detection

    public func plan(_ s: SourceTensors, hints: DetectionHints) throws -> ModelPlan? {
        guard s.contains(VAENaming.anchor) else { return nil }
        let ldm = s.contains(VAENaming.ldmAnchor)
        let naming = ldm ? "vae-ldm" : (s.contains(VAENaming.legacyAttentionAnchor) ? "vae-diffusers-legacy" : "vae-diffusers")
        let levels = ldm ? s.blockCount(prefix: "encoder.down.") : s.blockCount(prefix: "encoder.down_blocks.")
        guard levels > 0 else { throw ModelError.notRecognised("VAE without encoder levels") }
        var b = PlanBuilder(s)
        try b.renameRemaining(VAENaming.toCanonical, levels: levels)
        func shape(_ name: String) throws -> [Int] {
            guard let v = b.plannedShape(name) else { throw ModelError.notRecognised("missing VAE tensor '\(name)' (after renaming), needed to read the configuration") }
            return v
        }
        var c = VAEConfiguration()
        c.blockOutChannels = try (0..<levels).map { try shape("encoder.down_blocks.\($0).resnets.0.conv2.weight")[0] }
        c.layersPerBlock = SourceTensors.blockCount(b.plannedNames, prefix: "encoder.down_blocks.0.resnets.")
        c.inChannels = try shape("encoder.conv_in.weight")[1]
        c.latentChannels = try shape("decoder.conv_in.weight")[1]
        c.outChannels = try shape("decoder.conv_out.weight")[0]
        c.midAttention = b.has("encoder.mid_block.attentions.0.to_q.weight")
        c.useQuantConv = b.has("quant_conv.weight")
        c.usePostQuantConv = b.has("post_quant_conv.weight")
        if let size = hints.diffusersConfig?["sample_size"]?.intValue { c.sampleSize = size }
        // The scaling factor is not in the weights: diffusers' config.json states it (SDXL: 0.13025).
        if let scale = hints.diffusersConfig?["scaling_factor"]?.doubleValue { c.scalingFactor = scale }
        if let shift = hints.diffusersConfig?["shift_factor"]?.doubleValue { c.shiftFactor = shift }
        if hints.diffusersConfig?["scaling_factor"] == nil && hints.scalingFactor == nil {
            if let s = hints.latentScaling {
                // The VAE of a single file whose denoiser implies its scaling (SD3: 1.5305, shift 0.0609;
                // FLUX.1: 0.3611, 0.1159).
                c.scalingFactor = s.scalingFactor
                c.shiftFactor = s.shiftFactor
            } else if let v = Self.aliasVariants[hints.model?.lowercased() ?? ""], let named = VAEConfiguration.named.first(where: { $0.name == v })?.config {
                // --model sd3-vae, flux-vae (or sdxl-vae) states the scaling a bare file cannot.
                c.scalingFactor = named.scalingFactor
                c.shiftFactor = named.shiftFactor
            } else if c.latentChannels == 16 {
                // BFL's ae.safetensors (float32, LDM names at the file's root, no quant convolutions) is
                // FLUX.1's VAE; any other 16-channel VAE (SD3's has the same shapes) must say which it is.
                let bflLayout = ldm && s.prefix.isEmpty && !c.useQuantConv && !c.usePostQuantConv && s.order.allSatisfy { s[$0]?.dtype == .f32 }
                guard bflLayout else {
                    throw ModelError.needsOption("a 16-channel VAE does not record its latent scale and shift: keep its diffusers config.json beside it, or give --model flux-vae (FLUX.1: 0.3611, 0.1159), --model sd3-vae (SD3: 1.5305, 0.0609) or --scaling-factor and --shift-factor")
                }
                (c.scalingFactor, c.shiftFactor) = (VAEConfiguration.fluxVAE.scalingFactor, VAEConfiguration.fluxVAE.shiftFactor)
            }
        }
        if let scale = hints.scalingFactor { c.scalingFactor = scale }
        if let shift = hints.shiftFactor { c.shiftFactor = shift }
        try c.validate()
        return try b.finish(ModelConfiguration(self, c), sourceNaming: naming)
    }

    // MARK: quantization policy

    public func quantizesByDefault(_ name: String, shape: [Int], _ configuration: ModelConfiguration) -> Bool {
        guard name.hasSuffix(".weight"), shape.count == 2 || shape.count == 4 else { return false }
        let excluded = ["encoder.conv_in.weight", "encoder.conv_out.weight", "decoder.conv_in.weight", "decoder.conv_out.weight",
                        "quant_conv.weight", "post_quant_conv.weight"]
        return !(excluded.contains(name) || name.contains("norm"))
    }

    public var int8PolicyDescription: String {
        "3x3/1x1 conv and attention weights inside the network; conv_in, conv_out, quant_conv, post_quant_conv, norms and biases stay float"
    }

    public func blockPolicy(_ configuration: ModelConfiguration) -> BlockPolicy {
        // Every convolution is 4-D and stays (ComfyUI-GGUF quantizes 2-D weights only, and advises
        // against quantizing convolution-heavy models); what is left are the mid-block attentions.
        BlockPolicy(quantized: "the 2-D attention projections of the mid blocks (to_q, to_k, to_v, to_out.0); every convolution is 4-D and stays", keep: [])
    }

    // MARK: exports

    public func exportNamings(_ configuration: ModelConfiguration) -> [ExportNaming] {
        let levels = (try? Self.vae(configuration).levels) ?? 0
        return [
            ExportNaming("diffusers", "current diffusers AutoencoderKL names (the canonical names)") { name, _ in [ExportedTensor(name)] },
            ExportNaming("ldm", "original LDM/CompVis names, attention projections as 1x1 convolutions") { name, shape in
                let mapped = VAENaming.toLDM.remap(name, levels: levels).name
                // LDM stores attention projections as 1x1 convolutions.
                if mapped.contains(".attn_1."), mapped.hasSuffix(".weight"), shape.count == 2 { return [ExportedTensor(mapped, shape: shape + [1, 1])] }
                return [ExportedTensor(mapped)]
            },
        ]
    }

    public func diffusersConfig(_ configuration: ModelConfiguration) -> JSONValue? {
        guard let v = configuration.as(VAEConfiguration.self) else { return nil }
        return .object([
            ("_class_name", .string("AutoencoderKL")), ("_diffusers_version", .string(diffusersVersion)), ("act_fn", .string("silu")),
            ("block_out_channels", .array(v.blockOutChannels.map { .int($0) })),
            ("down_block_types", .array(Array(repeating: .string("DownEncoderBlock2D"), count: v.levels))),
            ("force_upcast", .bool(true)), ("in_channels", .int(v.inChannels)), ("latent_channels", .int(v.latentChannels)),
            ("latents_mean", .null), ("latents_std", .null), ("layers_per_block", .int(v.layersPerBlock)),
            ("mid_block_add_attention", .bool(v.midAttention)), ("norm_num_groups", .int(v.normNumGroups)),
            ("out_channels", .int(v.outChannels)), ("sample_size", .int(v.sampleSize)), ("scaling_factor", .double(v.scalingFactor)),
            ("shift_factor", v.shiftFactor.map { .double($0) } ?? .null), ("up_block_types", .array(Array(repeating: .string("UpDecoderBlock2D"), count: v.levels))),
            ("use_post_quant_conv", .bool(v.usePostQuantConv)), ("use_quant_conv", .bool(v.useQuantConv)),
        ])
    }

    // MARK: forward and verification

    public func passes(_ configuration: ModelConfiguration) -> [ForwardPass] {
        [ForwardPass("decode", inputs: [PassInput("z")]), ForwardPass("encode", inputs: [PassInput("image")])]
    }

    public func forward(_ pass: String, _ configuration: ModelConfiguration, weights: any WeightStore, inputs: ModelInputs,
                        trace: LayerTrace?) throws -> Tensor {
        let model = VAEModel(config: try Self.vae(configuration), weights: weights)
        switch pass {
        case "decode":
            guard let z = inputs["z"], z.shape.count == 4 else { throw ModelError.inconsistent("decode needs z as [N, C, h, w]") }
            return try model.decode(z, trace: trace)
        case "encode":
            guard let x = inputs["image"], x.shape.count == 4 else { throw ModelError.inconsistent("encode needs image as [N, C, H, W]") }
            return try model.encode(x, trace: trace)
        default:
            throw ModelError.inconsistent("a VAE has no pass '\(pass)'")
        }
    }

    /// Two seeded latents to decode and two seeded images in [-1, 1] to encode (one generator:
    /// the latents' normals first, then the images' uniforms), at 256 px for the SD VAE and 64 px otherwise.
    public func verificationInputs(_ pass: String, _ configuration: ModelConfiguration, options: VerificationInputOptions) throws -> ModelInputs {
        let c = try Self.vae(configuration)
        let size = options.imageSize ?? (c.variant == "vae-custom" ? 64 : 256)
        guard size > 0, size % c.downsampleFactor == 0 else { throw ModelError.inconsistent("image size \(size) is not a multiple of \(c.downsampleFactor)") }
        var rng = SeededRandom(seed: options.seed)
        let n = max(1, options.batch ?? 2), s = size / c.downsampleFactor
        let z = Tensor(shape: [n, c.latentChannels, s, s], data: rng.normals(n * c.latentChannels * s * s))
        if pass == "decode" { return ["z": z] }
        return ["image": Tensor(shape: [n, c.inChannels, size, size], data: rng.uniforms(n * c.inChannels * size * size, -1, 1))]
    }

    // MARK: sampling

    /// `vae.decode(latents / scaling_factor + shift_factor)`: images `[N, 3, 8h, 8w]` in about [-1, 1].
    public func decodeLatents(_ latents: Tensor, _ configuration: ModelConfiguration, weights: any WeightStore,
                              progress: ProgressReporter?) throws -> Tensor? {
        let c = try Self.vae(configuration)
        let s = Float(c.scalingFactor), shift = Float(c.shiftFactor ?? 0)
        progress?.begin("decoding", total: latents.shape.first ?? 1, unit: .items)
        defer { progress?.finish() }
        let model = VAEModel(config: c, weights: weights)
        // One image at a time: the progress moves and peak memory stays at one image's activations.
        let n = latents.shape[0], per = latents.count / max(n, 1)
        var out: [Float] = []
        var shape: [Int] = []
        for k in 0..<n {
            let z = Tensor(shape: [1] + Array(latents.shape.dropFirst()), data: latents.data[(k * per)..<((k + 1) * per)].map { $0 / s + shift })
            let image = try model.decode(z)
            shape = image.shape
            out += image.data
            progress?.advance(1)
        }
        shape[0] = n
        return Tensor(shape: shape, data: out)
    }

    public func latentChannels(_ configuration: ModelConfiguration) -> Int {
        configuration.as(VAEConfiguration.self)?.latentChannels ?? 0
    }
}
