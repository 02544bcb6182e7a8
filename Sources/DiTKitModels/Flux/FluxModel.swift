// Port of diffusers' FluxTransformer2DModel.forward (models/transformers/transformer_flux.py:
// FluxTransformerBlock, FluxSingleTransformerBlock, FluxAttention with FluxAttnProcessor,
// FluxPosEmbed; embeddings.CombinedTimestep(Guidance)TextProjEmbeddings; normalization
// AdaLayerNormZero(Single), AdaLayerNormContinuous), on the shared building blocks. Traced layer
// names are diffusers module paths (tuple outputs as .0, .1, …).
//
// Semantics: packed latent tokens through `x_embedder`; the conditioning vector = timestep MLP of
// the 256-channel [cos, sin] features of t·1000 (+ the guidance MLP of g·1000 for dev) + the pooled
// text projection (Linear-SiLU-Linear); text tokens through `context_embedder`; rotary cos/sin from
// cat(txt_ids, img_ids). Double blocks: each stream LayerNorm (eps 1e-6) modulated by its own
// 6·D adaLN-Zero table, q/k/v per stream with per-head RMSNorm (eps 1e-6), text then image tokens
// concatenated, rotary on q and k, joint attention (scale hd^-½), split, output projections, gated
// residuals, LayerNorm modulated, GELU(tanh) MLPs, gated residuals. Single blocks: text and image
// tokens as one sequence, one 3·D table, attention and the MLP input from the same normed tokens,
// proj_out over cat(attention, gelu(mlp)), gated residual. Final: AdaLayerNormContinuous (scale,
// shift order, eps 1e-6) on the image tokens, proj_out.
//
// Weights are read per use (a layer at a time), so a 12-billion-parameter model runs in the memory
// of its largest tensor plus the activations.
import DiTKitCore
import DiTKitNumerics

/// A FLUX.1 transformer with its weights.
public struct FluxModel: Sendable {
    public let config: FluxConfiguration
    public let weights: ModuleWeights

    public init(config: FluxConfiguration, weights: any WeightStore) {
        self.config = config
        self.weights = ModuleWeights(weights)
    }

    /// `forward(hidden_states, encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids, guidance)`.
    /// `hiddenStates` `[N, S, in_channels]` (packed latents); `encoderHiddenStates` `[N, L,
    /// joint_attention_dim]`; `pooledProjections` `[N, pooled_projection_dim]`; `timestep` N values
    /// in [0, 1] (the pipeline's t / 1000); `imgIds` `[S, 3]`, `txtIds` `[L, 3]` (row-major, float);
    /// `guidance` N values (dev only). Returns `[N, S, out_channels]`.
    public func forward(hiddenStates x: Tensor, encoderHiddenStates text: Tensor, pooledProjections pooled: Tensor,
                        timestep: [Float], imgIds: [Float], txtIds: [Float], guidance: [Float]?,
                        trace: LayerTrace? = nil) throws -> Tensor {
        let c = config, w = weights, hd = c.headDim
        let n = x.shape.first ?? 0
        guard x.shape.count == 3, n > 0, x.shape[2] == c.patchSize * c.patchSize * c.inChannels else {
            throw ModelError.inconsistent("FLUX hidden_states must be packed latents [N, S, \(c.patchSize * c.patchSize * c.inChannels)]; got \(x.shape)")
        }
        guard text.shape.count == 3, text.shape[0] == n, text.shape[2] == c.jointAttentionDim else {
            throw ModelError.inconsistent("encoder_hidden_states must be [\(n), L, \(c.jointAttentionDim)]; got \(text.shape)")
        }
        guard pooled.count == n * c.pooledProjectionDim else {
            throw ModelError.inconsistent("pooled_projections must be [\(n), \(c.pooledProjectionDim)]; got \(pooled.shape)")
        }
        guard timestep.count == n else { throw ModelError.inconsistent("timestep must have \(n) values; got \(timestep.count)") }
        let s = x.shape[1], l = text.shape[1], axes = c.axesDimsRope.count
        guard imgIds.count == s * axes, txtIds.count == l * axes else {
            throw ModelError.inconsistent("img_ids must be [\(s), \(axes)] and txt_ids [\(l), \(axes)]; got \(imgIds.count) and \(txtIds.count) values")
        }
        if c.guidanceEmbeds {
            guard let guidance, guidance.count == n else { throw ModelError.inconsistent("this FLUX (guidance-distilled, like FLUX.1-dev) needs guidance: \(n) values") }
        }

        var h = try Layers.linear(x, w["x_embedder"])
        try trace?("x_embedder", h)
        let temb = try conditioning(timestep: timestep, guidance: c.guidanceEmbeds ? guidance : nil, pooled: pooled, trace: trace)
        try trace?("time_text_embed", temb)
        var ctx = try Layers.linear(text, w["context_embedder"])
        try trace?("context_embedder", ctx)
        let (cosTable, sinTable) = Layers.rotaryEmbedding(ids: txtIds + imgIds, axes: c.axesDimsRope, theta: c.theta)
        try trace?("pos_embed.0", Tensor(shape: [l + s, hd], data: cosTable))
        try trace?("pos_embed.1", Tensor(shape: [l + s, hd], data: sinTable))
        let rope = Rotary(cos: cosTable, sin: sinTable, headDim: hd)
        // Every adaLN linear reads silu(temb).
        let siluEmb = Layers.silu(temb)

        for i in 0..<c.numLayers {
            (ctx, h) = try doubleBlock(i, image: h, text: ctx, siluEmb: siluEmb, rope: rope, trace: trace)
        }
        for i in 0..<c.numSingleLayers {
            (ctx, h) = try singleBlock(i, image: h, text: ctx, siluEmb: siluEmb, rope: rope, trace: trace)
        }
        let normed = try Layers.adaLayerNormContinuous(h, conditioning: temb, eps: 1e-6, w["norm_out"])
        try trace?("norm_out", normed)
        let out = try Layers.linear(normed, w["proj_out"])
        try trace?("proj_out", out)
        return out
    }

