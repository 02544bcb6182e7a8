// Port of facebookresearch/DiT models.py (the forward pass), on DiTKitNumerics / OpenBLAS.
//
// Semantics (../shared/reference/dit-and-vae.md §1.3): patch embedding by a p×p stride-p conv,
// tokens row-major; sin-cos pos_embed added; timestep embedding with 128 frequencies
// exp(-ln(10000)·i/128), [cos, sin], Linear-SiLU-Linear; label embedding (row num_classes is the
// null class); c = t + y; per block adaLN-Zero with chunk order shift/scale/gate (msa, then mlp),
// LayerNorm eps 1e-6 without affine, timm attention (qkv rows [q|k|v], head h = columns
// h·hd..h·hd+hd-1 of each third, scale hd^-0.5), tanh-GELU MLP; final layer shift, scale then
// Linear; unpatchify 'nhwpqc->nchpwq'.
import DiTKitCore
import DiTKitNumerics
#if canImport(Glibc)
import Glibc
#endif

/// A DiT with its weights.
public struct DiTModel: Sendable {
    public let config: DiTConfiguration
    public let weights: any WeightStore

    public init(config: DiTConfiguration, weights: any WeightStore) {
        self.config = config
        self.weights = weights
    }

    /// The 256-wide sinusoidal timestep features `[N, 256]`, as `TimestepEmbedder.timestep_embedding`
    /// computes them in float32 (cos first, frequencies `exp(-ln(10000)·i/half)`).
    public static func timestepFeatures(_ t: [Float], dim: Int) -> Tensor {
        Layers.timestepEmbedding(t, dim: dim, flipSinToCos: true, downscaleFreqShift: 0)
    }

    private func linear(_ x: UnsafePointer<Float>, rows: Int, in k: Int, out n: Int, _ prefix: String, into y: UnsafeMutablePointer<Float>) throws {
        guard try weights.elementCount(prefix + ".weight") == n * k else { throw ModelError.inconsistent("'\(prefix)' has the wrong size") }
        try weights.withFloats(prefix + ".bias") { b in
            guard b.count == n else { throw ModelError.inconsistent("'\(prefix)' has the wrong size") }
            try Layers.linear(x, rows: rows, inFeatures: k, outFeatures: n, weight: prefix + ".weight", in: weights, bias: b.baseAddress!, into: y)
        }
    }

