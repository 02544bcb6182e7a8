// PixArt-α and PixArt-Σ hyperparameters, as diffusers' `PixArtTransformer2DModel` config expresses
// them, and the tensors they imply (diffusers names: the canonical names of a PixArt bundle).
import DiTKitCore

/// Everything a PixArt forward pass needs. Sizes are in latent pixels (`sampleSize` = image size / 8).
public struct PixArtConfiguration: Sendable, Equatable {
    /// diffusers `sample_size`: the latent width the model was trained at (128 for 1024 px).
    public var sampleSize: Int
    public var patchSize = 2
    public var inChannels = 4
    /// 8 with learned sigma (epsilon and variance), else `inChannels`.
    public var outChannels = 8
    public var numLayers = 28
    public var numHeads = 16
    public var headDim = 72
    /// Width of the caption features after projection, seen by cross-attention (diffusers `cross_attention_dim`).
    public var crossAttentionDim = 1152
    /// Width of the caption features going in (T5-XXL: 4096; diffusers `caption_channels`).
    public var captionChannels = 4096
    /// Position-embedding interpolation (`interpolation_scale`; the original code's `lewei_scale`).
    public var interpolationScale: Double
    /// The resolution and aspect-ratio micro-conditions of the 1024-MS models (`use_additional_conditions`).
    public var useAdditionalConditions: Bool
    /// Tokens of the null caption `caption_projection.y_embedding` the original releases carry
    /// (120 for PixArt-α, 300 for PixArt-Σ); nil when the weights have none (diffusers folders).
    public var nullCaptionTokens: Int?
    public var normEps = 1e-6
    /// Diffusion steps the model was trained with (diffusers `num_embeds_ada_norm`).
    public var numTrainTimesteps = 1000

    public init(sampleSize: Int, interpolationScale: Double? = nil, useAdditionalConditions: Bool? = nil) {
        self.sampleSize = sampleSize
        // diffusers' defaults: interpolation max(sample_size // 64, 1); micro-conditions iff sample_size == 128.
        self.interpolationScale = interpolationScale ?? Double(max(sampleSize / 64, 1))
        self.useAdditionalConditions = useAdditionalConditions ?? (sampleSize == 128)
    }

    public var innerDim: Int { numHeads * headDim }
    public var mlpHidden: Int { 4 * innerDim }
    /// Width of each micro-condition embedding (`embedding_dim // 3`).
    public var sizeEmbeddingDim: Int { innerDim / 3 }
    public var baseSize: Int { sampleSize / patchSize }
    public var imageSize: Int { sampleSize * 8 }
    public var learnSigma: Bool { outChannels == 2 * inChannels }

    /// The published configurations (diffusers `config.json` of the PixArt-alpha / PixArt-Sigma releases).
    public static let published: [(name: String, sampleSize: Int, interpolation: Double, micro: Bool, tokens: Int)] = [
        ("PixArt-XL/2-256", 32, 1, false, 120),
        ("PixArt-XL/2-512", 64, 1, false, 120),
        ("PixArt-XL/2-1024-MS", 128, 2, true, 120),
        ("PixArt-Sigma-XL/2-512", 64, 1, false, 300),
        ("PixArt-Sigma-XL/2-1024", 128, 2, false, 300),
        ("PixArt-Sigma-XL/2-2K", 256, 4, false, 300),
    ]

    /// A published configuration by name: `PixArt-XL/2-1024-MS` as the original releases ship it
    /// (with its null caption), `PixArt-XL/2-1024-MS (diffusers)` as diffusers folders do (without).
    public static func named(_ name: String) -> PixArtConfiguration? {
        let suffix = " (diffusers)"
        let diffusers = name.hasSuffix(suffix)
        let base = diffusers ? String(name.dropLast(suffix.count)) : name
        guard let p = published.first(where: { $0.name.lowercased() == base.lowercased() }) else { return nil }
        var c = PixArtConfiguration(sampleSize: p.sampleSize, interpolationScale: p.interpolation, useAdditionalConditions: p.micro)
        c.nullCaptionTokens = diffusers ? nil : p.tokens
        return c
    }

