// Shared building blocks for forward passes, on tensors, so a family's forward reads like its
// PyTorch original module by module: `try Layers.linear(x, w["attn1"]["to_q"])`.
//
// Layouts follow PyTorch: activations are `[..., features]` row-major (tokens `[N, T, D]`),
// linear weights `[out, in]`, convolution weights OIHW. Every function reads its weights from a
// `ModuleWeights` (a module path over a `WeightStore`, as candle's VarBuilder carries its prefix)
// one tensor at a time, so quantized bundles are widened a layer at a time.
import DiTKitCore
import DiTKitNumerics
#if canImport(Glibc)
import Glibc
#endif

/// The weights under one module path (`transformer_blocks.3.attn1`).
public struct ModuleWeights: Sendable {
    public let store: any WeightStore
    /// Dotted module path, empty for the model's root.
    public let path: String

    public init(_ store: any WeightStore, path: String = "") {
        self.store = store
        self.path = path
    }

    /// The submodule `name` (`w["attn1"]["to_q"]`).
    public subscript(_ name: String) -> ModuleWeights { ModuleWeights(store, path: path.isEmpty ? name : path + "." + name) }
    /// The `i`-th element of a module list (`w["transformer_blocks"][3]`).
    public subscript(_ i: Int) -> ModuleWeights { self[String(i)] }

    /// The full name of a parameter of this module (`transformer_blocks.3.attn1.to_q.weight`).
    public func name(_ parameter: String) -> String { path.isEmpty ? parameter : path + "." + parameter }

    /// Calls `body` with the float32 values of a parameter.
    public func withFloats<R>(_ parameter: String, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        try store.withFloats(name(parameter), body)
    }

    /// A parameter's values (copied).
    public func floats(_ parameter: String) throws -> [Float] { try store.floats(name(parameter)) }
}

public enum Layers {
    // MARK: linear layers and activations

    /// `nn.Linear`: `y = x Wᵀ + b` over the last dimension of `x`; `W` is `[out, in]`.
    public static func linear(_ x: Tensor, _ m: ModuleWeights, bias: Bool = true) throws -> Tensor {
        guard let k = x.shape.last, k > 0 else { throw ModelError.inconsistent("'\(m.path)': input has shape \(x.shape)") }
        let rows = x.count / k
        let total = try m.store.elementCount(m.name("weight"))
        guard total % k == 0, total > 0 else {
            throw ModelError.inconsistent("'\(m.path)' has \(total) weights, which is not a multiple of its input width \(k)")
        }
        let n = total / k
        var y = Tensor(zeros: Array(x.shape.dropLast()) + [n])
        func run(_ b: UnsafePointer<Float>?) throws {
            try x.data.withUnsafeBufferPointer { xp in
                try y.data.withUnsafeMutableBufferPointer { yp in
                    try linear(xp.baseAddress!, rows: rows, inFeatures: k, outFeatures: n, weight: m.name("weight"), in: m.store,
                               bias: b, into: yp.baseAddress!)
                }
            }
        }
        if bias {
            try m.withFloats("bias") { b in
                guard b.count == n else { throw ModelError.inconsistent("'\(m.path).bias' has \(b.count) values, expected \(n)") }
                try run(b.baseAddress!)
            }
        } else {
            try run(nil)
        }
        return y
    }

