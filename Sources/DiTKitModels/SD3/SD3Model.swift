// Port of diffusers' SD3Transformer2DModel.forward (models/transformers/transformer_sd3.py,
// JointTransformerBlock in models/attention.py, JointAttnProcessor2_0, AdaLayerNormZero,
// SD35AdaLayerNormZeroX, AdaLayerNormContinuous, CombinedTimestepTextProjEmbeddings, PatchEmbed with
// pos_embed_max_size), on the shared building blocks. Traced layer names are diffusers module paths.
//
// Semantics: patch embedding plus the stored position table cropped to the input's grid (centred:
// top = (M - h) // 2, left = (M - w) // 2); the conditioning is the timestep embedding (256 channels
// [cos, sin], TimestepEmbedding) plus the pooled text projection (Linear-SiLU-Linear); the text
// features go through `context_embedder`. Each block: adaLN-Zero on the image stream (6 chunks, 9
// with the dual attention of MMDiT-X) and on the context stream (6 chunks; the last block's context
// takes a continuous [scale, shift] norm and ends there); joint attention over the image tokens then
// the text tokens, per-head qk norms when configured; gated residuals; the dual attention is a
// self-attention over the image tokens from a second modulation of the same LayerNorm; GELU(tanh)
// MLPs on each stream. Final AdaLayerNormContinuous, Linear, unpatchify. LayerNorms have eps 1e-6
// and no affine.
import DiTKitCore
import DiTKitNumerics

/// An SD3 / SD3.5 transformer with its weights.
public struct SD3Model: Sendable {
    public let config: SD3Configuration
    public let weights: ModuleWeights

    public init(config: SD3Configuration, weights: any WeightStore) {
        self.config = config
        self.weights = ModuleWeights(weights)
    }

    static let eps = 1e-6

    /// `forward(hidden_states, encoder_hidden_states, pooled_projections, timestep)`.
    /// `hiddenStates` `[N, C, H, W]` (H and W multiples of the patch size); `encoderHiddenStates`
    /// `[N, L, joint_attention_dim]`; `pooledProjections` `[N, pooled_projection_dim]`; `timestep` N
    /// values (σ·1000). Returns `[N, out_channels, H, W]`.
    public func forward(hiddenStates x: Tensor, encoderHiddenStates text: Tensor, pooledProjections pooled: Tensor,
                        timestep: [Float], trace: LayerTrace? = nil) throws -> Tensor {
        let c = config, w = weights, p = c.patchSize
        let n = x.shape.first ?? 0
        guard x.shape.count == 4, n > 0, x.shape[1] == c.inChannels, x.shape[2] % p == 0, x.shape[3] % p == 0 else {
            throw ModelError.inconsistent("SD3 hidden_states must be [N, \(c.inChannels), H, W] with H and W multiples of \(p); got \(x.shape)")
        }
        guard text.shape.count == 3, text.shape[0] == n, text.shape[1] > 0, text.shape[2] == c.jointAttentionDim else {
            throw ModelError.inconsistent("encoder_hidden_states must be [\(n), L, \(c.jointAttentionDim)]; got \(text.shape)")
        }
        guard pooled.shape == [n, c.pooledProjectionDim] else {
            throw ModelError.inconsistent("pooled_projections must be [\(n), \(c.pooledProjectionDim)]; got \(pooled.shape)")
        }
        guard timestep.count == n else { throw ModelError.inconsistent("timestep must have \(n) values; got \(timestep.count)") }
        let gh = x.shape[2] / p, gw = x.shape[3] / p

        // pos_embed: PatchEmbed, plus the position table cropped to this grid.
        var h = try Layers.patchEmbed(x, patch: p, w["pos_embed"]["proj"])
        h = Layers.addBroadcast(h, try positionEmbedding(gridHeight: gh, gridWidth: gw))
        try trace?("pos_embed", h)

        // time_text_embed: timestep embedding + pooled text projection.
        let e = w["time_text_embed"]
        let temb = Layers.residual(
            try Layers.timestepMLP(Layers.timestepEmbedding(timestep, dim: 256, flipSinToCos: true, downscaleFreqShift: 0), e["timestep_embedder"]),
            try Layers.linear(Layers.silu(try Layers.linear(pooled, e["text_embedder"]["linear_1"])), e["text_embedder"]["linear_2"]))
        try trace?("time_text_embed", temb)

        var ctx = try Layers.linear(text, w["context_embedder"])
        try trace?("context_embedder", ctx)

        for i in 0..<c.numLayers {
            (ctx, h) = try block(i, hidden: h, context: ctx, temb: temb, trace: trace)
        }

        let normOut = try Layers.adaLayerNormContinuous(h, conditioning: temb, eps: Self.eps, w["norm_out"])
        try trace?("norm_out", normOut)
        let out = try Layers.linear(normOut, w["proj_out"])
        try trace?("proj_out", out)
        return Layers.unpatchify(out, gridHeight: gh, gridWidth: gw, patch: p, channels: c.outChannels)
    }

