// Port of the Stable Diffusion autoencoder (LDM `model.py` ≡ diffusers AutoencoderKL) forward
// passes, on DiTKitNumerics / OpenBLAS.
//
// GroupNorm(32, eps 1e-6) with affine, SiLU, ResNet blocks (norm-SiLU-conv twice, 1×1 conv
// shortcut when channels change), downsampling by right/bottom zero padding and a stride-2 3×3
// conv, nearest ×2 upsampling then a 3×3 conv, single-head mid attention over HW tokens with
// scale C^-0.5 and a residual, quant_conv / post_quant_conv 1×1.
import DiTKitCore
import DiTKitNumerics

/// An SD-style VAE with its weights. Images are `[N, 3, H, W]` in [-1, 1]; latents `[N, 4, H/8, W/8]`.
public struct VAEModel: Sendable {
    public let config: VAEConfiguration
    public let weights: any WeightStore

    public init(config: VAEConfiguration, weights: any WeightStore) {
        self.config = config
        self.weights = weights
    }

    // MARK: layers

    func conv(_ x: Tensor, _ prefix: String, out cout: Int, kernel: Int, stride: Int = 1, padding: Padding) throws -> Tensor {
        let n = x.shape[0], cin = x.shape[1], h = x.shape[2], w = x.shape[3]
        let oh = Convolution.outputSize(h, kernel: kernel, stride: stride, padBefore: padding.top, padAfter: padding.bottom)
        let ow = Convolution.outputSize(w, kernel: kernel, stride: stride, padBefore: padding.left, padAfter: padding.right)
        var y = Tensor(zeros: [n, cout, oh, ow])
        try weights.withFloats(prefix + ".weight") { wt in
            try weights.withFloats(prefix + ".bias") { b in
                guard wt.count == cout * cin * kernel * kernel, b.count == cout else {
                    throw ModelError.inconsistent("'\(prefix)' does not fit a \(cin)->\(cout) \(kernel)x\(kernel) convolution")
                }
                x.data.withUnsafeBufferPointer { xp in
                    y.data.withUnsafeMutableBufferPointer { yp in
                        Convolution.conv2d(xp.baseAddress!, batch: n, channels: cin, height: h, width: w, weight: wt.baseAddress!,
                                           outChannels: cout, kernel: kernel, kernel, bias: b.baseAddress!, stride: stride,
                                           padding: padding, into: yp.baseAddress!)
                    }
                }
            }
        }
        return y
    }

    func groupNorm(_ x: Tensor, _ prefix: String, silu: Bool) throws -> Tensor {
        let n = x.shape[0], c = x.shape[1], hw = x.shape[2] * x.shape[3]
        var y = Tensor(zeros: x.shape)
        try weights.withFloats(prefix + ".weight") { g in
            try weights.withFloats(prefix + ".bias") { b in
                guard g.count == c, b.count == c else { throw ModelError.inconsistent("'\(prefix)' does not fit \(c) channels") }
                x.data.withUnsafeBufferPointer { xp in
                    y.data.withUnsafeMutableBufferPointer { yp in
                        Ops.groupNorm(xp.baseAddress!, batch: n, channels: c, spatial: hw, groups: config.normNumGroups,
                                      eps: Float(config.normEps), gamma: g.baseAddress!, beta: b.baseAddress!, into: yp.baseAddress!)
                    }
                }
            }
        }
        if silu { Ops.silu(&y.data, count: y.count) }
        return y
    }

    func resnet(_ x: Tensor, _ prefix: String, out cout: Int) throws -> Tensor {
        var h = try groupNorm(x, prefix + ".norm1", silu: true)
        h = try conv(h, prefix + ".conv1", out: cout, kernel: 3, padding: .same(1))
        h = try groupNorm(h, prefix + ".norm2", silu: true)
        h = try conv(h, prefix + ".conv2", out: cout, kernel: 3, padding: .same(1))
        let shortcut = x.shape[1] == cout ? x : try conv(x, prefix + ".conv_shortcut", out: cout, kernel: 1, padding: .same(0))
        Ops.add(&h.data, shortcut.data, count: h.count)
        return h
    }