    /// `y[rows, n] = x[rows, k] Wᵀ + b` with `W` (`[n, k]`, named `weight` in `store`) read a block
    /// of rows at a time (`WeightStore.withRowBlocks`): a quantized weight is widened a block at a
    /// time into a reused buffer, and each block's product fills its columns of `y`. A few rows
    /// (≤ `DirectProduct.maxRows`) go through the direct kernels instead, on the stored values of
    /// an int8, float16 or bfloat16 weight (`WeightStore.directProduct`). `x` rows are
    /// `ldx` floats apart (`k` by default). Throws `ModelError` when the weight does not hold `n × k` values.
    public static func linear(_ x: UnsafePointer<Float>, rows: Int, inFeatures k: Int, outFeatures n: Int, weight: String,
                              in store: any WeightStore, bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>,
                              ldx: Int? = nil) throws {
        // A few rows (a batch's modulation or embedding layers): the direct kernels, on the stored
        // values where the store can (int8, float16, bfloat16), else on the widened blocks. Every
        // few-row product takes this path whatever the storage, so it depends on the values only.
        let direct = rows <= DirectProduct.maxRows
        if direct, try store.directProduct(weight, x: x, rows: rows, inFeatures: k, outFeatures: n, ldx: ldx ?? k, into: y, ldy: n) {
            if let bias { Ops.addRowVector(y, rows: rows, cols: n, bias, ld: n) }
            return
        }
        var covered = 0
        try store.withRowBlocks(weight) { first, w in
            guard k > 0, w.count % k == 0, first == covered, first + w.count / k <= n, let wp = w.baseAddress else {
                throw ModelError.inconsistent("'\(weight)' does not hold \(n) rows of \(k) values")
            }
            let r = w.count / k
            if direct {
                DirectProduct.multiply(x, rows: rows, inFeatures: k, weight: .f32(wp), outFeatures: r, into: y + first, ldx: ldx, ldy: n,
                                       threads: ProcessInfoLite.activeProcessorCount)
                if let bias { Ops.addRowVector(y + first, rows: rows, cols: r, bias + first, ld: n) }
            } else {
                Ops.linear(x, rows: rows, inFeatures: k, weight: wp, bias: bias.map { $0 + first }, outFeatures: r, into: y + first, ldx: ldx, ldy: n)
            }
            covered += r
        }
        guard covered == n else { throw ModelError.inconsistent("'\(weight)' has \(covered * k) values, expected \(n * k)") }
    }

    /// `nn.SiLU`.
    public static func silu(_ x: Tensor) -> Tensor {
        var y = x
        Ops.silu(&y.data, count: y.count)
        return y
    }

    /// `nn.GELU(approximate="tanh")`.
    public static func geluTanh(_ x: Tensor) -> Tensor {
        var y = x
        Ops.geluTanh(&y.data, count: y.count)
        return y
    }

    // MARK: normalisation

    /// `nn.LayerNorm` over the last dimension; with `affine`, multiplied by its `weight` and plus its `bias`.
    public static func layerNorm(_ x: Tensor, eps: Double, affine: ModuleWeights? = nil) throws -> Tensor {
        guard let d = x.shape.last, d > 0 else { return x }
        var y = Tensor(zeros: x.shape)
        x.data.withUnsafeBufferPointer { xp in
            y.data.withUnsafeMutableBufferPointer { yp in
                Ops.layerNorm(xp.baseAddress!, rows: x.count / d, dim: d, eps: Float(eps), into: yp.baseAddress!)
            }
        }
        if let affine {
            let g = try affine.floats("weight"), b = try affine.floats("bias")
            guard g.count == d, b.count == d else { throw ModelError.inconsistent("'\(affine.path)' does not fit width \(d)") }
            y.data.withUnsafeMutableBufferPointer { yp in
                for r in 0..<(x.count / d) { for i in 0..<d { yp[r * d + i] = yp[r * d + i] * g[i] + b[i] } }
            }
        }
        return y
    }

    /// RMSNorm over the last dimension (`x / sqrt(mean(x²) + eps) * weight`), as diffusers' `RMSNorm`.
    public static func rmsNorm(_ x: Tensor, eps: Double, weight m: ModuleWeights?) throws -> Tensor {
        guard let d = x.shape.last, d > 0 else { return x }
        var y = Tensor(zeros: x.shape)
        let g = try m.map { try $0.floats("weight") }
        if let g, g.count != d { throw ModelError.inconsistent("'\(m?.path ?? "")' does not fit width \(d)") }
        x.data.withUnsafeBufferPointer { xp in
            y.data.withUnsafeMutableBufferPointer { yp in
                if let g {
                    g.withUnsafeBufferPointer { Ops.rmsNorm(xp.baseAddress!, rows: x.count / d, dim: d, eps: eps, weight: $0.baseAddress!, into: yp.baseAddress!) }
                } else {
                    Ops.rmsNorm(xp.baseAddress!, rows: x.count / d, dim: d, eps: eps, weight: nil, into: yp.baseAddress!)
                }
            }
        }
        return y
    }

    // MARK: adaptive modulation

