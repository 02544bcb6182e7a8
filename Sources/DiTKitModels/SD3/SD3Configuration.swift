// SD3 / SD3.5 (MMDiT, MMDiT-X) hyperparameters, as diffusers' `SD3Transformer2DModel` config
// expresses them, and the tensors they imply (diffusers names: the canonical names of an SD3 bundle).
import DiTKitCore

/// The query/key normalisation of the attention layers (diffusers `qk_norm`; Stability's `qk_norm`
/// "rms" / "ln"). The kinds diffusers' joint attention accepts for SD3.
public enum SD3QKNorm: String, Sendable, Equatable, CaseIterable {
    /// `RMSNorm(head_dim, eps 1e-6)` with a weight (SD3.5).
    case rmsNorm = "rms_norm"
    /// `nn.LayerNorm(head_dim, eps 1e-6)` with weight and bias.
    case layerNorm = "layer_norm"
    /// A LayerNorm without parameters computed in float32 (weights cannot show it: config.json must say it).
    case fp32LayerNorm = "fp32_layer_norm"

    /// A config.json / manifest `qk_norm` value: null or one of the kinds. Throws `ModelError.badConfiguration`.
    public static func parse(_ v: JSONValue) throws -> SD3QKNorm? {
        guard v != .null else { return nil }
        guard let s = v.stringValue, let q = SD3QKNorm(rawValue: s) else {
            throw ModelError.badConfiguration("qk_norm \(JSONWriter.string(v, pretty: false)) is not one SD3's joint attention takes (\(allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return q
    }

    /// The parameters each norm module holds.
    var parameters: [String] {
        switch self {
        case .rmsNorm: return ["weight"]
        case .layerNorm: return ["weight", "bias"]
        case .fp32LayerNorm: return []
        }
    }
}

/// Everything an SD3 forward pass needs. Sizes are in latent pixels (`sampleSize` = image size / 8).
public struct SD3Configuration: Sendable, Equatable {
    /// diffusers `sample_size`: the latent width the model was trained at (128 for 1024 px).
    public var sampleSize = 128
    public var patchSize = 2
    public var inChannels = 16
    public var outChannels = 16
    public var numLayers = 24
    public var numHeads = 24
    public var headDim = 64
    /// Width of the text features going in (T5-XXL / CLIP-G padded: 4096).
    public var jointAttentionDim = 4096
    /// Width of the projected text features (`context_embedder` output); diffusers' blocks need it to equal the width.
    public var captionProjectionDim = 1536
    /// Width of the pooled CLIP-L + CLIP-G projection (2048).
    public var pooledProjectionDim = 2048
    /// Side of the stored square position-embedding table the input's grid is cropped from (192 or 384);
    /// nil: no stored table, the embedding is computed at the input's grid (diffusers' PatchEmbed without a max size).
    public var posEmbedMaxSize: Int? = 192
    /// Blocks with a second self-attention on the image tokens (MMDiT-X, SD3.5-medium: 0…12).
    public var dualAttentionLayers: [Int] = []
    public var qkNorm: SD3QKNorm?

    public init() {}

    /// Equal when every hyperparameter a forward pass uses is equal: the sample size (the trained
    /// latent size, which Stability's files do not record) only counts when the position embedding is
    /// computed from it (no stored table).
    public static func == (a: SD3Configuration, b: SD3Configuration) -> Bool {
        (a.posEmbedMaxSize != nil || a.sampleSize == b.sampleSize) && a.patchSize == b.patchSize && a.inChannels == b.inChannels
            && a.outChannels == b.outChannels && a.numLayers == b.numLayers && a.numHeads == b.numHeads && a.headDim == b.headDim
            && a.jointAttentionDim == b.jointAttentionDim && a.captionProjectionDim == b.captionProjectionDim
            && a.pooledProjectionDim == b.pooledProjectionDim && a.posEmbedMaxSize == b.posEmbedMaxSize
            && a.dualAttentionLayers == b.dualAttentionLayers && a.qkNorm == b.qkNorm
    }

    public var innerDim: Int { numHeads * headDim }
    public var mlpHidden: Int { 4 * innerDim }
    public var imageSize: Int { sampleSize * 8 }

    /// The published configurations (diffusers `config.json` of the stabilityai releases).
    public static let published: [(name: String, config: SD3Configuration)] = {
        let medium = SD3Configuration()
        var large = SD3Configuration()
        large.numLayers = 38
        large.numHeads = 38
        large.captionProjectionDim = 2432
        large.qkNorm = .rmsNorm
        var medium35 = SD3Configuration()
        medium35.posEmbedMaxSize = 384
        medium35.dualAttentionLayers = Array(0...12)
        medium35.qkNorm = .rmsNorm
        return [("SD3-medium", medium), ("SD3.5-large", large), ("SD3.5-large-turbo", large), ("SD3.5-medium", medium35)]
    }()

    /// A published configuration by name (case-insensitive).
    public static func named(_ name: String) -> SD3Configuration? {
        published.first { $0.name.lowercased() == name.lowercased() }?.config
    }

    /// The first published name with these hyperparameters (SD3.5-large-turbo shares SD3.5-large's), else `SD3-custom`.
    public var variant: String { SD3Configuration.published.first { $0.config == self }?.name ?? "SD3-custom" }

    public func validate() throws {
        guard sampleSize > 0, patchSize > 0, inChannels > 0, outChannels > 0, numLayers > 0, numHeads > 0, headDim > 0,
              jointAttentionDim > 0, pooledProjectionDim > 0 else {
            throw ModelError.badConfiguration("sizes, channel counts, layers and heads must be positive")
        }
        guard captionProjectionDim == innerDim else {
            throw ModelError.badConfiguration("caption_projection_dim \(captionProjectionDim) must equal the width \(innerDim) (heads × head dim): the joint blocks take both streams at one width")
        }
        if let m = posEmbedMaxSize, m <= 0 { throw ModelError.badConfiguration("pos_embed_max_size must be positive") }
        guard innerDim % 4 == 0 else { throw ModelError.badConfiguration("width \(innerDim) must be a multiple of 4 for the 2-D position embedding") }
        guard dualAttentionLayers == Array(Set(dualAttentionLayers)).sorted(), dualAttentionLayers.allSatisfy({ $0 >= 0 && $0 < numLayers }) else {
            throw ModelError.badConfiguration("dual_attention_layers \(dualAttentionLayers) must be distinct layer indices below \(numLayers), ascending")
        }
    }

    /// Whether block `i` has the second attention (`attn2`).
    public func isDual(_ i: Int) -> Bool { dualAttentionLayers.contains(i) }
    /// Whether block `i` is the last one, whose context stream ends (`context_pre_only`).
    public func isLast(_ i: Int) -> Bool { i == numLayers - 1 }

    /// Every tensor in `SD3Transformer2DModel.state_dict()` order.
    public func tensorShapes() -> [(name: String, shape: [Int])] {
        let d = innerDim, p = patchSize, hd = headDim
        var t: [(String, [Int])] = []
        func linear(_ name: String, _ out: Int, _ inp: Int) { t += [(name + ".weight", [out, inp]), (name + ".bias", [out])] }
        func norms(_ prefix: String, _ names: [String]) {
            guard let q = qkNorm else { return }
            for n in names { for s in q.parameters { t.append((prefix + n + "." + s, [hd])) } }
        }
        if let m = posEmbedMaxSize { t.append(("pos_embed.pos_embed", [1, m * m, d])) }
        t += [("pos_embed.proj.weight", [d, inChannels, p, p]), ("pos_embed.proj.bias", [d])]
        linear("time_text_embed.timestep_embedder.linear_1", d, 256)
        linear("time_text_embed.timestep_embedder.linear_2", d, d)
        linear("time_text_embed.text_embedder.linear_1", d, pooledProjectionDim)
        linear("time_text_embed.text_embedder.linear_2", d, d)
        linear("context_embedder", captionProjectionDim, jointAttentionDim)
        for i in 0..<numLayers {
            let b = "transformer_blocks.\(i)."
            let last = isLast(i)
            linear(b + "norm1.linear", (isDual(i) ? 9 : 6) * d, d)
            linear(b + "norm1_context.linear", (last ? 2 : 6) * d, d)
            norms(b + "attn.", ["norm_q", "norm_k"])
            for n in ["to_q", "to_k", "to_v", "add_k_proj", "add_v_proj", "add_q_proj", "to_out.0"] { linear(b + "attn." + n, d, d) }
            if !last { linear(b + "attn.to_add_out", d, d) }
            norms(b + "attn.", ["norm_added_q", "norm_added_k"])
            if isDual(i) {
                norms(b + "attn2.", ["norm_q", "norm_k"])
                for n in ["to_q", "to_k", "to_v", "to_out.0"] { linear(b + "attn2." + n, d, d) }
            }
            linear(b + "ff.net.0.proj", mlpHidden, d)
            linear(b + "ff.net.2", d, mlpHidden)
            if !last {
                linear(b + "ff_context.net.0.proj", mlpHidden, d)
                linear(b + "ff_context.net.2", d, mlpHidden)
            }
        }
        linear("norm_out.linear", 2 * d, d)
        linear("proj_out", p * p * outChannels, d)
        return t
    }

    public var parameterCount: Int { tensorShapes().reduce(0) { $0 + $1.shape.reduce(1, *) } }

    /// The configuration as manifest JSON (FORMAT.md, "SD3"): diffusers' config member names.
    public var json: JSONValue {
        .object([
            ("sample_size", .int(sampleSize)), ("image_size", .int(imageSize)), ("patch_size", .int(patchSize)),
            ("in_channels", .int(inChannels)), ("out_channels", .int(outChannels)), ("num_layers", .int(numLayers)),
            ("num_attention_heads", .int(numHeads)), ("attention_head_dim", .int(headDim)),
            ("joint_attention_dim", .int(jointAttentionDim)), ("caption_projection_dim", .int(captionProjectionDim)),
            ("pooled_projection_dim", .int(pooledProjectionDim)), ("pos_embed_max_size", posEmbedMaxSize.map { .int($0) } ?? .null),
            ("dual_attention_layers", .array(dualAttentionLayers.map { .int($0) })),
            ("qk_norm", qkNorm.map { .string($0.rawValue) } ?? .null),
        ])
    }

    /// Reads a configuration from manifest JSON or a diffusers `config.json` (whose member names it
    /// shares; absent members take diffusers' defaults, as `SD3Transformer2DModel.__init__` does).
    public init(json: JSONValue) throws {
        self.init()
        // diffusers' own defaults for members a config.json may leave out.
        sampleSize = 128; numLayers = 18; numHeads = 18; captionProjectionDim = 1152; posEmbedMaxSize = 96
        if let v = json["sample_size"]?.intValue { sampleSize = v }
        if let v = json["patch_size"]?.intValue { patchSize = v }
        if let v = json["in_channels"]?.intValue { inChannels = v }
        if let v = json["num_layers"]?.intValue { numLayers = v }
        if let v = json["num_attention_heads"]?.intValue { numHeads = v }
        if let v = json["attention_head_dim"]?.intValue { headDim = v }
        if let v = json["joint_attention_dim"]?.intValue { jointAttentionDim = v }
        if let v = json["caption_projection_dim"]?.intValue { captionProjectionDim = v }
        if let v = json["pooled_projection_dim"]?.intValue { pooledProjectionDim = v }
        outChannels = json["out_channels"]?.intValue ?? inChannels
        if let v = json["pos_embed_max_size"] { posEmbedMaxSize = v == .null ? nil : v.intValue }
        if let v = json["dual_attention_layers"]?.arrayValue {
            dualAttentionLayers = try v.map {
                guard let i = $0.intValue else { throw ModelError.badConfiguration("dual_attention_layers must hold layer indices") }
                return i
            }
        }
        if let v = json["qk_norm"] { qkNorm = try SD3QKNorm.parse(v) }
        try validate()
    }
}