    /// `forward(x, t, y)`: `x` is `[N, in_channels, input, input]`, `t` the original-grid timesteps
    /// (0…999), `y` class labels (`num_classes` is the null class). Returns `[N, out_channels, input, input]`.
    public func forward(x: Tensor, t: [Float], y: [Int], trace: LayerTrace? = nil) throws -> Tensor {
        let c = config
        let n = x.shape[0], d = c.hiddenSize, p = c.patchSize, g = c.gridSize, tokens = c.tokens
        guard x.shape == [n, c.inChannels, c.inputSize, c.inputSize], t.count == n, y.count == n else {
            throw ModelError.inconsistent("DiT input must be [N, \(c.inChannels), \(c.inputSize), \(c.inputSize)] with N timesteps and labels; got \(x.shape), \(t.count), \(y.count)")
        }
        guard y.allSatisfy({ $0 >= 0 && $0 <= c.numClasses }) else { throw ModelError.inconsistent("class labels must be in 0...\(c.numClasses)") }

        // Patch embedding, then tokens row-major: [N, D, g, g] -> [N, T, D].
        var h = try Layers.patchEmbed(x, patch: p, ModuleWeights(weights, path: "x_embedder.proj"))
        try trace?("x_embedder", h)
        try weights.withFloats("pos_embed") { pe in
            guard pe.count == tokens * d else { throw ModelError.inconsistent("pos_embed has \(pe.count) values, expected \(tokens * d)") }
            h.data.withUnsafeMutableBufferPointer { hp in
                for b in 0..<n { Ops.add(hp.baseAddress! + b * tokens * d, pe.baseAddress!, count: tokens * d) }
            }
        }

        // Conditioning: c = t_embedder(t) + y_embedder(y).
        let freq = DiTModel.timestepFeatures(t, dim: c.frequencyEmbeddingSize)
        var t1 = Tensor(zeros: [n, d]), temb = Tensor(zeros: [n, d])
        try linear(freq.data, rows: n, in: c.frequencyEmbeddingSize, out: d, "t_embedder.mlp.0", into: &t1.data)
        Ops.silu(&t1.data, count: t1.count)
        try linear(t1.data, rows: n, in: d, out: d, "t_embedder.mlp.2", into: &temb.data)
        try trace?("t_embedder", temb)
        let yemb = try weights.withFloats("y_embedder.embedding_table.weight") { table -> Tensor in
            guard table.count == (c.numClasses + 1) * d else { throw ModelError.inconsistent("label table has the wrong size") }
            return Tensor(shape: [n, d]) { out in
                for (b, label) in y.enumerated() { (out + b * d).update(from: table.baseAddress! + label * d, count: d) }
            }
        }
        try trace?("y_embedder", yemb)
        var cond = temb
        Ops.add(&cond.data, yemb.data, count: cond.count)
        var siluC = cond
        Ops.silu(&siluC.data, count: siluC.count)

        let rows = n * tokens
        var normed = Tensor(zeros: [n, tokens, d])
        var qkv = Tensor(zeros: [n, tokens, 3 * d])
        var attn = Tensor(zeros: [n, tokens, d])
        var branch = Tensor(zeros: [n, tokens, d])
        var hidden = Tensor(zeros: [n, tokens, c.mlpHidden])
        var mod = Tensor(zeros: [n, 6 * d])
        let eps = Float(c.layerNormEps)
        for i in 0..<c.depth {
            let b = "blocks.\(i)"
            try linear(siluC.data, rows: n, in: d, out: 6 * d, b + ".adaLN_modulation.1", into: &mod.data)
            try trace?(b + ".adaLN_modulation", mod)
            // Attention branch.
            layerNormModulated(h, into: &normed, mod: mod, shiftChunk: 0, scaleChunk: 1, eps: eps)
            try linear(normed.data, rows: rows, in: d, out: 3 * d, b + ".attn.qkv", into: &qkv.data)
            qkv.data.withUnsafeBufferPointer { q in
                attn.data.withUnsafeMutableBufferPointer { o in
                    Attention.multiHead(q: q.baseAddress!, k: q.baseAddress! + d, v: q.baseAddress! + 2 * d, rowStride: 3 * d,
                                        batch: n, tokens: tokens, heads: c.numHeads, headDim: c.headDim,
                                        scale: 1 / Float(c.headDim).squareRoot(), into: o.baseAddress!)
                }
            }
            try linear(attn.data, rows: rows, in: d, out: d, b + ".attn.proj", into: &branch.data)
            try trace?(b + ".attn", branch)
            gatedResidual(&h, branch, mod: mod, gateChunk: 2)
            // MLP branch.
            layerNormModulated(h, into: &normed, mod: mod, shiftChunk: 3, scaleChunk: 4, eps: eps)
            try linear(normed.data, rows: rows, in: d, out: c.mlpHidden, b + ".mlp.fc1", into: &hidden.data)
            Ops.geluTanh(&hidden.data, count: hidden.count)
            try linear(hidden.data, rows: rows, in: c.mlpHidden, out: d, b + ".mlp.fc2", into: &branch.data)
            try trace?(b + ".mlp", branch)
            gatedResidual(&h, branch, mod: mod, gateChunk: 5)
            try trace?(b, h)
        }

        // Final layer: shift, scale = chunk(2) (shift first), then Linear.
        var fmod = Tensor(zeros: [n, 2 * d])
        try linear(siluC.data, rows: n, in: d, out: 2 * d, "final_layer.adaLN_modulation.1", into: &fmod.data)
        layerNormModulated(h, into: &normed, mod: fmod, shiftChunk: 0, scaleChunk: 1, eps: eps)
        let outPerToken = p * p * c.outChannels
        var final = Tensor(zeros: [n, tokens, outPerToken])
        try linear(normed.data, rows: rows, in: d, out: outPerToken, "final_layer.linear", into: &final.data)
        try trace?("final_layer", final)

        // unpatchify: feature (pi·p + qi)·C + ch of token (hi·g + wi) -> pixel (hi·p + pi, wi·p + qi).
        return Layers.unpatchify(final, gridHeight: g, gridWidth: g, patch: p, channels: c.outChannels)
    }