    /// `x * (1 + scale) + shift` with one `[D]` shift and scale per batch item: `shift` and `scale`
    /// are rows of `[N, D]` tables (or of `[N, K·D]` tables at column offset `column`).
    public static func modulate(_ x: Tensor, shift: Tensor, scale: Tensor, shiftColumn: Int = 0, scaleColumn: Int = 0) -> Tensor {
        var y = x
        let n = x.shape[0], d = x.shape[x.shape.count - 1], rows = x.count / (n * d)
        let sw = shift.count / n, cw = scale.count / n
        y.data.withUnsafeMutableBufferPointer { yp in
            shift.data.withUnsafeBufferPointer { sp in
                scale.data.withUnsafeBufferPointer { cp in
                    for b in 0..<n {
                        Ops.modulate(yp.baseAddress! + b * rows * d, rows: rows, dim: d, shift: sp.baseAddress! + b * sw + shiftColumn,
                                     scale: cp.baseAddress! + b * cw + scaleColumn)
                    }
                }
            }
        }
        return y
    }

    /// `x + gate * y` with one `[D]` gate per batch item (a row of `gate`, at column offset `column`);
    /// without a gate, `x + y`.
    public static func residual(_ x: Tensor, _ y: Tensor, gate: Tensor? = nil, column: Int = 0) -> Tensor {
        var out = x
        guard let gate else {
            Ops.add(&out.data, y.data, count: out.count)
            return out
        }
        let n = x.shape[0], d = x.shape[x.shape.count - 1], rows = x.count / (n * d), gw = gate.count / n
        out.data.withUnsafeMutableBufferPointer { op in
            y.data.withUnsafeBufferPointer { yp in
                gate.data.withUnsafeBufferPointer { gp in
                    for b in 0..<n {
                        Ops.gatedAdd(op.baseAddress! + b * rows * d, yp.baseAddress! + b * rows * d, rows: rows, dim: d,
                                     gate: gp.baseAddress! + b * gw + column)
                    }
                }
            }
        }
        return out
    }

    /// Adds a `[rows, D]` table to each batch item's `[rows, D]` block (`table[None] + x`).
    public static func addBroadcast(_ x: Tensor, _ table: [Float]) -> Tensor {
        var y = x
        let n = x.shape[0], per = x.count / max(n, 1)
        precondition(table.count == per, "broadcast table of \(table.count) values over blocks of \(per)")
        y.data.withUnsafeMutableBufferPointer { yp in
            table.withUnsafeBufferPointer { tp in
                for b in 0..<n { Ops.add(yp.baseAddress! + b * per, tp.baseAddress!, count: per) }
            }
        }
        return y
    }

    // MARK: attention

    /// diffusers' `Attention` with `AttnProcessor2_0`: `to_q` of `x`, `to_k`/`to_v` of `context`
    /// (`x` itself for self-attention), scaled dot-product attention over `heads` heads with scale
    /// `headDim^-0.5` and an optional additive key bias `[N, kvTokens]`, then `to_out.0`.
    public static func attention(_ x: Tensor, context: Tensor? = nil, heads: Int, keyBias: [Float]? = nil,
                                 _ m: ModuleWeights) throws -> Tensor {
        let q = try linear(x, m["to_q"])
        let kv = context ?? x
        let k = try linear(kv, m["to_k"]), v = try linear(kv, m["to_v"])
        let out = try scaledDotProduct(q: q, k: k, v: v, heads: heads, keyBias: keyBias)
        return try linear(out, m["to_out"]["0"])
    }

