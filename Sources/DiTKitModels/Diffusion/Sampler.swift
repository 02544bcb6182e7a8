// Sampling as the official sample.py does it: latents from noise through the respaced diffusion,
// classifier-free guidance by forward_with_cfg on the doubled batch (one forward pass per step),
// and decoding with `vae.decode(latents / scaling_factor)`.
import DiTKitCore
import DiTKitNumerics

/// How to sample.
public struct SamplingOptions: Sendable {
    /// `create_diffusion(steps)`: "250" (DDPM default), "25", "ddim25", "10,10,5", ...
    public var steps = "250"
    /// DDIM (eta 0) instead of DDPM ancestral sampling.
    public var ddim = false
    /// Guidance scale; 1 or less disables guidance (a single, unconditional-free batch).
    public var cfgScale: Float = 4.0
    /// Seed of DiTKit's generator (initial latents when no noise is given, then DDPM noise).
    public var seed: UInt64 = 0
    public init() {}
}

/// DiT + diffusion.
public struct DiTSampler: Sendable {
    public let model: DiTModel
    public let diffusion: GaussianDiffusion
    public let options: SamplingOptions

    public init(model: DiTModel, options: SamplingOptions) throws {
        self.model = model
        self.options = options
        diffusion = try GaussianDiffusion(respacing: options.steps)
    }

    /// The seeded initial latents `[N, C, S, S]` used when no noise file is given: the first
    /// `N·C·S·S` normals of `SeededRandom(seed)`.
    public static func initialNoise(count n: Int, config c: DiTConfiguration, seed: UInt64) -> Tensor {
        var rng = SeededRandom(seed: seed)
        return Tensor(shape: [n, c.inChannels, c.inputSize, c.inputSize], data: rng.normals(n * c.inChannels * c.inputSize * c.inputSize))
    }

    /// Samples latents for `classes` from `noise` (`[N, C, S, S]`, one per class). DDPM noise comes
    /// from `SeededRandom(seed + 1)`, one draw of the whole (doubled) batch per step.
    /// `progress` receives one unit per step.
    public func sample(classes: [Int], noise: Tensor, progress: ProgressReporter? = nil) throws -> Tensor {
        let c = model.config
        let n = classes.count
        guard noise.shape == [n, c.inChannels, c.inputSize, c.inputSize] else {
            throw ModelError.inconsistent("noise must be [\(n), \(c.inChannels), \(c.inputSize), \(c.inputSize)]; got \(noise.shape)")
        }
        guard classes.allSatisfy({ $0 >= 0 && $0 < c.numClasses }) else { throw ModelError.inconsistent("classes must be in 0..<\(c.numClasses)") }
        guard c.learnSigma else { throw ModelError.inconsistent("sampling needs a learn_sigma DiT (8 output channels)") }
        let guided = options.cfgScale > 1
        // sample.py: z = cat([z, z]); y = cat([y, null]).
        var x = noise
        var labels = classes
        if guided {
            x = Tensor(shape: [2 * n] + Array(noise.shape.dropFirst()), data: noise.data + noise.data)
            labels += Array(repeating: c.nullClass, count: n)
        }
        let batch = x.shape[0], plane = c.inputSize * c.inputSize
        var rng = SeededRandom(seed: options.seed &+ 1)
        progress?.begin("sampling", total: diffusion.steps, unit: .steps)
        for i in stride(from: diffusion.steps - 1, through: 0, by: -1) {
            let t = [Float](repeating: Float(diffusion.timestepMap[i]), count: batch)
            let out = guided ? try model.forwardWithCFG(x: x, t: t, y: labels, cfgScale: options.cfgScale)
                             : try model.forward(x: x, t: t, y: labels)
            let stepNoise = options.ddim ? nil : rng.normals(x.count)
            x.data = diffusion.step(x: x.data, output: out.data, channels: c.inChannels, plane: plane, batch: batch, index: i,
                                    ddim: options.ddim, noise: stepNoise)
            progress?.advance(1)
        }
        progress?.finish()
        // samples, _ = samples.chunk(2)
        return Tensor(shape: [n] + Array(x.shape.dropFirst()), data: Array(x.data.prefix(n * c.inChannels * plane)))
    }
}

extension VAEModel {
    /// `vae.decode(latents / scaling_factor)`: images `[N, 3, 8h, 8w]` in about [-1, 1].
    public func decodeLatents(_ latents: Tensor) throws -> Tensor {
        let s = Float(config.scalingFactor)
        return try decode(Tensor(shape: latents.shape, data: latents.data.map { $0 / s }))
    }
}
