// Sampling FLUX.1 as diffusers' FluxPipeline does: 16-channel latents packed into 2×2 patches
// ([N, 16, h, w] -> [N, (h/2)(w/2), 64]), img_ids (0, row, col), txt_ids zeros, flow matching with
// FlowMatchEulerDiscreteScheduler's sigmas (FLUX.1-dev: the resolution-dependent shift μ from the
// packed sequence length; FLUX.1-schnell: unshifted), the model fed t/1000 and, for dev, the
// guidance value as its guidance embedding (one pass per step, no second unconditional pass), an
// Euler step in float32, and the final latents unpacked.
import DiTKitCore
import DiTKitFormats
import DiTKitNumerics

/// FluxPipeline's `_pack_latents` / `_unpack_latents` and `_prepare_latent_image_ids`.
public enum FluxPacking {
    /// `[N, C, h, w]` -> `[N, (h/2)(w/2), 4C]`: token (r, c) holds, for each channel, its 2×2 patch
    /// row-major (`view(N, C, h/2, 2, w/2, 2).permute(0, 2, 4, 1, 3, 5)`).
    public static func pack(_ x: Tensor) throws -> Tensor {
        guard x.shape.count == 4, x.shape[2] % 2 == 0, x.shape[3] % 2 == 0 else {
            throw ModelError.inconsistent("FLUX latents must be [N, C, h, w] with even h and w; got \(x.shape)")
        }
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3], rows = h / 2, cols = w / 2
        return Tensor(shape: [n, rows * cols, 4 * c]) { out in
            for b in 0..<n { for r in 0..<rows { for q in 0..<cols { for ch in 0..<c { for dy in 0..<2 { for dx in 0..<2 {
                out[((b * rows + r) * cols + q) * 4 * c + ch * 4 + dy * 2 + dx] = x.data[((b * c + ch) * h + 2 * r + dy) * w + 2 * q + dx]
            } } } } } }
        }
    }

    /// The inverse of `pack`: `[N, (h/2)(w/2), 4C]` -> `[N, C, h, w]`.
    public static func unpack(_ x: Tensor, height h: Int, width w: Int) throws -> Tensor {
        let n = x.shape[0], rows = h / 2, cols = w / 2
        guard x.shape.count == 3, h % 2 == 0, w % 2 == 0, x.shape[1] == rows * cols, x.shape[2] % 4 == 0 else {
            throw ModelError.inconsistent("packed FLUX latents \(x.shape) do not unpack to \(h)×\(w)")
        }
        let c = x.shape[2] / 4
        return Tensor(shape: [n, c, h, w]) { out in
            for b in 0..<n { for r in 0..<rows { for q in 0..<cols { for ch in 0..<c { for dy in 0..<2 { for dx in 0..<2 {
                out[((b * c + ch) * h + 2 * r + dy) * w + 2 * q + dx] = x.data[((b * rows + r) * cols + q) * 4 * c + ch * 4 + dy * 2 + dx]
            } } } } } }
        }
    }

    /// `_prepare_latent_image_ids(h/2, w/2)`: `[rows·cols, 3]` rows (0, row, col), row-major.
    public static func imageIds(rows: Int, cols: Int) -> [Float] {
        var ids = [Float](repeating: 0, count: rows * cols * 3)
        for r in 0..<rows { for q in 0..<cols { ids[(r * cols + q) * 3 + 1] = Float(r); ids[(r * cols + q) * 3 + 2] = Float(q) } }
        return ids
    }
}

/// Text features from an HDF5 file written with FluxPipeline's `encode_prompt` (README, "FLUX.1").
public struct FluxText: Sendable {
    /// T5 features `[N, L, joint_attention_dim]`.
    public var features: Tensor
    /// Pooled CLIP features `[N, pooled_projection_dim]`.
    public var pooled: Tensor

    /// Reads `/encoder_hidden_states` (float32 [N, L, C]) and `/pooled_projections` ([N, P]).
    public static func read(_ path: String, configuration c: FluxConfiguration) throws -> FluxText {
        try FileError.wrapping(path) {
            let f = try HDF5Snapshot.read(path)
            let (shape, values) = try f.readFloats("/encoder_hidden_states")
            guard shape.count == 3, shape[0] > 0, shape[1] > 0, shape[2] == c.jointAttentionDim else {
                throw HDF5Error.badDataset("/encoder_hidden_states", "must be float32 [N, L, \(c.jointAttentionDim)]; it is \(shape)")
            }
            guard f.exists("/pooled_projections") else {
                throw HDF5Error.badDataset("/pooled_projections", "is missing: FLUX needs the pooled CLIP features [N, \(c.pooledProjectionDim)]")
            }
            let (ps, pv) = try f.readFloats("/pooled_projections")
            guard ps == [shape[0], c.pooledProjectionDim] else {
                throw HDF5Error.badDataset("/pooled_projections", "must be float32 [\(shape[0]), \(c.pooledProjectionDim)]; it is \(ps)")
            }
            return FluxText(features: Tensor(shape: shape, data: values), pooled: Tensor(shape: ps, data: pv))
        }
    }
}