    /// `softmax(q kᵀ / sqrt(hd) + bias) v` per head: `q` `[N, Tq, H·hd]`, `k`/`v` `[N, Tk, H·hd]`.
    public static func scaledDotProduct(q: Tensor, k: Tensor, v: Tensor, heads: Int, keyBias: [Float]? = nil) throws -> Tensor {
        let n = q.shape[0], tq = q.shape[1], d = q.shape[2], tk = k.shape[1]
        guard heads > 0, d % heads == 0, k.shape == [n, tk, d], v.shape == k.shape else {
            throw ModelError.inconsistent("attention shapes q \(q.shape), k \(k.shape), v \(v.shape) do not fit \(heads) heads")
        }
        if let keyBias, keyBias.count != n * tk { throw ModelError.inconsistent("attention mask has \(keyBias.count) values, expected \(n)×\(tk)") }
        let hd = d / heads
        var out = Tensor(zeros: [n, tq, d])
        q.data.withUnsafeBufferPointer { qp in
            k.data.withUnsafeBufferPointer { kp in
                v.data.withUnsafeBufferPointer { vp in
                    out.data.withUnsafeMutableBufferPointer { op in
                        func run(_ bias: UnsafePointer<Float>?) {
                            Attention.multiHead(q: qp.baseAddress!, qStride: d, qTokens: tq, k: kp.baseAddress!, v: vp.baseAddress!,
                                                kvStride: d, kvTokens: tk, batch: n, heads: heads, headDim: hd,
                                                scale: 1 / Float(hd).squareRoot(), keyBias: bias, into: op.baseAddress!)
                        }
                        if let keyBias { keyBias.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
                    }
                }
            }
        }
        return out
    }

    // MARK: embeddings

    /// diffusers' `get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift)` in float32:
    /// frequencies `exp(-ln(10000)·i / (dim/2 - shift))`, `[sin, cos]` (or `[cos, sin]` flipped).
    public static func timestepEmbedding(_ t: [Float], dim: Int, flipSinToCos: Bool, downscaleFreqShift: Float) -> Tensor {
        let half = dim / 2
        let c = Float(-log(10000.0))
        let freqs = (0..<half).map { expf((c * Float($0)) / (Float(half) - downscaleFreqShift)) }
        return Tensor(shape: [t.count, dim]) { out in
            for (n, tv) in t.enumerated() {
                let row = out + n * dim
                for i in 0..<half {
                    let a = tv * freqs[i]
                    row[flipSinToCos ? half + i : i] = sinf(a)
                    row[flipSinToCos ? i : half + i] = cosf(a)
                }
                if dim % 2 == 1 { row[dim - 1] = 0 }
            }
        }
    }

    /// diffusers' `TimestepEmbedding`: `linear_2(silu(linear_1(x)))`.
    public static func timestepMLP(_ x: Tensor, _ m: ModuleWeights) throws -> Tensor {
        try linear(silu(try linear(x, m["linear_1"])), m["linear_2"])
    }

    /// A `p×p` stride-`p` patch convolution (`proj`), flattened to tokens row-major:
    /// `[N, C, H, W]` -> `[N, (H/p)(W/p), D]`.
    public static func patchEmbed(_ x: Tensor, patch p: Int, _ proj: ModuleWeights) throws -> Tensor {
        guard x.shape.count == 4, p > 0, x.shape[2] % p == 0, x.shape[3] % p == 0 else {
            throw ModelError.inconsistent("patch embedding needs [N, C, H, W] with H and W multiples of \(p); got \(x.shape)")
        }
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
        let gh = h / p, gw = w / p, tokens = gh * gw
        return try proj.withFloats("weight") { wt -> Tensor in
            guard wt.count % (c * p * p) == 0 else { throw ModelError.inconsistent("'\(proj.path).weight' does not fit \(c) channels and patch \(p)") }
            let d = wt.count / (c * p * p)
            return try proj.withFloats("bias") { b -> Tensor in
                guard b.count == d else { throw ModelError.inconsistent("'\(proj.path).bias' has \(b.count) values, expected \(d)") }
                var conv = [Float](repeating: 0, count: n * d * tokens)
                x.data.withUnsafeBufferPointer { xp in
                    conv.withUnsafeMutableBufferPointer { out in
                        Convolution.conv2d(xp.baseAddress!, batch: n, channels: c, height: h, width: w, weight: wt.baseAddress!,
                                           outChannels: d, kernel: p, p, bias: b.baseAddress!, stride: p, padding: .same(0), into: out.baseAddress!)
                    }
                }
                return Tensor(shape: [n, tokens, d]) { out in
                    for b in 0..<n { for ch in 0..<d { for t in 0..<tokens { out[(b * tokens + t) * d + ch] = conv[(b * d + ch) * tokens + t] } } }
                }
            }
        }
    }

    /// `nhwpqc -> nchpwq`: tokens `[N, gh·gw, p·p·C]` back to images `[N, C, gh·p, gw·p]`.
    public static func unpatchify(_ x: Tensor, gridHeight gh: Int, gridWidth gw: Int, patch p: Int, channels oc: Int) -> Tensor {
        let n = x.shape[0], per = p * p * oc, tokens = gh * gw
        let hh = gh * p, ww = gw * p
        return Tensor(shape: [n, oc, hh, ww]) { out in
            for b in 0..<n {
                for hi in 0..<gh { for wi in 0..<gw {
                    let src = (b * tokens + hi * gw + wi) * per
                    for pi in 0..<p { for qi in 0..<p { for ch in 0..<oc {
                        out[((b * oc + ch) * hh + hi * p + pi) * ww + wi * p + qi] = x.data[src + (pi * p + qi) * oc + ch]
                    } } }
                } }
            }
        }
    }

    /// diffusers' `get_2d_sincos_pos_embed(D, (gh, gw), base_size, interpolation_scale)`: positions
    /// computed in float32 (`arange / (g / base) / scale`), sin and cos in float64, rounded once to
    /// float32. `[gh·gw, D]`, token `r·gw + c`; the first half encodes the column, the second the row.
    public static func sincosPositionEmbedding(dim: Int, gridHeight gh: Int, gridWidth gw: Int, baseSize: Int, interpolationScale: Double) -> [Float] {
        let half = dim / 2, quarter = half / 2
        let omega = (0..<quarter).map { 1.0 / pow(10000.0, Double($0) / (Double(half) / 2.0)) }
        func positions(_ g: Int) -> [Double] {
            // torch: arange(g, float32) / (g / base) / scale, each step rounded to float32.
            let ratio = Float(Double(g) / Double(baseSize))
            return (0..<g).map { Double((Float($0) / ratio) / Float(interpolationScale)) }
        }
        let ph = positions(gh), pw = positions(gw)
        var out = [Float](repeating: 0, count: gh * gw * dim)
        for r in 0..<gh {
            for c in 0..<gw {
                let base = (r * gw + c) * dim
                for (k, w) in omega.enumerated() {
                    out[base + k] = Float(sin(pw[c] * w))
                    out[base + quarter + k] = Float(cos(pw[c] * w))
                    out[base + half + k] = Float(sin(ph[r] * w))
                    out[base + half + quarter + k] = Float(cos(ph[r] * w))
                }
            }
        }
        return out
    }

    /// `x[:, :, rows]` chunks: the `k`-th of `parts` equal chunks of each batch item's `[.., D]`
    /// rows along the last dimension (`tensor.chunk(parts, dim=-1)[k]`).
    public static func chunk(_ x: Tensor, _ k: Int, of parts: Int) -> Tensor {
        let d = x.shape[x.shape.count - 1], w = d / parts, rows = x.count / d
        return Tensor(shape: Array(x.shape.dropLast()) + [w]) { out in
            for r in 0..<rows { for i in 0..<w { out[r * w + i] = x.data[r * d + k * w + i] } }
        }
    }

    /// Concatenation along the last dimension.
    public static func concatLast(_ xs: [Tensor]) -> Tensor {
        let rows = xs[0].count / xs[0].shape[xs[0].shape.count - 1]
        let widths = xs.map { $0.shape[$0.shape.count - 1] }
        let total = widths.reduce(0, +)
        return Tensor(shape: Array(xs[0].shape.dropLast()) + [total]) { out in
            for r in 0..<rows {
                var o = r * total
                for (x, w) in zip(xs, widths) {
                    for i in 0..<w { out[o + i] = x.data[r * w + i] }
                    o += w
                }
            }
        }
    }

    // MARK: joint attention (MMDiT: SD3, FLUX)

    /// Tokens `[N, Ta, D]` and `[N, Tb, D]` as one sequence `[N, Ta+Tb, D]` (`torch.cat(dim=1)`).
    public static func concatTokens(_ a: Tensor, _ b: Tensor) -> Tensor {
        let n = a.shape[0], ta = a.shape[1], tb = b.shape[1], d = a.shape[2]
        precondition(b.shape == [n, tb, d], "concatenating tokens \(a.shape) and \(b.shape)")
        return Tensor(shape: [n, ta + tb, d]) { out in
            a.data.withUnsafeBufferPointer { ap in
                b.data.withUnsafeBufferPointer { bp in
                    for i in 0..<n {
                        (out + (i * (ta + tb)) * d).update(from: ap.baseAddress! + i * ta * d, count: ta * d)
                        (out + (i * (ta + tb) + ta) * d).update(from: bp.baseAddress! + i * tb * d, count: tb * d)
                    }
                }
            }
        }
    }

    /// Tokens `start ..< start + count` of each batch item of `[N, T, D]` (`x[:, start:start+count]`).
    public static func tokens(_ x: Tensor, from start: Int, count: Int) -> Tensor {
        let n = x.shape[0], t = x.shape[1], d = x.shape[2]
        precondition(start >= 0 && start + count <= t, "tokens \(start)..<\(start + count) of \(t)")
        return Tensor(shape: [n, count, d]) { out in
            x.data.withUnsafeBufferPointer { xp in
                for i in 0..<n { (out + i * count * d).update(from: xp.baseAddress! + (i * t + start) * d, count: count * d) }
            }
        }
    }

    /// `f` applied to every head of `[..., H·hd]` as rows of `hd` values (diffusers' per-head
    /// `norm_q` / `norm_k` on `[N, H, T, hd]`, which normalise over the head dimension only).
    public static func perHead(_ x: Tensor, headDim hd: Int, _ f: (Tensor) throws -> Tensor) rethrows -> Tensor {
        try f(x.reshaped([x.count / hd, hd])).reshaped(x.shape)
    }

    /// diffusers' `Attention` with `JointAttnProcessor2_0`: `to_q`/`to_k`/`to_v` of `x` and, with a
    /// context, `add_q_proj`/`add_k_proj`/`add_v_proj` of it, each query and key passed through
    /// `qkNorm(projection, module)` when given (`norm_q`, `norm_k`, `norm_added_q`, `norm_added_k`),
    /// scaled dot-product attention over the tokens of `x` followed by those of the context, then
    /// `to_out.0` on the `x` part and, when `projectContext`, `to_add_out` on the context part.
    /// Returns `(x part, context part or nil)`.
    public static func jointAttention(_ x: Tensor, context: Tensor?, heads: Int, _ m: ModuleWeights,
                                      qkNorm: ((Tensor, ModuleWeights) throws -> Tensor)? = nil,
                                      projectContext: Bool = true) throws -> (Tensor, Tensor?) {
        func project(_ input: Tensor, _ q: String, _ k: String, _ v: String, _ nq: String, _ nk: String) throws -> (Tensor, Tensor, Tensor) {
            var qs = try linear(input, m[q]), ks = try linear(input, m[k])
            if let qkNorm {
                qs = try qkNorm(qs, m[nq])
                ks = try qkNorm(ks, m[nk])
            }
            return (qs, ks, try linear(input, m[v]))
        }
        var (q, k, v) = try project(x, "to_q", "to_k", "to_v", "norm_q", "norm_k")
        if let context {
            let (cq, ck, cv) = try project(context, "add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q", "norm_added_k")
            q = concatTokens(q, cq)
            k = concatTokens(k, ck)
            v = concatTokens(v, cv)
        }
        let out = try scaledDotProduct(q: q, k: k, v: v, heads: heads)
        let tx = x.shape[1]
        let xs = try linear(tokens(out, from: 0, count: tx), m["to_out"]["0"])
        guard let context else { return (xs, nil) }
        let cs = tokens(out, from: tx, count: context.shape[1])
        return (xs, projectContext ? try linear(cs, m["to_add_out"]) : cs)
    }

    /// diffusers' `AdaLayerNormContinuous` (LayerNorm without affine): `emb = linear(silu(c))`,
    /// `scale, shift = emb.chunk(2)`, `norm(x) · (1 + scale) + shift`. `x` `[N, T, D]`, `c` `[N, C]`.
    public static func adaLayerNormContinuous(_ x: Tensor, conditioning c: Tensor, eps: Double, _ m: ModuleWeights) throws -> Tensor {
        let emb = try linear(silu(c), m["linear"])
        let d = x.shape[x.shape.count - 1]
        guard emb.count == 2 * d * x.shape[0] else { throw ModelError.inconsistent("'\(m.path).linear' gives \(emb.shape), expected [\(x.shape[0]), \(2 * d)]") }
        return modulate(try layerNorm(x, eps: eps), shift: emb, scale: emb, shiftColumn: d, scaleColumn: 0)
    }
}

// MARK: - FLUX.1 building blocks (adaLN-Zero, GELU feed-forward, rotary embeddings)

extension Layers {
    /// diffusers' `AdaLayerNormZero` / `AdaLayerNormZeroSingle` (`norm_type="layer_norm"`): the
    /// modulation `linear(silu(emb))` (`siluEmb` is `silu(emb)`, `[N, E]`) as an `[N, chunks·D]`
    /// table, and `LayerNorm(x, eps 1e-6, no affine) · (1 + scale) + shift` with shift and scale its
    /// first two column blocks. The other blocks (gates, the MLP's shift and scale) stay in the table.
    public static func adaLayerNormZero(_ x: Tensor, siluEmb: Tensor, chunks: Int, _ m: ModuleWeights) throws -> (Tensor, modulation: Tensor) {
        let d = x.shape[x.shape.count - 1]
        let mod = try linear(siluEmb, m["linear"])
        guard mod.shape.last == chunks * d else { throw ModelError.inconsistent("'\(m.path).linear' gives \(mod.shape), expected \(chunks)·\(d) columns") }
        return (modulate(try layerNorm(x, eps: 1e-6), shift: mod, scale: mod, shiftColumn: 0, scaleColumn: d), mod)
    }

