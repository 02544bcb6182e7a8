// Port of diffusers' PixArtTransformer2DModel.forward (models/transformers/pixart_transformer_2d.py,
// BasicTransformerBlock with norm_type "ada_norm_single", AdaLayerNormSingle,
// PixArtAlphaCombinedTimestepSizeEmbeddings, PixArtAlphaTextProjection, PatchEmbed), on the
// shared building blocks. Traced layer names are diffusers module paths.
//
// Semantics: patch embedding plus the 2-D sin-cos position embedding at the input's own grid
// (base size sample_size/patch, interpolation scale); adaLN-single: timestep features [cos, sin]
// with 256 channels, TimestepEmbedding, plus the resolution and aspect-ratio embeddings when the
// model has micro-conditions, then one SiLU-Linear giving 6·D shared by every block; captions
// through Linear-GELU(tanh)-Linear; per block: table + t, LayerNorm (eps, no affine) modulated,
// self-attention gated; cross-attention on the unnormalised hidden states with the caption mask
// as an additive bias (1 - mask)·-10000; LayerNorm modulated, GELU(tanh) MLP gated; final
// LayerNorm (eps 1e-6) modulated by table + embedded timestep (shift first), Linear, unpatchify.
import DiTKitCore
import DiTKitNumerics

/// A PixArt transformer with its weights.
public struct PixArtModel: Sendable {
    public let config: PixArtConfiguration
    public let weights: ModuleWeights

    public init(config: PixArtConfiguration, weights: any WeightStore) {
        self.config = config
        self.weights = ModuleWeights(weights)
    }

    /// `forward(hidden_states, encoder_hidden_states, timestep, added_cond_kwargs, encoder_attention_mask)`.
    /// `hiddenStates` `[N, C, H, W]`; `encoderHiddenStates` `[N, L, caption_channels]`; `timestep` N values;
    /// `encoderAttentionMask` `[N, L]` of 1 (keep) and 0 (discard), or nil; `resolution` `[N, 2]` and
    /// `aspectRatio` `[N, 1]` for models with micro-conditions. Returns `[N, out_channels, H, W]`.
    public func forward(hiddenStates x: Tensor, encoderHiddenStates captions: Tensor, timestep: [Float],
                        encoderAttentionMask mask: Tensor? = nil, resolution: Tensor? = nil, aspectRatio: Tensor? = nil,
                        trace: LayerTrace? = nil) throws -> Tensor {
        let c = config, w = weights, d = c.innerDim, p = c.patchSize
        let n = x.shape.first ?? 0
        guard x.shape.count == 4, x.shape[1] == c.inChannels, x.shape[2] % p == 0, x.shape[3] % p == 0, n > 0 else {
            throw ModelError.inconsistent("PixArt hidden_states must be [N, \(c.inChannels), H, W] with H and W multiples of \(p); got \(x.shape)")
        }
        guard captions.shape.count == 3, captions.shape[0] == n, captions.shape[2] == c.captionChannels else {
            throw ModelError.inconsistent("encoder_hidden_states must be [\(n), L, \(c.captionChannels)]; got \(captions.shape)")
        }
        guard timestep.count == n else { throw ModelError.inconsistent("timestep must have \(n) values; got \(timestep.count)") }
        let gh = x.shape[2] / p, gw = x.shape[3] / p, tokens = captions.shape[1]

        // pos_embed: PatchEmbed, with the position embedding of this input's grid.
        var h = try Layers.patchEmbed(x, patch: p, w["pos_embed"]["proj"])
        let pos = Layers.sincosPositionEmbedding(dim: d, gridHeight: gh, gridWidth: gw, baseSize: c.baseSize, interpolationScale: c.interpolationScale)
        h = Layers.addBroadcast(h, pos)
        try trace?("pos_embed", h)

        // adaln_single: the embedded timestep (plus micro-conditions) and the shared 6·D modulation.
        let emb = try embedTimestep(timestep, resolution: resolution, aspectRatio: aspectRatio, batch: n)
        try trace?("adaln_single.emb", emb)
        let t = try Layers.linear(Layers.silu(emb), w["adaln_single"]["linear"])
        try trace?("adaln_single.0", t)
        try trace?("adaln_single.1", emb)

        // caption_projection
        let y = try Layers.linear(Layers.geluTanh(try Layers.linear(captions, w["caption_projection"]["linear_1"])),
                                  w["caption_projection"]["linear_2"])
        try trace?("caption_projection", y)

        // The caption mask as an additive bias per key: (1 - mask) * -10000.
        var bias: [Float]?
        if let mask {
            guard mask.count == n * tokens else { throw ModelError.inconsistent("encoder_attention_mask must be [\(n), \(tokens)]; got \(mask.shape)") }
            bias = mask.data.map { (1 - $0) * -10000 }
        }

        for i in 0..<c.numLayers {
            let b = w["transformer_blocks"][i]
            let path = "transformer_blocks.\(i)"
            // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (table[None] + t.reshape(N, 6, D)).chunk(6, 1)
            let table = try b.floats("scale_shift_table")
            guard table.count == 6 * d else { throw ModelError.inconsistent("'\(path).scale_shift_table' has \(table.count) values, expected \(6 * d)") }
            let mod = Layers.addBroadcast(t, table)
            let norm1 = try Layers.layerNorm(h, eps: c.normEps)
            try trace?(path + ".norm1", norm1)
            let attn1 = try Layers.attention(Layers.modulate(norm1, shift: mod, scale: mod, shiftColumn: 0, scaleColumn: d),
                                             heads: c.numHeads, b["attn1"])
            try trace?(path + ".attn1", attn1)
            h = Layers.residual(h, attn1, gate: mod, column: 2 * d)
            let attn2 = try Layers.attention(h, context: y, heads: c.numHeads, keyBias: bias, b["attn2"])
            try trace?(path + ".attn2", attn2)
            h = Layers.residual(h, attn2)
            let norm2 = try Layers.layerNorm(h, eps: c.normEps)
            try trace?(path + ".norm2", norm2)
            let ff = try Layers.linear(Layers.geluTanh(try Layers.linear(Layers.modulate(norm2, shift: mod, scale: mod, shiftColumn: 3 * d, scaleColumn: 4 * d),
                                                                         b["ff"]["net"]["0"]["proj"])), b["ff"]["net"]["2"])
            try trace?(path + ".ff", ff)
            h = Layers.residual(h, ff, gate: mod, column: 5 * d)
            try trace?(path, h)
        }

        // shift, scale = (scale_shift_table[None] + embedded_timestep[:, None]).chunk(2, dim=1)
        let table = try w.floats("scale_shift_table")
        guard table.count == 2 * d else { throw ModelError.inconsistent("'scale_shift_table' has \(table.count) values, expected \(2 * d)") }
        var final = Tensor(zeros: [n, 2 * d])
        for bi in 0..<n { for k in 0..<2 { for j in 0..<d { final.data[bi * 2 * d + k * d + j] = table[k * d + j] + emb.data[bi * d + j] } } }
        let normOut = try Layers.layerNorm(h, eps: 1e-6)
        try trace?("norm_out", normOut)
        let out = try Layers.linear(Layers.modulate(normOut, shift: final, scale: final, shiftColumn: 0, scaleColumn: d), w["proj_out"])
        try trace?("proj_out", out)
        return Layers.unpatchify(out, gridHeight: gh, gridWidth: gw, patch: p, channels: c.outChannels)
    }