    /// Whether the XL/2 body (28 layers, 16 × 72, T5 captions, learned sigma) is this one.
    var isXL2: Bool {
        patchSize == 2 && inChannels == 4 && outChannels == 8 && numLayers == 28 && numHeads == 16 && headDim == 72
            && crossAttentionDim == 1152 && captionChannels == 4096 && normEps == 1e-6 && numTrainTimesteps == 1000
    }

    /// The published name when the body and the size match one (PixArt-α and -Σ at 512 share a body:
    /// the null caption's length tells them apart when the weights carry it), else `PixArt-custom`.
    public var variant: String {
        guard isXL2 else { return "PixArt-custom" }
        let hits = PixArtConfiguration.published.filter {
            $0.sampleSize == sampleSize && $0.interpolation == interpolationScale && $0.micro == useAdditionalConditions
                && (nullCaptionTokens == nil || nullCaptionTokens == $0.tokens)
        }
        return hits.first?.name ?? "PixArt-custom"
    }

    public func validate() throws {
        guard sampleSize > 0, patchSize > 0, sampleSize % patchSize == 0 else {
            throw ModelError.badConfiguration("sample size \(sampleSize) is not a multiple of patch size \(patchSize)")
        }
        guard numHeads > 0, headDim > 0, numLayers > 0, inChannels > 0, outChannels > 0, captionChannels > 0, crossAttentionDim > 0 else {
            throw ModelError.badConfiguration("heads, head width, layers and channel counts must be positive")
        }
        guard innerDim % 4 == 0 else { throw ModelError.badConfiguration("width \(innerDim) must be a multiple of 4 for the 2-D position embedding") }
        if useAdditionalConditions, innerDim % 3 != 0 {
            throw ModelError.badConfiguration("width \(innerDim) must be a multiple of 3 for the resolution and aspect-ratio embeddings")
        }
        guard interpolationScale > 0, interpolationScale.isFinite else { throw ModelError.badConfiguration("interpolation scale must be positive") }
    }

    /// Every tensor in `PixArtTransformer2DModel.state_dict()` order, then DiTKit's null caption.
    public func tensorShapes() -> [(name: String, shape: [Int])] {
        let d = innerDim, p = patchSize
        var t: [(String, [Int])] = [
            ("scale_shift_table", [2, d]),
            ("pos_embed.proj.weight", [d, inChannels, p, p]), ("pos_embed.proj.bias", [d]),
        ]
        for i in 0..<numLayers {
            let b = "transformer_blocks.\(i)."
            t.append((b + "scale_shift_table", [6, d]))
            for (attn, kvIn) in [("attn1", d), ("attn2", crossAttentionDim)] {
                t += [(b + attn + ".to_q.weight", [d, d]), (b + attn + ".to_q.bias", [d]),
                      (b + attn + ".to_k.weight", [d, kvIn]), (b + attn + ".to_k.bias", [d]),
                      (b + attn + ".to_v.weight", [d, kvIn]), (b + attn + ".to_v.bias", [d]),
                      (b + attn + ".to_out.0.weight", [d, d]), (b + attn + ".to_out.0.bias", [d])]
            }
            t += [(b + "ff.net.0.proj.weight", [mlpHidden, d]), (b + "ff.net.0.proj.bias", [mlpHidden]),
                  (b + "ff.net.2.weight", [d, mlpHidden]), (b + "ff.net.2.bias", [d])]
        }
        t += [("proj_out.weight", [p * p * outChannels, d]), ("proj_out.bias", [p * p * outChannels]),
              ("adaln_single.emb.timestep_embedder.linear_1.weight", [d, 256]), ("adaln_single.emb.timestep_embedder.linear_1.bias", [d]),
              ("adaln_single.emb.timestep_embedder.linear_2.weight", [d, d]), ("adaln_single.emb.timestep_embedder.linear_2.bias", [d])]
        if useAdditionalConditions {
            let s = sizeEmbeddingDim
            for e in ["resolution_embedder", "aspect_ratio_embedder"] {
                t += [("adaln_single.emb.\(e).linear_1.weight", [s, 256]), ("adaln_single.emb.\(e).linear_1.bias", [s]),
                      ("adaln_single.emb.\(e).linear_2.weight", [s, s]), ("adaln_single.emb.\(e).linear_2.bias", [s])]
            }
        }
        t += [("adaln_single.linear.weight", [6 * d, d]), ("adaln_single.linear.bias", [6 * d]),
              ("caption_projection.linear_1.weight", [crossAttentionDim, captionChannels]), ("caption_projection.linear_1.bias", [crossAttentionDim]),
              ("caption_projection.linear_2.weight", [crossAttentionDim, crossAttentionDim]), ("caption_projection.linear_2.bias", [crossAttentionDim])]
        if let l = nullCaptionTokens { t.append(("caption_projection.y_embedding", [l, captionChannels])) }
        return t
    }

