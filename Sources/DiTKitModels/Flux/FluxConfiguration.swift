// FLUX.1 hyperparameters, as diffusers' `FluxTransformer2DModel` config expresses them, and the
// tensors they imply (diffusers names: the canonical names of a FLUX bundle).
import DiTKitCore

/// Everything a FLUX.1 forward pass needs. The transformer works on packed latents: tokens of
/// `inChannels` values (16 latent channels × a 2×2 patch for the releases).
public struct FluxConfiguration: Sendable, Equatable {
    /// diffusers `patch_size` (1 for every release: the 2×2 packing happens in the pipeline).
    public var patchSize = 1
    public var inChannels = 64
    /// diffusers `out_channels` (nil: `inChannels`).
    public var outChannels: Int?
    /// Double-stream blocks (`transformer_blocks`; BFL `double_blocks`).
    public var numLayers = 19
    /// Single-stream blocks (`single_transformer_blocks`; BFL `single_blocks`).
    public var numSingleLayers = 38
    public var numHeads = 24
    public var headDim = 128
    /// Width of the T5 text features (`joint_attention_dim`).
    public var jointAttentionDim = 4096
    /// Width of the pooled CLIP features (`pooled_projection_dim`).
    public var pooledProjectionDim = 768
    /// FLUX.1-dev's guidance embedding (`guidance_embeds`); schnell has none.
    public var guidanceEmbeds: Bool
    /// Rotary widths of the three position axes (`axes_dims_rope`), summing to `headDim`.
    public var axesDimsRope = [16, 56, 56]
    /// Rotary base (`FluxPosEmbed(theta=10000)`, BFL `theta`).
    public var theta = 10000
    /// MLP width ratio (fixed at 4 in diffusers' blocks; BFL `mlp_ratio`).
    public var mlpRatio = 4

    public init(guidanceEmbeds: Bool) {
        self.guidanceEmbeds = guidanceEmbeds
    }

    public var innerDim: Int { numHeads * headDim }
    public var mlpHidden: Int { innerDim * mlpRatio }
    public var outputChannels: Int { outChannels ?? inChannels }
    /// Latent channels of the VAE: a token packs a 2×2 patch of them.
    public var latentChannels: Int { inChannels / 4 }

    /// The published configurations (diffusers `config.json` of black-forest-labs/FLUX.1-dev and
    /// -schnell; FLUX.1-Krea-dev and Kontext-dev share dev's).
    public static let published: [(name: String, guidance: Bool)] = [("FLUX.1-dev", true), ("FLUX.1-schnell", false)]

    public static func named(_ name: String) -> FluxConfiguration? {
        published.first { $0.name.lowercased() == name.lowercased() }.map { FluxConfiguration(guidanceEmbeds: $0.guidance) }
    }

    /// The published name when every hyperparameter matches one, else `FLUX-custom`.
    public var variant: String {
        let body = FluxConfiguration(guidanceEmbeds: guidanceEmbeds)
        guard self == body else { return "FLUX-custom" }
        return guidanceEmbeds ? "FLUX.1-dev" : "FLUX.1-schnell"
    }

    public func validate() throws {
        guard patchSize > 0, inChannels > 0, outputChannels > 0, numLayers >= 0, numSingleLayers >= 0, numLayers + numSingleLayers > 0,
              numHeads > 0, headDim > 0, jointAttentionDim > 0, pooledProjectionDim > 0, mlpRatio > 0, theta > 0 else {
            throw ModelError.badConfiguration("FLUX sizes must be positive (and at least one block)")
        }
        guard axesDimsRope.count == 3, axesDimsRope.allSatisfy({ $0 > 0 && $0 % 2 == 0 }), axesDimsRope.reduce(0, +) == headDim else {
            throw ModelError.badConfiguration("rotary axes \(axesDimsRope) must be three even widths adding up to the head width \(headDim)")
        }
    }

    /// The rotary axes assumed for a head width when nothing states them: FLUX.1's (16, 56, 56) at
    /// 128, and at other even widths the same proportions rounded to even widths: the two spatial
    /// axes get the largest even width ≤ 7/16 of the head, the first axis the rest ((4, 6, 6) at 16).
    /// nil when that leaves an axis empty.
    public static func defaultAxes(headDim: Int) -> [Int]? {
        let spatial = (7 * headDim / 16) / 2 * 2
        guard headDim % 2 == 0, spatial >= 2, headDim - 2 * spatial >= 2 else { return nil }
        return [headDim - 2 * spatial, spatial, spatial]
    }