    /// LayerNorm of every token, then `modulate` with the batch item's shift and scale chunks of `mod`.
    private func layerNormModulated(_ x: Tensor, into y: inout Tensor, mod: Tensor, shiftChunk: Int, scaleChunk: Int, eps: Float) {
        let n = x.shape[0], tokens = x.shape[1], d = x.shape[2]
        let width = mod.shape[1]
        x.data.withUnsafeBufferPointer { xp in
            y.data.withUnsafeMutableBufferPointer { yp in
                mod.data.withUnsafeBufferPointer { mp in
                    for b in 0..<n {
                        let off = b * tokens * d
                        Ops.layerNorm(xp.baseAddress! + off, rows: tokens, dim: d, eps: eps, into: yp.baseAddress! + off)
                        Ops.modulate(yp.baseAddress! + off, rows: tokens, dim: d, shift: mp.baseAddress! + b * width + shiftChunk * d,
                                     scale: mp.baseAddress! + b * width + scaleChunk * d)
                    }
                }
            }
        }
    }

    /// `x += gate[b] * branch` with the gate chunk of `mod`.
    private func gatedResidual(_ x: inout Tensor, _ branch: Tensor, mod: Tensor, gateChunk: Int) {
        let n = x.shape[0], tokens = x.shape[1], d = x.shape[2]
        let width = mod.shape[1]
        x.data.withUnsafeMutableBufferPointer { xp in
            branch.data.withUnsafeBufferPointer { bp in
                mod.data.withUnsafeBufferPointer { mp in
                    for b in 0..<n {
                        Ops.gatedAdd(xp.baseAddress! + b * tokens * d, bp.baseAddress! + b * tokens * d, rows: tokens, dim: d,
                                     gate: mp.baseAddress! + b * width + gateChunk * d)
                    }
                }
            }
        }
    }

    /// `forward_with_cfg`: the first half of `x` is duplicated, the model runs once on the doubled
    /// batch, and guidance `uncond + s·(cond − uncond)` is applied to channels 0…2 only (the
    /// official rule "for exact reproducibility"); the other channels pass through.
    public func forwardWithCFG(x: Tensor, t: [Float], y: [Int], cfgScale: Float, trace: LayerTrace? = nil) throws -> Tensor {
        let n = x.shape[0]
        guard n % 2 == 0 else { throw ModelError.inconsistent("guidance needs an even batch (conditional and unconditional halves)") }
        let per = x.count / n
        var combined = x
        combined.data.withUnsafeMutableBufferPointer { p in
            (p.baseAddress! + n / 2 * per).update(from: p.baseAddress!, count: n / 2 * per)
        }
        var out = try forward(x: combined, t: t, y: y, trace: trace)
        let oc = out.shape[1], plane = out.shape[2] * out.shape[3]
        let guided = min(3, oc)
        for b in 0..<(n / 2) {
            for ch in 0..<guided {
                let cond = (b * oc + ch) * plane, uncond = ((b + n / 2) * oc + ch) * plane
                for i in 0..<plane {
                    let v = out.data[uncond + i] + cfgScale * (out.data[cond + i] - out.data[uncond + i])
                    out.data[cond + i] = v
                    out.data[uncond + i] = v
                }
            }
        }
        return out
    }
}

extension DiTModel {
    private func linear(_ x: [Float], rows: Int, in k: Int, out n: Int, _ prefix: String, into y: inout [Float]) throws {
        try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeMutableBufferPointer { yp in
                try linear(xp.baseAddress!, rows: rows, in: k, out: n, prefix, into: yp.baseAddress!)
            }
        }
    }
}