    func attention(_ x: Tensor, _ prefix: String) throws -> Tensor {
        let n = x.shape[0], c = x.shape[1], hw = x.shape[2] * x.shape[3]
        let normed = try groupNorm(x, prefix + ".group_norm", silu: false)
        // [N, C, HW] -> tokens [N, HW, C]
        let tokens = Tensor(shape: [n, hw, c]) { out in
            for b in 0..<n { for ch in 0..<c { for i in 0..<hw { out[(b * hw + i) * c + ch] = normed.data[(b * c + ch) * hw + i] } } }
        }
        var qkv = Tensor(zeros: [n, hw, 3 * c])
        for (k, name) in ["to_q", "to_k", "to_v"].enumerated() {
            try weights.withFloats("\(prefix).\(name).weight") { w in
                try weights.withFloats("\(prefix).\(name).bias") { b in
                    guard w.count == c * c, b.count == c else { throw ModelError.inconsistent("'\(prefix).\(name)' does not fit \(c) channels") }
                    tokens.data.withUnsafeBufferPointer { tp in
                        qkv.data.withUnsafeMutableBufferPointer { qp in
                            Gemm.multiply(tp.baseAddress!, w.baseAddress!, qp.baseAddress! + k * c, m: n * hw, n: c, k: c, transB: true, ldc: 3 * c)
                            for r in 0..<(n * hw) { for ch in 0..<c { qp[r * 3 * c + k * c + ch] += b[ch] } }
                        }
                    }
                }
            }
        }
        var attended = Tensor(zeros: [n, hw, c])
        qkv.data.withUnsafeBufferPointer { q in
            attended.data.withUnsafeMutableBufferPointer { o in
                Attention.multiHead(q: q.baseAddress!, k: q.baseAddress! + c, v: q.baseAddress! + 2 * c, rowStride: 3 * c,
                                    batch: n, tokens: hw, heads: 1, headDim: c, scale: 1 / Float(c).squareRoot(), into: o.baseAddress!)
            }
        }
        var projected = Tensor(zeros: [n, hw, c])
        try weights.withFloats(prefix + ".to_out.0.weight") { w in
            try weights.withFloats(prefix + ".to_out.0.bias") { b in
                guard w.count == c * c, b.count == c else { throw ModelError.inconsistent("'\(prefix).to_out.0' does not fit \(c) channels") }
                Ops.linear(attended.data, rows: n * hw, inFeatures: c, weight: w.baseAddress!, bias: b.baseAddress!, outFeatures: c, into: &projected.data)
            }
        }
        // Back to [N, C, H, W], plus the residual.
        return Tensor(shape: x.shape) { out in
            for b in 0..<n { for ch in 0..<c { for i in 0..<hw {
                out[(b * c + ch) * hw + i] = projected.data[(b * hw + i) * c + ch] + x.data[(b * c + ch) * hw + i]
            } } }
        }
    }

    func midBlock(_ x: Tensor, _ prefix: String) throws -> Tensor {
        let c = x.shape[1]
        var h = try resnet(x, prefix + ".resnets.0", out: c)
        if config.midAttention { h = try attention(h, prefix + ".attentions.0") }
        return try resnet(h, prefix + ".resnets.1", out: c)
    }

    // MARK: passes