    public var parameterCount: Int { tensorShapes().reduce(0) { $0 + $1.shape.reduce(1, *) } }

    /// The configuration as manifest JSON (FORMAT.md, "PixArt").
    public var json: JSONValue {
        var m: [(String, JSONValue)] = [
            ("sample_size", .int(sampleSize)), ("image_size", .int(imageSize)), ("patch_size", .int(patchSize)),
            ("in_channels", .int(inChannels)), ("out_channels", .int(outChannels)), ("num_layers", .int(numLayers)),
            ("num_attention_heads", .int(numHeads)), ("attention_head_dim", .int(headDim)),
            ("cross_attention_dim", .int(crossAttentionDim)), ("caption_channels", .int(captionChannels)),
            ("interpolation_scale", .double(interpolationScale)), ("use_additional_conditions", .bool(useAdditionalConditions)),
            ("norm_eps", .double(normEps)), ("num_embeds_ada_norm", .int(numTrainTimesteps)),
            ("activation_fn", .string("gelu-approximate")), ("norm_type", .string("ada_norm_single")),
        ]
        m.append(("null_caption_tokens", nullCaptionTokens.map { .int($0) } ?? .null))
        return .object(m)
    }

    /// Reads a configuration from manifest JSON (or a diffusers `config.json`, whose member names it shares).
    public init(json: JSONValue) throws {
        func int(_ k: String) throws -> Int {
            guard let v = json[k]?.intValue else { throw ModelError.badConfiguration("PixArt configuration lacks integer '\(k)'") }
            return v
        }
        let sample = try int("sample_size")
        self.init(sampleSize: sample, interpolationScale: json["interpolation_scale"]?.doubleValue,
                  useAdditionalConditions: json["use_additional_conditions"]?.boolValue)
        if let v = json["patch_size"]?.intValue { patchSize = v }
        if let v = json["in_channels"]?.intValue { inChannels = v }
        if let v = json["out_channels"]?.intValue { outChannels = v } else { outChannels = inChannels }
        if let v = json["num_layers"]?.intValue { numLayers = v }
        if let v = json["num_attention_heads"]?.intValue { numHeads = v }
        if let v = json["attention_head_dim"]?.intValue { headDim = v }
        crossAttentionDim = json["cross_attention_dim"]?.intValue ?? innerDim
        if let v = json["caption_channels"]?.intValue { captionChannels = v }
        if let v = json["norm_eps"]?.doubleValue { normEps = v }
        if let v = json["num_embeds_ada_norm"]?.intValue { numTrainTimesteps = v }
        nullCaptionTokens = json["null_caption_tokens"]?.intValue
        try validate()
    }
}
