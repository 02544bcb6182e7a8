// The Stable Diffusion autoencoder (AutoencoderKL, kl-f8) and the tensors it implies, under
// current diffusers names (the canonical names of a DiTKit VAE bundle).
import DiTKitCore

/// VAE hyperparameters.
public struct VAEConfiguration: Sendable, Equatable {
    public var inChannels = 3
    public var outChannels = 3
    public var latentChannels = 4
    public var blockOutChannels: [Int] = [128, 256, 512, 512]
    /// ResNet blocks per encoder level; the decoder has one more per level.
    public var layersPerBlock = 2
    public var normNumGroups = 32
    public var normEps = 1e-6
    public var scalingFactor = 0.18215
    /// Latent shift (SD3: 0.0609, FLUX.1: 0.1159): latents are `(z − shift) × scale` going into the
    /// denoiser and `z / scale + shift` coming out; nil (no shift) for the SD and SDXL VAEs.
    public var shiftFactor: Double?
    public var midAttention = true
    public var useQuantConv = true
    public var usePostQuantConv = true
    /// The image size the VAE was configured for (diffusers `sample_size`; informational).
    public var sampleSize = 256

    public init() {}

    /// The SD VAE (`stabilityai/sd-vae-ft-ema`, `-mse`, and the original kl-f8 files).
    public static let sdVAE = VAEConfiguration()

    /// The SDXL VAE (`stabilityai/sdxl-vae`; PixArt-Σ's): the SD network, latents scaled by 0.13025.
    public static let sdxlVAE: VAEConfiguration = {
        var c = VAEConfiguration()
        c.scalingFactor = 0.13025
        return c
    }()

    /// The SD3 / SD3.5 VAE (`stabilityai/stable-diffusion-3*` `vae/`; the `first_stage_model.` of
    /// Stability's single files): 16 latent channels, no quant convolutions, latents `(z − 0.0609) × 1.5305`.
    public static let sd3VAE: VAEConfiguration = {
        var c = VAEConfiguration()
        c.latentChannels = 16
        c.useQuantConv = false
        c.usePostQuantConv = false
        c.scalingFactor = 1.5305
        c.shiftFactor = 0.0609
        return c
    }()

    /// The FLUX.1 VAE (`black-forest-labs/FLUX.1-dev` `vae/`, BFL's `ae.safetensors`): 16 latent
    /// channels, no quant convolutions, latents `(z − 0.1159) × 0.3611`.
    public static let fluxVAE: VAEConfiguration = {
        var c = VAEConfiguration()
        c.latentChannels = 16
        c.useQuantConv = false
        c.usePostQuantConv = false
        c.scalingFactor = 0.3611
        c.shiftFactor = 0.1159
        return c
    }()

    /// The named configurations, by variant.
    public static let named: [(name: String, config: VAEConfiguration)] = [("sd-vae-kl-f8", sdVAE), ("sdxl-vae-kl-f8", sdxlVAE), ("sd3-vae", sd3VAE),
                                                                           ("flux-vae", fluxVAE)]

    public var variant: String { VAEConfiguration.named.first { $0.config == self }?.name ?? "vae-custom" }

    /// Equal when every hyperparameter a forward pass uses is equal (`sampleSize` is informational).
    public static func == (a: VAEConfiguration, b: VAEConfiguration) -> Bool {
        a.inChannels == b.inChannels && a.outChannels == b.outChannels && a.latentChannels == b.latentChannels
            && a.blockOutChannels == b.blockOutChannels && a.layersPerBlock == b.layersPerBlock && a.normNumGroups == b.normNumGroups
            && a.normEps == b.normEps && a.scalingFactor == b.scalingFactor && a.shiftFactor == b.shiftFactor && a.midAttention == b.midAttention
            && a.useQuantConv == b.useQuantConv && a.usePostQuantConv == b.usePostQuantConv
    }
    public var levels: Int { blockOutChannels.count }
    /// Spatial downsampling factor (2^(levels-1)).
    public var downsampleFactor: Int { 1 << (levels - 1) }

    public func validate() throws {
        guard !blockOutChannels.isEmpty, blockOutChannels.allSatisfy({ $0 > 0 && $0 % normNumGroups == 0 }) else {
            throw ModelError.badConfiguration("block channels \(blockOutChannels) must be positive multiples of \(normNumGroups) groups")
        }
        guard layersPerBlock > 0, latentChannels > 0, inChannels > 0, outChannels > 0 else {
            throw ModelError.badConfiguration("layers per block and channel counts must be positive")
        }
    }

    private func resnet(_ p: String, _ cin: Int, _ cout: Int) -> [(String, [Int])] {
        var t: [(String, [Int])] = [
            (p + "norm1.weight", [cin]), (p + "norm1.bias", [cin]),
            (p + "conv1.weight", [cout, cin, 3, 3]), (p + "conv1.bias", [cout]),
            (p + "norm2.weight", [cout]), (p + "norm2.bias", [cout]),
            (p + "conv2.weight", [cout, cout, 3, 3]), (p + "conv2.bias", [cout]),
        ]
        if cin != cout { t += [(p + "conv_shortcut.weight", [cout, cin, 1, 1]), (p + "conv_shortcut.bias", [cout])] }
        return t
    }