    /// diffusers' `FeedForward(activation_fn="gelu-approximate")`: `net.2(gelu_tanh(net.0.proj(x)))`.
    public static func feedForwardGELU(_ x: Tensor, _ m: ModuleWeights) throws -> Tensor {
        try linear(geluTanh(try linear(x, m["net"]["0"]["proj"])), m["net"]["2"])
    }

    /// diffusers' `FluxPosEmbed(theta, axes_dim)` of position ids `[S, axes]`: per axis of width
    /// `dᵢ`, frequencies `1 / θ^(2j/dᵢ)` and angles `pos · freq` in float64, cos and sin rounded to
    /// float32 and each repeated twice (`repeat_interleave_real`), axes concatenated: `[S, Σdᵢ]` each.
    public static func rotaryEmbedding(ids: [Float], axes: [Int], theta: Int) -> (cos: [Float], sin: [Float]) {
        let width = axes.reduce(0, +), n = axes.count
        let s = n > 0 ? ids.count / n : 0
        var cosOut = [Float](repeating: 0, count: s * width), sinOut = cosOut
        var offset = 0
        for (a, dim) in axes.enumerated() {
            let freqs = stride(from: 0, to: dim, by: 2).map { 1.0 / pow(Double(theta), Double($0) / Double(dim)) }
            for p in 0..<s {
                let pos = Double(ids[p * n + a])
                for (j, f) in freqs.enumerated() {
                    let angle = pos * f
                    let c = Float(cos(angle)), sn = Float(sin(angle))
                    let o = p * width + offset + 2 * j
                    cosOut[o] = c; cosOut[o + 1] = c
                    sinOut[o] = sn; sinOut[o + 1] = sn
                }
            }
            offset += dim
        }
        return (cosOut, sinOut)
    }