    /// `time_text_embed`: timestep (and guidance) MLPs of 256 [cos, sin] features of value·1000,
    /// plus the pooled text projection, added in diffusers' order.
    func conditioning(timestep: [Float], guidance: [Float]?, pooled: Tensor, trace: LayerTrace?) throws -> Tensor {
        let e = weights["time_text_embed"]
        let features = { (v: [Float]) in Layers.timestepEmbedding(v.map { $0 * 1000 }, dim: 256, flipSinToCos: true, downscaleFreqShift: 0) }
        var emb = try Layers.timestepMLP(features(timestep), e["timestep_embedder"])
        try trace?("time_text_embed.timestep_embedder", emb)
        if let guidance {
            let g = try Layers.timestepMLP(features(guidance), e["guidance_embedder"])
            try trace?("time_text_embed.guidance_embedder", g)
            emb = Layers.residual(emb, g)
        }
        let n = timestep.count
        let p = try Layers.linear(Layers.silu(try Layers.linear(pooled.reshaped([n, pooled.count / n]), e["text_embedder"]["linear_1"])),
                                  e["text_embedder"]["linear_2"])
        try trace?("time_text_embed.text_embedder", p)
        return Layers.residual(emb, p)
    }

    /// Rotary cos and sin tables of the joint sequence (text tokens first).
    struct Rotary {
        let cos: [Float]
        let sin: [Float]
        let headDim: Int
    }

    /// q, k (per-head RMSNorm) and v of one stream: `norm_q`/`norm_k` (or the `added` ones) over
    /// `to_q`/`to_k`/`to_v` (or `add_*_proj`).
    func projections(_ x: Tensor, _ a: ModuleWeights, added: Bool) throws -> (Tensor, Tensor, Tensor) {
        let hd = config.headDim
        let (pq, pk, pv) = added ? ("add_q_proj", "add_k_proj", "add_v_proj") : ("to_q", "to_k", "to_v")
        let q = try Layers.perHead(try Layers.linear(x, a[pq]), headDim: hd) { try Layers.rmsNorm($0, eps: 1e-6, weight: a[added ? "norm_added_q" : "norm_q"]) }
        let k = try Layers.perHead(try Layers.linear(x, a[pk]), headDim: hd) { try Layers.rmsNorm($0, eps: 1e-6, weight: a[added ? "norm_added_k" : "norm_k"]) }
        return (q, k, try Layers.linear(x, a[pv]))
    }

    /// Rotary on q and k of the joint sequence, then attention over every token.
    func jointAttention(q: Tensor, k: Tensor, v: Tensor, rope: Rotary) throws -> Tensor {
        let qr = try Layers.applyRotary(q, cos: rope.cos, sin: rope.sin, headDim: rope.headDim)
        let kr = try Layers.applyRotary(k, cos: rope.cos, sin: rope.sin, headDim: rope.headDim)
        return try Layers.scaledDotProduct(q: qr, k: kr, v: v, heads: config.numHeads)
    }