    /// `adaln_single.emb`: timestep features (256, flip to [cos, sin], shift 0) through the timestep
    /// embedder, plus `cat([resolution_emb, aspect_ratio_emb])` for models with micro-conditions.
    func embedTimestep(_ t: [Float], resolution: Tensor?, aspectRatio: Tensor?, batch n: Int) throws -> Tensor {
        let e = weights["adaln_single"]["emb"]
        var emb = try Layers.timestepMLP(Layers.timestepEmbedding(t, dim: 256, flipSinToCos: true, downscaleFreqShift: 0), e["timestep_embedder"])
        guard config.useAdditionalConditions else { return emb }
        guard let resolution, let aspectRatio, resolution.count == 2 * n, aspectRatio.count == n else {
            throw ModelError.inconsistent("this PixArt takes the micro-conditions resolution [N, 2] and aspect_ratio [N, 1]")
        }
        let features = { (v: [Float]) in Layers.timestepEmbedding(v, dim: 256, flipSinToCos: true, downscaleFreqShift: 0) }
        // resolution.flatten() -> embedder -> reshape(N, -1): each item's height then width embedding.
        let res = try Layers.timestepMLP(features(resolution.data), e["resolution_embedder"])
        let ar = try Layers.timestepMLP(features(aspectRatio.data), e["aspect_ratio_embedder"])
        let s = config.sizeEmbeddingDim
        let cond = Tensor(shape: [n, 3 * s]) { out in
            for b in 0..<n {
                for j in 0..<(2 * s) { out[b * 3 * s + j] = res.data[b * 2 * s + j] }
                for j in 0..<s { out[b * 3 * s + 2 * s + j] = ar.data[b * s + j] }
            }
        }
        guard cond.count == emb.count else { throw ModelError.inconsistent("micro-condition embeddings (\(3 * s)) do not add to width \(config.innerDim)") }
        emb = Layers.residual(emb, cond)
        return emb
    }
}
