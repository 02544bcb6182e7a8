// Sampling PixArt: the Gaussian diffusion of DiT (linear betas, respacing, learned-range variance,
// DDPM or DDIM), conditioned on precomputed T5 caption features, with classifier-free guidance on
// every epsilon channel as diffusers' PixArt pipeline applies it. The unconditional branch uses
// the negative features of the captions file when it has them, else the model's null caption
// (`y_embedding`) under the prompt's mask, as the original PixArt sampling code does.
import DiTKitCore
import DiTKitFormats
import DiTKitNumerics

/// Caption features from an HDF5 file written by diffusers' `encode_prompt` (README, "PixArt").
public struct PixArtCaptions: Sendable {
    /// `[N, L, caption_channels]`.
    public var features: Tensor
    /// `[N, L]`, 1 keep, 0 discard.
    public var mask: Tensor
    /// Negative (unconditional) features and mask, `[N, L, C]` and `[N, L]`, when the file has them.
    public var negative: Tensor?
    public var negativeMask: Tensor?

    /// Reads `/encoder_hidden_states` (float32 [N, L, C]), optional `/encoder_attention_mask` [N, L]
    /// (all ones when absent), optional `/negative_encoder_hidden_states` ([N or 1, L, C]) and
    /// `/negative_encoder_attention_mask`.
    public static func read(_ path: String, configuration c: PixArtConfiguration) throws -> PixArtCaptions {
        try FileError.wrapping(path) {
            let f = try HDF5Snapshot.read(path)
            let (shape, values) = try f.readFloats("/encoder_hidden_states")
            guard shape.count == 3, shape[0] > 0, shape[1] > 0, shape[2] == c.captionChannels else {
                throw HDF5Error.badDataset("/encoder_hidden_states", "must be float32 [N, L, \(c.captionChannels)]; it is \(shape)")
            }
            let n = shape[0], l = shape[1]
            func mask(_ p: String, rows: Int) throws -> Tensor {
                guard f.exists(p) else { return Tensor(shape: [rows, l], data: Array(repeating: 1, count: rows * l)) }
                let (ms, mv) = try f.readFloats(p)
                guard ms.count == 2, ms[0] == rows, ms[1] == l, mv.allSatisfy({ $0 == 0 || $0 == 1 }) else {
                    throw HDF5Error.badDataset(p, "must be [\(rows), \(l)] of 0 and 1; it is \(ms)")
                }
                return Tensor(shape: ms, data: mv)
            }
            var captions = PixArtCaptions(features: Tensor(shape: shape, data: values), mask: try mask("/encoder_attention_mask", rows: n))
            if f.exists("/negative_encoder_hidden_states") {
                var (ns, nv) = try f.readFloats("/negative_encoder_hidden_states")
                guard ns.count == 3, ns[0] == n || ns[0] == 1, ns[1] == l, ns[2] == c.captionChannels else {
                    throw HDF5Error.badDataset("/negative_encoder_hidden_states", "must be float32 [\(n) or 1, \(l), \(c.captionChannels)]; it is \(ns)")
                }
                var nm = try mask("/negative_encoder_attention_mask", rows: ns[0])
                if ns[0] == 1 && n > 1 {
                    nv = Array((0..<n).map { _ in nv }.joined())
                    nm = Tensor(shape: [n, l], data: Array((0..<n).map { _ in nm.data }.joined()))
                    ns[0] = n
                }
                captions.negative = Tensor(shape: ns, data: nv)
                captions.negativeMask = nm
            }
            return captions
        }
    }
}

/// PixArt + diffusion for a batch of captions.
public struct PixArtSampler: LatentSampler {
    public let model: PixArtModel
    public let captions: PixArtCaptions
    public let diffusion: GaussianDiffusion
    public let options: SamplingOptions
    public let imageSize: Int

    public init(model: PixArtModel, captions: PixArtCaptions, options: SamplingOptions, imageSize: Int) throws {
        let c = model.config
        guard c.learnSigma else { throw ModelError.inconsistent("sampling needs a learned-sigma PixArt (\(2 * c.inChannels) output channels)") }
        guard imageSize > 0, imageSize % (8 * c.patchSize) == 0 else {
            throw ModelError.inconsistent("image size \(imageSize) must be a multiple of \(8 * c.patchSize)")
        }
        self.model = model
        self.captions = captions
        self.options = options
        self.imageSize = imageSize
        diffusion = try GaussianDiffusion(respacing: options.steps)
    }