    /// `[gh·gw, D]`: the stored table's centred crop, or (without a stored table) the 2-D sin-cos
    /// embedding of this grid at base size `sample_size / patch`.
    func positionEmbedding(gridHeight gh: Int, gridWidth gw: Int) throws -> [Float] {
        let d = config.innerDim
        guard let m = config.posEmbedMaxSize else {
            return Layers.sincosPositionEmbedding(dim: d, gridHeight: gh, gridWidth: gw, baseSize: config.sampleSize / config.patchSize, interpolationScale: 1)
        }
        guard gh <= m, gw <= m else {
            throw ModelError.inconsistent("a \(gh)×\(gw) patch grid is larger than the position table (\(m)×\(m), pos_embed_max_size); the largest latent is \(m * config.patchSize) pixels a side")
        }
        let top = (m - gh) / 2, left = (m - gw) / 2
        return try weights["pos_embed"].withFloats("pos_embed") { table -> [Float] in
            guard table.count == m * m * d else { throw ModelError.inconsistent("'pos_embed.pos_embed' has \(table.count) values, expected \(m * m * d)") }
            var out = [Float](repeating: 0, count: gh * gw * d)
            for r in 0..<gh {
                for col in 0..<gw {
                    let src = ((top + r) * m + left + col) * d, dst = (r * gw + col) * d
                    for k in 0..<d { out[dst + k] = table[src + k] }
                }
            }
            return out
        }
    }

    /// The per-head query/key norm of the configuration (nil: none).
    var qkNorm: ((Tensor, ModuleWeights) throws -> Tensor)? {
        guard let kind = config.qkNorm else { return nil }
        let hd = config.headDim
        return { x, m in
            try Layers.perHead(x, headDim: hd) { rows in
                switch kind {
                case .rmsNorm: return try Layers.rmsNorm(rows, eps: Self.eps, weight: m)
                case .layerNorm: return try Layers.layerNorm(rows, eps: Self.eps, affine: m)
                case .fp32LayerNorm: return try Layers.layerNorm(rows, eps: Self.eps)
                }
            }
        }
    }

