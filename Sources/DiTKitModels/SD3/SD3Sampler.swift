// Sampling SD3 / SD3.5 as diffusers' StableDiffusion3Pipeline does: FlowMatchEulerDiscreteScheduler
// with the releases' static shift 3.0, the model's velocity v = ε − x₀ at timestep σ·1000, Euler
// steps x ← x + (σ_next − σ)·v, classifier-free guidance on the whole output against negative text
// features (the pipeline's batch is [negative; positive]). Text encoders are out of scope: the
// features come precomputed from an HDF5 file (README, "SD3").
import DiTKitCore
import DiTKitFormats
import DiTKitNumerics

/// Text features from an HDF5 file written from the pipeline's `encode_prompt` (README, "SD3").
public struct SD3TextFeatures: Sendable {
    /// `[N, L, joint_attention_dim]`.
    public var encoderHiddenStates: Tensor
    /// `[N, pooled_projection_dim]`.
    public var pooledProjections: Tensor
    /// Negative features and pooled projections, `[N, L, D]` and `[N, P]`, when the file has them.
    public var negativeEncoderHiddenStates: Tensor?
    public var negativePooledProjections: Tensor?

    /// Reads `/encoder_hidden_states` (float32 [N, L, joint_attention_dim]), `/pooled_projections`
    /// ([N, pooled_projection_dim]) and, for guidance, `/negative_encoder_hidden_states` ([N or 1, L, D])
    /// with `/negative_pooled_projections` ([N or 1, P]); a single negative row serves every prompt.
    public static func read(_ path: String, configuration c: SD3Configuration) throws -> SD3TextFeatures {
        try FileError.wrapping(path) {
            let f = try HDF5Snapshot.read(path)
            for required in ["/encoder_hidden_states", "/pooled_projections"] where !f.exists(required) {
                throw HDF5Error.badDataset(required, "is missing: SD3 text features need /encoder_hidden_states [N, L, \(c.jointAttentionDim)] and /pooled_projections [N, \(c.pooledProjectionDim)]")
            }
            let (shape, values) = try f.readFloats("/encoder_hidden_states")
            guard shape.count == 3, shape[0] > 0, shape[1] > 0, shape[2] == c.jointAttentionDim else {
                throw HDF5Error.badDataset("/encoder_hidden_states", "must be float32 [N, L, \(c.jointAttentionDim)]; it is \(shape)")
            }
            let n = shape[0], l = shape[1]
            let (ps, pv) = try f.readFloats("/pooled_projections")
            guard ps == [n, c.pooledProjectionDim] else {
                throw HDF5Error.badDataset("/pooled_projections", "must be float32 [\(n), \(c.pooledProjectionDim)] (one row per prompt); it is \(ps)")
            }
            var features = SD3TextFeatures(encoderHiddenStates: Tensor(shape: shape, data: values), pooledProjections: Tensor(shape: ps, data: pv))
            let hasStates = f.exists("/negative_encoder_hidden_states"), hasPooled = f.exists("/negative_pooled_projections")
            guard hasStates == hasPooled else {
                throw HDF5Error.badDataset(hasStates ? "/negative_pooled_projections" : "/negative_encoder_hidden_states",
                                           "is missing: negative features need both /negative_encoder_hidden_states and /negative_pooled_projections")
            }
            if hasStates {
                let (ns, nv) = try f.readFloats("/negative_encoder_hidden_states")
                guard ns.count == 3, ns[0] == n || ns[0] == 1, ns[1] == l, ns[2] == c.jointAttentionDim else {
                    throw HDF5Error.badDataset("/negative_encoder_hidden_states", "must be float32 [\(n) or 1, \(l), \(c.jointAttentionDim)] (as many tokens as the prompts); it is \(ns)")
                }
                let (nps, npv) = try f.readFloats("/negative_pooled_projections")
                guard nps == [ns[0], c.pooledProjectionDim] else {
                    throw HDF5Error.badDataset("/negative_pooled_projections", "must be float32 [\(ns[0]), \(c.pooledProjectionDim)]; it is \(nps)")
                }
                func repeated(_ v: [Float], _ s: [Int]) -> Tensor {
                    s[0] == n ? Tensor(shape: s, data: v) : Tensor(shape: [n] + s.dropFirst(), data: Array((0..<n).map { _ in v }.joined()))
                }
                features.negativeEncoderHiddenStates = repeated(nv, ns)
                features.negativePooledProjections = repeated(npv, nps)
            }
            return features
        }
    }

    public var count: Int { encoderHiddenStates.shape[0] }
}

