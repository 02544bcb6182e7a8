// Sampling as the official sample.py does it: latents from noise through the respaced diffusion,
// classifier-free guidance by forward_with_cfg on the doubled batch (one forward pass per step).
import DiTKitCore
import DiTKitNumerics

/// DiT + diffusion for a list of classes.
public struct DiTSampler: LatentSampler {
    public let model: DiTModel
    public let diffusion: GaussianDiffusion
    public let options: SamplingOptions
    public let classes: [Int]

    public init(model: DiTModel, classes: [Int], options: SamplingOptions) throws {
        let c = model.config
        guard !classes.isEmpty else { throw ModelError.inconsistent("give at least one class to sample") }
        guard classes.allSatisfy({ $0 >= 0 && $0 < c.numClasses }) else {
            throw ModelError.inconsistent("classes must be in 0..<\(c.numClasses) (this DiT has \(c.numClasses) classes)")
        }
        guard c.learnSigma else { throw ModelError.inconsistent("sampling needs a learn_sigma DiT (\(2 * c.inChannels) output channels)") }
        self.model = model
        self.options = options
        self.classes = classes
        diffusion = try GaussianDiffusion(respacing: options.steps)
    }

    public var latentShape: [Int] { [classes.count, model.config.inChannels, model.config.inputSize, model.config.inputSize] }
    public var labels: [String] { classes.map { "class\($0)" } }
    public var summary: SamplerSummary {
        SamplerSummary(method: options.ddim ? "ddim" : "ddpm", steps: diffusion.steps, cfgScale: options.cfgScale)
    }

    /// Samples latents from `noise` (`[N, C, S, S]`, one per class). DDPM noise comes from
    /// `SeededRandom(seed + 1)`, one draw of the whole (doubled) batch per step.
    public func sample(noise: Tensor, progress: ProgressReporter? = nil) throws -> Tensor {
        try checkNoise(noise)
        let c = model.config
        let n = classes.count
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