    /// `JointTransformerBlock.forward`: returns (context or unchanged for the last block, hidden).
    func block(_ i: Int, hidden h0: Tensor, context ctx0: Tensor, temb: Tensor, trace: LayerTrace?) throws -> (Tensor, Tensor) {
        let c = config, d = c.innerDim, path = "transformer_blocks.\(i)"
        let b = weights["transformer_blocks"][i]
        let dual = c.isDual(i), last = c.isLast(i)
        var h = h0, ctx = ctx0

        // norm1 (AdaLayerNormZero, or SD35AdaLayerNormZeroX): shift, scale, gate (msa), shift, scale,
        // gate (mlp)[, shift, scale, gate (msa2)] = linear(silu(temb)).chunk(6 or 9).
        let mod = try Layers.linear(Layers.silu(temb), b["norm1"]["linear"])
        let normed = try Layers.layerNorm(h, eps: SD3Model.eps)
        let normH = Layers.modulate(normed, shift: mod, scale: mod, shiftColumn: 0, scaleColumn: d)
        try trace?(path + ".norm1.0", normH)
        for (k, chunk) in [2, 3, 4, 5].enumerated() { try trace?(path + ".norm1.\(k + 1)", Layers.chunk(mod, chunk, of: dual ? 9 : 6)) }
        var normH2: Tensor?
        if dual {
            let second = Layers.modulate(normed, shift: mod, scale: mod, shiftColumn: 6 * d, scaleColumn: 7 * d)
            try trace?(path + ".norm1.5", second)
            normH2 = second
            try trace?(path + ".norm1.6", Layers.chunk(mod, 8, of: 9))
        }

        // norm1_context: AdaLayerNormContinuous for the last block, else AdaLayerNormZero.
        let normCtx: Tensor
        var cmod: Tensor?
        if last {
            normCtx = try Layers.adaLayerNormContinuous(ctx, conditioning: temb, eps: SD3Model.eps, b["norm1_context"])
            try trace?(path + ".norm1_context", normCtx)
        } else {
            let m = try Layers.linear(Layers.silu(temb), b["norm1_context"]["linear"])
            normCtx = Layers.modulate(try Layers.layerNorm(ctx, eps: SD3Model.eps), shift: m, scale: m, shiftColumn: 0, scaleColumn: d)
            try trace?(path + ".norm1_context.0", normCtx)
            for (k, chunk) in [2, 3, 4, 5].enumerated() { try trace?(path + ".norm1_context.\(k + 1)", Layers.chunk(m, chunk, of: 6)) }
            cmod = m
        }

        // attn: joint attention over [image tokens; text tokens].
        let (attn, ctxAttn) = try Layers.jointAttention(normH, context: normCtx, heads: c.numHeads, b["attn"], qkNorm: qkNorm, projectContext: !last)
        try trace?(path + ".attn.0", attn)
        if let ctxAttn { try trace?(path + ".attn.1", ctxAttn) }
        h = Layers.residual(h, attn, gate: mod, column: 2 * d)

        if let normH2 {
            let (attn2, _) = try Layers.jointAttention(normH2, context: nil, heads: c.numHeads, b["attn2"], qkNorm: qkNorm)
            try trace?(path + ".attn2", attn2)
            h = Layers.residual(h, attn2, gate: mod, column: 8 * d)
        }

        let norm2 = try Layers.layerNorm(h, eps: SD3Model.eps)
        try trace?(path + ".norm2", norm2)
        let ff = try feedForward(Layers.modulate(norm2, shift: mod, scale: mod, shiftColumn: 3 * d, scaleColumn: 4 * d), b["ff"])
        try trace?(path + ".ff", ff)
        h = Layers.residual(h, ff, gate: mod, column: 5 * d)

        if let cmod, let ctxAttn {
            ctx = Layers.residual(ctx, ctxAttn, gate: cmod, column: 2 * d)
            let norm2c = try Layers.layerNorm(ctx, eps: SD3Model.eps)
            try trace?(path + ".norm2_context", norm2c)
            let ffc = try feedForward(Layers.modulate(norm2c, shift: cmod, scale: cmod, shiftColumn: 3 * d, scaleColumn: 4 * d), b["ff_context"])
            try trace?(path + ".ff_context", ffc)
            ctx = Layers.residual(ctx, ffc, gate: cmod, column: 5 * d)
            try trace?(path + ".0", ctx)
        }
        try trace?(path + ".1", h)
        return (ctx, h)
    }

    /// `FeedForward(activation_fn="gelu-approximate")`: `net.2(gelu_tanh(net.0.proj(x)))`.
    func feedForward(_ x: Tensor, _ m: ModuleWeights) throws -> Tensor {
        try Layers.linear(Layers.geluTanh(try Layers.linear(x, m["net"]["0"]["proj"])), m["net"]["2"])
    }
}
