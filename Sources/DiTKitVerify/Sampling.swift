// Sampling workflows: `ditkit sample` and the visual part of `verify --sample`.
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitNumerics

/// Latents and decoded images of one sampling run.
public struct SampleResult: Sendable {
    public var classes: [Int]
    public var noise: Tensor
    public var latents: Tensor
    /// One 8-bit RGB image per class (empty without a VAE).
    public var images: [Image8]
}

public enum Sampling {
    /// Reads `/noise` (float32 [N,C,S,S]) from an HDF5 file.
    public static func readNoise(_ path: String) throws -> Tensor {
        try FileError.wrapping(path) {
            let f = try HDF5Snapshot.read(path)
            let (shape, values) = try f.readFloats("/noise")
            guard shape.count == 4 else { throw HDF5Error.badDataset("/noise", "must be [N, C, H, W]") }
            return Tensor(shape: shape, data: values)
        }
    }

    /// Writes `/latents` (and the classes and settings) to an HDF5 file, atomically.
    public static func saveLatents(_ r: SampleResult, options: SamplingOptions, to path: String) throws {
        try AtomicOutput.produce(path, force: true) { temporary in
            let f = try HDF5File.create(temporary)
            try f.writeFloats("/latents", shape: r.latents.shape, r.latents.data)
            try f.writeInt64("/classes", shape: [r.classes.count], r.classes.map { Int64($0) })
            try f.setAttribute("steps", options.steps)
            try f.setAttribute("sampler", options.ddim ? "ddim" : "ddpm")
            try f.setAttribute("cfg_scale", String(options.cfgScale))
            try f.flush()
        }
    }

    /// Samples one latent per class with `dit` and decodes it with `vae` when given.
    public static func run(dit: LoadedModel, vae: LoadedModel?, classes: [Int], options: SamplingOptions, noise: Tensor?,
                           progress: ProgressReporter? = nil) throws -> SampleResult {
        guard case .dit(let c) = dit.configuration else { throw VerifyError.incompatible("\(dit.path) is not a DiT") }
        let z = noise ?? DiTSampler.initialNoise(count: classes.count, config: c, seed: options.seed)
        let sampler = try DiTSampler(model: DiTModel(config: c, weights: dit.weights), options: options)
        let latents = try sampler.sample(classes: classes, noise: z, progress: progress)
        var images: [Image8] = []
        if let vae {
            guard case .vae(let v) = vae.configuration else { throw VerifyError.incompatible("\(vae.path) is not a VAE") }
            guard v.latentChannels == c.inChannels else {
                throw VerifyError.incompatible("the VAE has \(v.latentChannels) latent channels, the DiT \(c.inChannels)")
            }
            let decoded = try VAEModel(config: v, weights: vae.weights).decodeLatents(latents)
            for n in 0..<classes.count {
                images.append(Image8.fromSignedUnit(decoded.data, batchIndex: n, channels: decoded.shape[1], height: decoded.shape[2], width: decoded.shape[3]))
            }
        }
        return SampleResult(classes: classes, noise: z, latents: latents, images: images)
    }
}