    /// diffusers' `apply_rotary_emb(x, (cos, sin), sequence_dim=1)` with `use_real_unbind_dim=-1`
    /// (FLUX): each head's pairs `(x₂ⱼ, x₂ⱼ₊₁)` become `(x₂ⱼ·cos − x₂ⱼ₊₁·sin, x₂ⱼ₊₁·cos + x₂ⱼ·sin)`.
    /// `x` is `[N, S, H·hd]`; `cos`, `sin` are `[S, hd]`.
    public static func applyRotary(_ x: Tensor, cos: [Float], sin: [Float], headDim hd: Int) throws -> Tensor {
        let n = x.shape[0], s = x.shape[1], d = x.shape[2]
        guard hd > 0, hd % 2 == 0, d % hd == 0, cos.count == s * hd, sin.count == s * hd else {
            throw ModelError.inconsistent("rotary embedding of \(cos.count / max(hd, 1)) positions × \(hd) does not fit \(x.shape)")
        }
        let heads = d / hd
        var y = x
        y.data.withUnsafeMutableBufferPointer { yp in
            cos.withUnsafeBufferPointer { cp in
                sin.withUnsafeBufferPointer { sp in
                    for b in 0..<n {
                        for t in 0..<s {
                            let c = cp.baseAddress! + t * hd, sn = sp.baseAddress! + t * hd
                            for h in 0..<heads {
                                let p = yp.baseAddress! + (b * s + t) * d + h * hd
                                var j = 0
                                while j < hd {
                                    let re = p[j], im = p[j + 1]
                                    let a = re * c[j], b2 = im * sn[j]
                                    let e = im * c[j + 1], f = re * sn[j + 1]
                                    p[j] = a - b2
                                    p[j + 1] = e + f
                                    j += 2
                                }
                            }
                        }
                    }
                }
            }
        }
        return y
    }
}