    /// `transformer_blocks.i`: returns (text, image) as the block does (`.0`, `.1`).
    func doubleBlock(_ i: Int, image h0: Tensor, text c0: Tensor, siluEmb: Tensor, rope: Rotary, trace: LayerTrace?) throws -> (Tensor, Tensor) {
        let b = weights["transformer_blocks"][i], path = "transformer_blocks.\(i)", d = config.innerDim
        let l = c0.shape[1], s = h0.shape[1]
        // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp per stream.
        let (normH, mod) = try Layers.adaLayerNormZero(h0, siluEmb: siluEmb, chunks: 6, b["norm1"])
        try traceNorm(path + ".norm1", normH, mod, chunks: [2, 3, 4, 5], of: 6, trace)
        let (normC, cmod) = try Layers.adaLayerNormZero(c0, siluEmb: siluEmb, chunks: 6, b["norm1_context"])
        try traceNorm(path + ".norm1_context", normC, cmod, chunks: [2, 3, 4, 5], of: 6, trace)

        let a = b["attn"]
        let (q, k, v) = try projections(normH, a, added: false)
        let (cq, ck, cv) = try projections(normC, a, added: true)
        // Text tokens first (FluxAttnProcessor: cat([encoder, hidden])), then rotary over the joint sequence.
        let joint = try jointAttention(q: Layers.concatTokens(cq, q), k: Layers.concatTokens(ck, k), v: Layers.concatTokens(cv, v), rope: rope)
        let attnOut = try Layers.linear(Layers.tokens(joint, from: l, count: s), a["to_out"]["0"])
        let contextOut = try Layers.linear(Layers.tokens(joint, from: 0, count: l), a["to_add_out"])
        try trace?(path + ".attn.0", attnOut)
        try trace?(path + ".attn.1", contextOut)

        var h = Layers.residual(h0, attnOut, gate: mod, column: 2 * d)
        let norm2 = try Layers.layerNorm(h, eps: 1e-6)
        try trace?(path + ".norm2", norm2)
        let ff = try Layers.feedForwardGELU(Layers.modulate(norm2, shift: mod, scale: mod, shiftColumn: 3 * d, scaleColumn: 4 * d), b["ff"])
        try trace?(path + ".ff", ff)
        h = Layers.residual(h, ff, gate: mod, column: 5 * d)

        var ctx = Layers.residual(c0, contextOut, gate: cmod, column: 2 * d)
        let norm2c = try Layers.layerNorm(ctx, eps: 1e-6)
        try trace?(path + ".norm2_context", norm2c)
        let ffc = try Layers.feedForwardGELU(Layers.modulate(norm2c, shift: cmod, scale: cmod, shiftColumn: 3 * d, scaleColumn: 4 * d), b["ff_context"])
        try trace?(path + ".ff_context", ffc)
        ctx = Layers.residual(ctx, ffc, gate: cmod, column: 5 * d)
        try trace?(path + ".0", ctx)
        try trace?(path + ".1", h)
        return (ctx, h)
    }

    /// `single_transformer_blocks.i`: text and image tokens as one sequence; returns (text, image).
    func singleBlock(_ i: Int, image h0: Tensor, text c0: Tensor, siluEmb: Tensor, rope: Rotary, trace: LayerTrace?) throws -> (Tensor, Tensor) {
        let b = weights["single_transformer_blocks"][i], path = "single_transformer_blocks.\(i)", d = config.innerDim
        let l = c0.shape[1], s = h0.shape[1]
        let x = Layers.concatTokens(c0, h0)
        let (normed, mod) = try Layers.adaLayerNormZero(x, siluEmb: siluEmb, chunks: 3, b["norm"])
        try traceNorm(path + ".norm", normed, mod, chunks: [2], of: 3, trace)
        let mlpIn = try Layers.linear(normed, b["proj_mlp"])
        try trace?(path + ".proj_mlp", mlpIn)
        let mlp = Layers.geluTanh(mlpIn)
        let (q, k, v) = try projections(normed, b["attn"], added: false)
        let attn = try jointAttention(q: q, k: k, v: v, rope: rope)
        try trace?(path + ".attn", attn)
        let proj = try Layers.linear(Layers.concatLast([attn, mlp]), b["proj_out"])
        try trace?(path + ".proj_out", proj)
        let out = Layers.residual(x, proj, gate: mod, column: 2 * d)
        let ctx = Layers.tokens(out, from: 0, count: l), h = Layers.tokens(out, from: l, count: s)
        try trace?(path + ".0", ctx)
        try trace?(path + ".1", h)
        return (ctx, h)
    }

    /// Traces an adaLN-Zero output tuple: the normed tokens (`.0`), then the listed column blocks
    /// of the modulation table (`.1`, `.2`, …: gate_msa, shift_mlp, scale_mlp, gate_mlp).
    func traceNorm(_ path: String, _ normed: Tensor, _ mod: Tensor, chunks: [Int], of parts: Int, _ trace: LayerTrace?) throws {
        guard let trace else { return }
        try trace(path + ".0", normed)
        for (k, c) in chunks.enumerated() { try trace(path + ".\(k + 1)", Layers.chunk(mod, c, of: parts)) }
    }
}