    /// Every tensor in `FluxTransformer2DModel.state_dict()` order.
    public func tensorShapes() -> [(name: String, shape: [Int])] {
        let d = innerDim, hd = headDim, m = mlpHidden
        func linear(_ p: String, _ out: Int, _ inp: Int) -> [(String, [Int])] { [(p + ".weight", [out, inp]), (p + ".bias", [out])] }
        func embedder(_ p: String, _ inp: Int) -> [(String, [Int])] { linear(p + ".linear_1", d, inp) + linear(p + ".linear_2", d, d) }
        var t = embedder("time_text_embed.timestep_embedder", 256)
        if guidanceEmbeds { t += embedder("time_text_embed.guidance_embedder", 256) }
        t += embedder("time_text_embed.text_embedder", pooledProjectionDim)
        t += linear("context_embedder", d, jointAttentionDim) + linear("x_embedder", d, patchSize * patchSize * inChannels)
        for i in 0..<numLayers {
            let b = "transformer_blocks.\(i)."
            t += linear(b + "norm1.linear", 6 * d, d) + linear(b + "norm1_context.linear", 6 * d, d)
            t += [(b + "attn.norm_q.weight", [hd]), (b + "attn.norm_k.weight", [hd])]
            t += linear(b + "attn.to_q", d, d) + linear(b + "attn.to_k", d, d) + linear(b + "attn.to_v", d, d) + linear(b + "attn.to_out.0", d, d)
            t += [(b + "attn.norm_added_q.weight", [hd]), (b + "attn.norm_added_k.weight", [hd])]
            t += linear(b + "attn.add_q_proj", d, d) + linear(b + "attn.add_k_proj", d, d) + linear(b + "attn.add_v_proj", d, d)
            t += linear(b + "attn.to_add_out", d, d)
            t += linear(b + "ff.net.0.proj", m, d) + linear(b + "ff.net.2", d, m)
            t += linear(b + "ff_context.net.0.proj", m, d) + linear(b + "ff_context.net.2", d, m)
        }
        for i in 0..<numSingleLayers {
            let b = "single_transformer_blocks.\(i)."
            t += linear(b + "norm.linear", 3 * d, d) + linear(b + "proj_mlp", m, d) + linear(b + "proj_out", d, d + m)
            t += [(b + "attn.norm_q.weight", [hd]), (b + "attn.norm_k.weight", [hd])]
            t += linear(b + "attn.to_q", d, d) + linear(b + "attn.to_k", d, d) + linear(b + "attn.to_v", d, d)
        }
        t += linear("norm_out.linear", 2 * d, d) + linear("proj_out", patchSize * patchSize * outputChannels, d)
        return t
    }

    public var parameterCount: Int { tensorShapes().reduce(0) { $0 + $1.shape.reduce(1, *) } }

    /// The configuration as manifest JSON (FORMAT.md, "FLUX.1"): diffusers' config members, plus
    /// `rope_theta` and `mlp_ratio`, which diffusers fixes.
    public var json: JSONValue {
        .object([
            ("patch_size", .int(patchSize)), ("in_channels", .int(inChannels)), ("out_channels", outChannels.map { .int($0) } ?? .null),
            ("num_layers", .int(numLayers)), ("num_single_layers", .int(numSingleLayers)),
            ("num_attention_heads", .int(numHeads)), ("attention_head_dim", .int(headDim)),
            ("joint_attention_dim", .int(jointAttentionDim)), ("pooled_projection_dim", .int(pooledProjectionDim)),
            ("guidance_embeds", .bool(guidanceEmbeds)), ("axes_dims_rope", .array(axesDimsRope.map { .int($0) })),
            ("rope_theta", .int(theta)), ("mlp_ratio", .int(mlpRatio)),
        ])
    }

    /// Reads a configuration from manifest JSON or a diffusers `config.json` (whose member names it
    /// shares; absent members take diffusers' defaults).
    public init(json: JSONValue) throws {
        self.init(guidanceEmbeds: json["guidance_embeds"]?.boolValue ?? false)
        if let v = json["patch_size"]?.intValue { patchSize = v }
        if let v = json["in_channels"]?.intValue { inChannels = v }
        outChannels = json["out_channels"]?.intValue
        if let v = json["num_layers"]?.intValue { numLayers = v }
        if let v = json["num_single_layers"]?.intValue { numSingleLayers = v }
        if let v = json["num_attention_heads"]?.intValue { numHeads = v }
        if let v = json["attention_head_dim"]?.intValue { headDim = v }
        if let v = json["joint_attention_dim"]?.intValue { jointAttentionDim = v }
        if let v = json["pooled_projection_dim"]?.intValue { pooledProjectionDim = v }
        if let v = json["axes_dims_rope"]?.arrayValue { axesDimsRope = v.compactMap(\.intValue) }
        if let v = json["rope_theta"]?.intValue { theta = v }
        if let v = json["mlp_ratio"]?.intValue { mlpRatio = v }
        try validate()
    }
}