    private func mid(_ p: String, _ c: Int) -> [(String, [Int])] {
        var t: [(String, [Int])] = []
        if midAttention {
            let a = p + "attentions.0."
            t += [(a + "group_norm.weight", [c]), (a + "group_norm.bias", [c])]
            for n in ["to_q", "to_k", "to_v", "to_out.0"] { t += [(a + n + ".weight", [c, c]), (a + n + ".bias", [c])] }
        }
        t += resnet(p + "resnets.0.", c, c) + resnet(p + "resnets.1.", c, c)
        return t
    }

    /// Every tensor in AutoencoderKL `state_dict()` order, diffusers names, OIHW conv weights.
    public func tensorShapes() -> [(name: String, shape: [Int])] {
        let ch = blockOutChannels
        var t: [(String, [Int])] = [("encoder.conv_in.weight", [ch[0], inChannels, 3, 3]), ("encoder.conv_in.bias", [ch[0]])]
        var cin = ch[0]
        for (i, cout) in ch.enumerated() {
            for j in 0..<layersPerBlock {
                t += resnet("encoder.down_blocks.\(i).resnets.\(j).", j == 0 ? cin : cout, cout)
            }
            if i < ch.count - 1 {
                t += [("encoder.down_blocks.\(i).downsamplers.0.conv.weight", [cout, cout, 3, 3]), ("encoder.down_blocks.\(i).downsamplers.0.conv.bias", [cout])]
            }
            cin = cout
        }
        let top = ch[ch.count - 1]
        t += mid("encoder.mid_block.", top)
        t += [("encoder.conv_norm_out.weight", [top]), ("encoder.conv_norm_out.bias", [top]),
              ("encoder.conv_out.weight", [2 * latentChannels, top, 3, 3]), ("encoder.conv_out.bias", [2 * latentChannels])]

        t += [("decoder.conv_in.weight", [top, latentChannels, 3, 3]), ("decoder.conv_in.bias", [top])]
        let reversed = Array(ch.reversed())
        cin = reversed[0]
        for (k, cout) in reversed.enumerated() {
            for j in 0..<(layersPerBlock + 1) {
                t += resnet("decoder.up_blocks.\(k).resnets.\(j).", j == 0 ? cin : cout, cout)
            }
            if k < ch.count - 1 {
                t += [("decoder.up_blocks.\(k).upsamplers.0.conv.weight", [cout, cout, 3, 3]), ("decoder.up_blocks.\(k).upsamplers.0.conv.bias", [cout])]
            }
            cin = cout
        }
        t += mid("decoder.mid_block.", top)
        t += [("decoder.conv_norm_out.weight", [ch[0]]), ("decoder.conv_norm_out.bias", [ch[0]]),
              ("decoder.conv_out.weight", [outChannels, ch[0], 3, 3]), ("decoder.conv_out.bias", [outChannels])]
        if useQuantConv { t += [("quant_conv.weight", [2 * latentChannels, 2 * latentChannels, 1, 1]), ("quant_conv.bias", [2 * latentChannels])] }
        if usePostQuantConv { t += [("post_quant_conv.weight", [latentChannels, latentChannels, 1, 1]), ("post_quant_conv.bias", [latentChannels])] }
        return t
    }

    public var parameterCount: Int { tensorShapes().reduce(0) { $0 + $1.shape.reduce(1, *) } }

    public var json: JSONValue {
        .object([
            ("in_channels", .int(inChannels)), ("out_channels", .int(outChannels)), ("latent_channels", .int(latentChannels)),
            ("block_out_channels", .array(blockOutChannels.map { .int($0) })), ("layers_per_block", .int(layersPerBlock)),
            ("norm_num_groups", .int(normNumGroups)), ("norm_eps", .double(normEps)), ("scaling_factor", .double(scalingFactor)),
            ("mid_attention", .bool(midAttention)), ("use_quant_conv", .bool(useQuantConv)), ("use_post_quant_conv", .bool(usePostQuantConv)),
            ("sample_size", .int(sampleSize)),
        ] + (shiftFactor.map { [("shift_factor", JSONValue.double($0))] } ?? []))
    }

    public init(json: JSONValue) throws {
        self.init()
        if let v = json["in_channels"]?.intValue { inChannels = v }
        if let v = json["out_channels"]?.intValue { outChannels = v }
        if let v = json["latent_channels"]?.intValue { latentChannels = v }
        if let v = json["block_out_channels"]?.arrayValue { blockOutChannels = v.compactMap(\.intValue) }
        if let v = json["layers_per_block"]?.intValue { layersPerBlock = v }
        if let v = json["norm_num_groups"]?.intValue { normNumGroups = v }
        if let v = json["norm_eps"]?.doubleValue { normEps = v }
        if let v = json["scaling_factor"]?.doubleValue { scalingFactor = v }
        shiftFactor = json["shift_factor"]?.doubleValue
        if let v = json["mid_attention"]?.boolValue { midAttention = v }
        if let v = json["use_quant_conv"]?.boolValue { useQuantConv = v }
        if let v = json["use_post_quant_conv"]?.boolValue { usePostQuantConv = v }
        if let v = json["sample_size"]?.intValue { sampleSize = v }
        try validate()
    }
}