/// SD3 + flow matching for a batch of prompts.
public struct SD3Sampler: LatentSampler {
    public let model: SD3Model
    public let text: SD3TextFeatures
    public let schedule: FlowMatchSchedule
    public let options: SamplingOptions
    public let imageSize: Int

    /// The shift of `FlowMatchEulerDiscreteScheduler` in every SD3 / SD3.5 release's scheduler config
    /// (and Stability's sd3_infer.py).
    public static let shift = 3.0
    /// `StableDiffusion3Pipeline.__call__`'s defaults, used when `--steps` / `--cfg` are not given.
    public static let defaultSteps = 28
    public static let defaultGuidance: Float = 7.0

    public init(model: SD3Model, text: SD3TextFeatures, options: SamplingOptions, imageSize: Int) throws {
        let c = model.config
        let unit = 8 * c.patchSize
        guard imageSize > 0, imageSize % unit == 0 else { throw ModelError.inconsistent("image size \(imageSize) must be a multiple of \(unit)") }
        if let m = c.posEmbedMaxSize, imageSize / unit > m {
            throw ModelError.inconsistent("image size \(imageSize) exceeds the position table: at most \(m * unit) pixels a side (pos_embed_max_size \(m))")
        }
        // The pipeline's defaults (num_inference_steps 28, guidance_scale 7.0) when the user gave none.
        let steps: Int
        if options.stepsGiven {
            guard let v = Int(options.steps), v > 0 else {
                throw ModelError.needsOption("SD3 samples with flow matching: --steps takes a number of steps (the pipeline's default is 28), not '\(options.steps)'")
            }
            steps = v
        } else {
            steps = Self.defaultSteps
        }
        var options = options
        if !options.cfgGiven { options.cfgScale = Self.defaultGuidance }
        if options.ddim { throw ModelError.needsOption("SD3 samples with flow matching (Euler); DDIM does not apply: drop --sampler") }
        if options.cfgScale > 1, text.negativeEncoderHiddenStates == nil {
            throw ModelError.needsOption("guidance needs negative text features: add /negative_encoder_hidden_states and /negative_pooled_projections (the pipeline encodes the empty prompt) to the text file, or sample with --cfg 1")
        }
        self.model = model
        self.text = text
        self.options = options
        self.imageSize = imageSize
        schedule = try FlowMatchSchedule.shifted(steps: steps, shift: Self.shift)
    }

    public var latentShape: [Int] { [text.count, model.config.inChannels, imageSize / 8, imageSize / 8] }
    public var labels: [String] { (0..<text.count).map { "prompt\($0)" } }
    public var summary: SamplerSummary {
        SamplerSummary(method: "flow-euler", steps: schedule.steps, cfgScale: options.cfgScale, schedule: "shift \(Self.shift)")
    }

    /// Samples latents from `noise` (`[N, C, S, S]`, one per prompt), as the pipeline's loop does.
    public func sample(noise: Tensor, progress: ProgressReporter? = nil) throws -> Tensor {
        try checkNoise(noise)
        let n = text.count, per = noise.count / n
        let guided = options.cfgScale > 1
        var y = text.encoderHiddenStates, pooled = text.pooledProjections
        if guided, let ny = text.negativeEncoderHiddenStates, let np = text.negativePooledProjections {
            y = Tensor(shape: [2 * n] + Array(y.shape.dropFirst()), data: ny.data + y.data)
            pooled = Tensor(shape: [2 * n, pooled.shape[1]], data: np.data + pooled.data)
        }
        let batch = guided ? 2 * n : n
        var x = noise
        let timesteps = schedule.timesteps
        progress?.begin("sampling", total: schedule.steps, unit: .steps)
        for i in 0..<schedule.steps {
            let input = guided ? Tensor(shape: [batch] + Array(x.shape.dropFirst()), data: x.data + x.data) : x
            let out = try model.forward(hiddenStates: input, encoderHiddenStates: y, pooledProjections: pooled,
                                        timestep: [Float](repeating: timesteps[i], count: batch))
            var v = out.data
            if guided {
                // noise_pred = uncond + s · (text − uncond) on the whole output.
                v = [Float](repeating: 0, count: n * per)
                for k in 0..<(n * per) {
                    let uncond = out.data[k], cond = out.data[n * per + k]
                    v[k] = uncond + options.cfgScale * (cond - uncond)
                }
            }
            schedule.step(x: &x.data, velocity: v, index: i)
            progress?.advance(1)
        }
        progress?.finish()
        return x
    }
}