    public var latentShape: [Int] { [captions.features.shape[0], model.config.inChannels, imageSize / 8, imageSize / 8] }
    public var labels: [String] { (0..<captions.features.shape[0]).map { "caption\($0)" } }
    public var summary: SamplerSummary {
        SamplerSummary(method: options.ddim ? "ddim" : "ddpm", steps: diffusion.steps, cfgScale: options.cfgScale)
    }

    /// The unconditional features and mask: the file's negative ones, else the null caption
    /// broadcast over the batch with the prompt's mask.
    func unconditional() throws -> (Tensor, Tensor) {
        if let neg = captions.negative, let m = captions.negativeMask { return (neg, m) }
        let c = model.config
        let n = captions.features.shape[0], l = captions.features.shape[1]
        guard let tokens = c.nullCaptionTokens else {
            throw ModelError.needsOption("guidance needs an unconditional caption: this model has no null caption (diffusers folders do not carry it); add /negative_encoder_hidden_states to the captions file or sample with --cfg 1")
        }
        guard tokens == l else {
            throw ModelError.inconsistent("the captions have \(l) tokens but the null caption has \(tokens); pad the captions to \(tokens) tokens or give /negative_encoder_hidden_states")
        }
        let null = try model.weights.floats(PixArtNaming.nullCaption)
        return (Tensor(shape: [n, l, c.captionChannels], data: Array((0..<n).map { _ in null }.joined())), captions.mask)
    }

    /// Samples latents from `noise` (`[N, C, S, S]`, one per caption). DDPM noise comes from
    /// `SeededRandom(seed + 1)`, one draw of `[N, C, S, S]` per step.
    public func sample(noise: Tensor, progress: ProgressReporter? = nil) throws -> Tensor {
        try checkNoise(noise)
        let c = model.config
        let n = latentShape[0], ch = c.inChannels, plane = latentShape[2] * latentShape[3]
        let guided = options.cfgScale > 1
        var y = captions.features, mask = captions.mask
        if guided {
            let (u, um) = try unconditional()
            y = Tensor(shape: [2 * n] + Array(y.shape.dropFirst()), data: y.data + u.data)
            mask = Tensor(shape: [2 * n, mask.shape[1]], data: mask.data + um.data)
        }
        let batch = guided ? 2 * n : n
        var resolution: Tensor?, aspect: Tensor?
        if c.useAdditionalConditions {
            resolution = Tensor(shape: [batch, 2], data: Array(repeating: Float(imageSize), count: 2 * batch))
            aspect = Tensor(shape: [batch, 1], data: Array(repeating: 1, count: batch))
        }
        var x = noise
        var rng = SeededRandom(seed: options.seed &+ 1)
        let per = 2 * ch * plane
        progress?.begin("sampling", total: diffusion.steps, unit: .steps)
        for i in stride(from: diffusion.steps - 1, through: 0, by: -1) {
            let t = [Float](repeating: Float(diffusion.timestepMap[i]), count: batch)
            let input = guided ? Tensor(shape: [batch] + Array(x.shape.dropFirst()), data: x.data + x.data) : x
            var out = try model.forward(hiddenStates: input, encoderHiddenStates: y, timestep: t, encoderAttentionMask: mask,
                                        resolution: resolution, aspectRatio: aspect)
            if guided {
                // eps = uncond + s·(cond − uncond) on every epsilon channel; variance from the conditional half.
                for b in 0..<n {
                    for k in 0..<(ch * plane) {
                        let cond = out.data[b * per + k], uncond = out.data[(b + n) * per + k]
                        out.data[b * per + k] = uncond + options.cfgScale * (cond - uncond)
                    }
                }
                out = Tensor(shape: [n] + Array(out.shape.dropFirst()), data: Array(out.data.prefix(n * per)))
            }
            let stepNoise = options.ddim ? nil : rng.normals(x.count)
            x.data = diffusion.step(x: x.data, output: out.data, channels: ch, plane: plane, batch: n, index: i, ddim: options.ddim, noise: stepNoise)
            progress?.advance(1)
        }
        progress?.finish()
        return x
    }
}