    /// `decode(z)`: latents `[N, latent, h, w]` (already divided by the scaling factor) to images `[N, out, 8h, 8w]`.
    public func decode(_ z: Tensor, trace: LayerTrace? = nil) throws -> Tensor {
        let c = config
        guard z.shape.count == 4, z.shape[1] == c.latentChannels else {
            throw ModelError.inconsistent("VAE decode input must be [N, \(c.latentChannels), h, w]; got \(z.shape)")
        }
        var h = z
        if c.usePostQuantConv {
            h = try conv(h, "post_quant_conv", out: c.latentChannels, kernel: 1, padding: .same(0))
            try trace?("post_quant_conv", h)
        }
        let reversed = Array(c.blockOutChannels.reversed())
        h = try conv(h, "decoder.conv_in", out: reversed[0], kernel: 3, padding: .same(1))
        try trace?("decoder.conv_in", h)
        h = try midBlock(h, "decoder.mid_block")
        try trace?("decoder.mid_block", h)
        for (k, cout) in reversed.enumerated() {
            for j in 0...c.layersPerBlock { h = try resnet(h, "decoder.up_blocks.\(k).resnets.\(j)", out: cout) }
            if k < reversed.count - 1 {
                var up = Tensor(zeros: [h.shape[0], cout, h.shape[2] * 2, h.shape[3] * 2])
                h.data.withUnsafeBufferPointer { hp in
                    up.data.withUnsafeMutableBufferPointer { upp in
                        Ops.upsampleNearest2x(hp.baseAddress!, planes: h.shape[0] * cout, height: h.shape[2], width: h.shape[3], into: upp.baseAddress!)
                    }
                }
                h = try conv(up, "decoder.up_blocks.\(k).upsamplers.0.conv", out: cout, kernel: 3, padding: .same(1))
            }
            try trace?("decoder.up_blocks.\(k)", h)
        }
        h = try groupNorm(h, "decoder.conv_norm_out", silu: false)
        try trace?("decoder.conv_norm_out", h)
        Ops.silu(&h.data, count: h.count)
        h = try conv(h, "decoder.conv_out", out: c.outChannels, kernel: 3, padding: .same(1))
        try trace?("decoder.conv_out", h)
        return h
    }

    /// `encode(x)`: images `[N, in, H, W]` (H, W multiples of 2^(levels-1)) to the moments
    /// `[N, 2·latent, H/8, W/8]` (mean, then logvar), after quant_conv.
    public func encode(_ x: Tensor, trace: LayerTrace? = nil) throws -> Tensor {
        let c = config
        guard x.shape.count == 4, x.shape[1] == c.inChannels, x.shape[2] % c.downsampleFactor == 0, x.shape[3] % c.downsampleFactor == 0 else {
            throw ModelError.inconsistent("VAE encode input must be [N, \(c.inChannels), H, W] with H and W multiples of \(c.downsampleFactor); got \(x.shape)")
        }
        var h = try conv(x, "encoder.conv_in", out: c.blockOutChannels[0], kernel: 3, padding: .same(1))
        try trace?("encoder.conv_in", h)
        for (i, cout) in c.blockOutChannels.enumerated() {
            for j in 0..<c.layersPerBlock { h = try resnet(h, "encoder.down_blocks.\(i).resnets.\(j)", out: cout) }
            if i < c.blockOutChannels.count - 1 {
                // F.pad(x, (0, 1, 0, 1)) then a stride-2 3×3 conv without padding.
                h = try conv(h, "encoder.down_blocks.\(i).downsamplers.0.conv", out: cout, kernel: 3, stride: 2,
                             padding: Padding(top: 0, left: 0, bottom: 1, right: 1))
            }
            try trace?("encoder.down_blocks.\(i)", h)
        }
        h = try midBlock(h, "encoder.mid_block")
        try trace?("encoder.mid_block", h)
        h = try groupNorm(h, "encoder.conv_norm_out", silu: false)
        try trace?("encoder.conv_norm_out", h)
        Ops.silu(&h.data, count: h.count)
        h = try conv(h, "encoder.conv_out", out: 2 * c.latentChannels, kernel: 3, padding: .same(1))
        try trace?("encoder.conv_out", h)
        if c.useQuantConv {
            h = try conv(h, "quant_conv", out: 2 * c.latentChannels, kernel: 1, padding: .same(0))
            try trace?("quant_conv", h)
        }
        return h
    }
}
