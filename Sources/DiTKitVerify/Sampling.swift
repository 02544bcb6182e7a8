// Sampling workflows: `ditkit sample` and the visual part of `verify --sample`.
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitNumerics

/// Latents and decoded images of one sampling run.
public struct SampleResult: Sendable {
    /// One label per image (`class207`, `caption0`).
    public var labels: [String]
    /// What the loop did (method, steps, guidance).
    public var sampler: SamplerSummary
    public var noise: Tensor
    public var latents: Tensor
    /// One 8-bit RGB image per sample (empty without a VAE).
    public var images: [Image8]
}

extension OutputKind {
    /// A latents file written by `ditkit sample --save-latents`.
    public static let latents = hdf5(format: Sampling.latentsFormat, "a DiTKit latents file")
}

public enum Sampling {
    /// Reads `/noise` (float32 [N,C,H,W]) from an HDF5 file.
    public static func readNoise(_ path: String) throws -> Tensor {
        try FileError.wrapping(path) {
            let f = try HDF5Snapshot.read(path)
            let (shape, values) = try f.readFloats("/noise")
            guard shape.count == 4 else { throw HDF5Error.badDataset("/noise", "must be [N, C, H, W]") }
            return Tensor(shape: shape, data: values)
        }
    }

    /// The root attribute `format` of a latents file.
    public static let latentsFormat = "ditkit-latents"

    /// Writes `/latents` (and the labels and settings) to an HDF5 file, atomically; `force`
    /// replaces a latents file DiTKit wrote (nothing else).
    public static func saveLatents(_ r: SampleResult, to path: String, force: Bool) throws {
        try AtomicOutput.produce(path, kind: .latents, force: force) { temporary in
            let f = try HDF5File.create(temporary)
            try f.setAttribute("format", latentsFormat)
            try f.writeFloats("/latents", shape: r.latents.shape, r.latents.data)
            let classes = r.labels.compactMap { $0.hasPrefix("class") ? Int64($0.dropFirst(5)) : nil }
            if classes.count == r.labels.count { try f.writeInt64("/classes", shape: [classes.count], classes) }
            try f.setAttribute("steps", String(r.sampler.steps))
            try f.setAttribute("sampler", r.sampler.method)
            if let cfg = r.sampler.cfgScale { try f.setAttribute("cfg_scale", String(cfg)) }
            if let g = r.sampler.embeddedGuidance { try f.setAttribute("guidance", String(g)) }
            if !r.sampler.schedule.isEmpty { try f.setAttribute("schedule", r.sampler.schedule) }
            try f.flush()
        }
    }

    /// The denoiser's sampler for `conditioning`. Throws when the model does not sample.
    public static func sampler(_ model: LoadedModel, options: SamplingOptions, conditioning: SamplingConditioning) throws -> any LatentSampler {
        let c = model.configuration
        guard let s = try c.family.sampler(c, weights: model.weights, options: options, conditioning: conditioning) else {
            throw VerifyError.incompatible("\(model.path) is \(c) (\(c.family.role.rawValue)), which does not sample; give a denoiser such as a DiT")
        }
        return s
    }

    /// Samples one latent per condition with `model` and decodes it with `vae` when given.
    public static func run(model: LoadedModel, vae: LoadedModel?, conditioning: SamplingConditioning, options: SamplingOptions,
                           noise: Tensor?, progress: ProgressReporter? = nil) throws -> SampleResult {
        let sampler = try sampler(model, options: options, conditioning: conditioning)
        if let vae { try checkPair(model, vae) }
        let z = noise ?? sampler.initialNoise(seed: options.seed)
        let latents = try sampler.sample(noise: z, progress: progress)
        var images: [Image8] = []
        if let vae {
            let v = vae.configuration
            guard let decoded = try v.family.decodeLatents(latents, v, weights: vae.weights, progress: progress) else {
                throw VerifyError.incompatible("\(vae.path) is \(v), which does not decode latents; give a VAE")
            }
            for n in 0..<decoded.shape[0] {
                images.append(Image8.fromSignedUnit(decoded.data, batchIndex: n, channels: decoded.shape[1], height: decoded.shape[2], width: decoded.shape[3]))
            }
        }
        return SampleResult(labels: sampler.labels, sampler: sampler.summary, noise: z, latents: latents, images: images)
    }

    /// Samples one latent per class (class-conditional models such as DiT).
    public static func run(dit: LoadedModel, vae: LoadedModel?, classes: [Int], options: SamplingOptions, noise: Tensor?,
                           progress: ProgressReporter? = nil) throws -> SampleResult {
        try run(model: dit, vae: vae, conditioning: SamplingConditioning(classes: classes), options: options, noise: noise, progress: progress)
    }

    /// Checks that `vae` decodes what `model` samples.
    static func checkPair(_ model: LoadedModel, _ vae: LoadedModel) throws {
        let m = model.configuration, v = vae.configuration
        guard v.family.role == .autoencoder else { throw VerifyError.incompatible("\(vae.path) is \(v), not a VAE") }
        let a = m.family.latentChannels(m), b = v.family.latentChannels(v)
        guard a == b else { throw VerifyError.incompatible("the VAE \(vae.path) has \(b) latent channels, the model \(model.path) \(a)") }
    }
}