/// FLUX.1 + flow matching for a batch of prompts.
public struct FluxSampler: LatentSampler {
    public let model: FluxModel
    public let text: FluxText
    public let schedule: FlowMatchSchedule
    /// The guidance embedding's value (guidance-distilled models), nil for schnell-like models.
    public let guidance: Float?
    public let imageSize: Int
    /// The resolution-dependent shift (FLUX.1-dev-like models), nil when unshifted.
    public let mu: Double?

    /// FLUX.1-dev-like models (a guidance embedding) default to 28 steps and guidance 3.5, with the
    /// resolution-dependent shift; schnell-like models to 4 steps, unshifted, without guidance.
    /// `options.steps` is a step count; steps and guidance the user did not give take those defaults.
    public init(model: FluxModel, text: FluxText, options: SamplingOptions, imageSize: Int) throws {
        let c = model.config
        guard imageSize > 0, imageSize % 16 == 0 else {
            throw ModelError.inconsistent("FLUX image size \(imageSize) must be a multiple of 16 (8× VAE, 2×2 packing)")
        }
        let guided = c.guidanceEmbeds
        if options.ddim { throw ModelError.needsOption("FLUX samples with flow matching (Euler); DDIM does not apply: drop --sampler") }
        if !guided && options.cfgGiven {
            throw ModelError.needsOption("this FLUX model (schnell-like: no guidance embedding) samples without guidance: drop --cfg")
        }
        let steps: Int
        if options.stepsGiven {
            guard let v = Int(options.steps), v > 0 else { throw ModelError.inconsistent("FLUX takes a step count (--steps 28); got '\(options.steps)'") }
            steps = v
        } else {
            steps = guided ? 28 : 4
        }
        self.model = model
        self.text = text
        self.imageSize = imageSize
        let tokens = (imageSize / 16) * (imageSize / 16)
        mu = guided ? FlowMatchSchedule.mu(imageSequenceLength: tokens) : nil
        schedule = try FlowMatchSchedule.dynamic(steps: steps, mu: mu)
        guidance = guided ? (options.cfgGiven ? options.cfgScale : 3.5) : nil
    }

    public var latentShape: [Int] { [text.features.shape[0], model.config.latentChannels, imageSize / 8, imageSize / 8] }
    public var labels: [String] { (0..<text.features.shape[0]).map { "prompt\($0)" } }
    public var summary: SamplerSummary {
        SamplerSummary(method: "flow-euler", steps: schedule.steps, cfgScale: nil, embeddedGuidance: guidance,
                       schedule: mu.map { "mu \(($0 * 100).rounded() / 100)" } ?? "")
    }

    /// Samples latents `[N, 16, h, w]` from `noise` of that shape (packed before the loop,
    /// unpacked after it).
    public func sample(noise: Tensor, progress: ProgressReporter? = nil) throws -> Tensor {
        try checkNoise(noise)
        let n = latentShape[0], h = latentShape[2], w = latentShape[3]
        var x = try FluxPacking.pack(noise)
        let imgIds = FluxPacking.imageIds(rows: h / 2, cols: w / 2)
        let txtIds = [Float](repeating: 0, count: text.features.shape[1] * 3)
        let g = guidance.map { [Float](repeating: $0, count: n) }
        progress?.begin("sampling", total: schedule.steps, unit: .steps)
        for i in 0..<schedule.steps {
            // The pipeline passes timestep / 1000 (t = σ·1000 in float32); the model multiplies by 1000 again.
            let t = [Float](repeating: schedule.timesteps[i] / 1000, count: n)
            let v = try model.forward(hiddenStates: x, encoderHiddenStates: text.features, pooledProjections: text.pooled,
                                      timestep: t, imgIds: imgIds, txtIds: txtIds, guidance: g)
            schedule.step(x: &x.data, velocity: v.data, index: i)
            progress?.advance(1)
        }
        progress?.finish()
        return try FluxPacking.unpack(x, height: h, width: w)
    }
}
