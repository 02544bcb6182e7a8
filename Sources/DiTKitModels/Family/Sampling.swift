// What every family's sampler shares: the options, the conditioning the command line gives, and
// the loop's face (`LatentSampler`). Each denoiser family builds its own loop from these
// (DiT and PixArt: the Gaussian diffusion of DiT; SD3 and FLUX: flow matching).
import DiTKitCore
import DiTKitNumerics

/// How to sample.
public struct SamplingOptions: Sendable {
    /// The step schedule. Gaussian diffusion: `create_diffusion(steps)` respacing ("250", "25",
    /// "ddim25", "10,10,5"). Flow matching: the number of steps.
    public var steps = "250"
    /// DDIM (eta 0) instead of DDPM ancestral sampling (Gaussian diffusion).
    public var ddim = false
    /// Guidance scale; 1 or less disables guidance.
    public var cfgScale: Float = 4.0
    /// Seed of DiTKit's generator (initial latents when no noise is given, then DDPM noise).
    public var seed: UInt64 = 0
    /// Whether `steps` and `cfgScale` were chosen by the user. The command line clears them when the
    /// option was not given, so a family with other defaults uses its own (FLUX.1-dev: 28 steps,
    /// guidance 3.5; FLUX.1-schnell: 4 steps).
    public var stepsGiven = true
    public var cfgGiven = true
    public init() {}
}

/// What a sample is conditioned on, as the command line gives it. A family uses what applies to it
/// and refuses a request it cannot honour.
public struct SamplingConditioning: Sendable {
    /// Class ids, one image each (class-conditional models: DiT).
    public var classes: [Int]?
    /// An HDF5 file of precomputed text or caption features (PixArt: `/encoder_hidden_states`,
    /// `/encoder_attention_mask`), one image per row.
    public var featuresPath: String?
    /// Image size in pixels, for models that sample at several sizes.
    public var imageSize: Int?
    public init(classes: [Int]? = nil, featuresPath: String? = nil, imageSize: Int? = nil) {
        self.classes = classes
        self.featuresPath = featuresPath
        self.imageSize = imageSize
    }
}

/// What a sampling loop does, as messages, reports and latents files state it.
public struct SamplerSummary: Sendable, Equatable, CustomStringConvertible {
    /// `ddpm`, `ddim` (Gaussian diffusion) or `flow-euler` (flow matching, Euler steps).
    public var method: String
    /// Denoising steps the loop takes.
    public var steps: Int
    /// Classifier-free guidance scale, nil when the loop does not guide that way.
    public var cfgScale: Float?
    /// A guidance-distilled model's embedded guidance value (FLUX.1-dev), nil otherwise.
    public var embeddedGuidance: Float?
    /// The schedule's parameters beyond the step count (`shift 3`, `mu 0.86`), empty if none.
    public var schedule: String

    public init(method: String, steps: Int, cfgScale: Float?, embeddedGuidance: Float? = nil, schedule: String = "") {
        self.method = method
        self.steps = steps
        self.cfgScale = cfgScale
        self.embeddedGuidance = embeddedGuidance
        self.schedule = schedule
    }

    /// "DDPM 250 steps, cfg 4.0", "flow matching, 28 Euler steps, shift 3, cfg 7.0",
    /// "flow matching, 28 Euler steps, mu 1.15, guidance 3.5 (embedded)".
    public var description: String {
        var parts: [String]
        switch method {
        case "ddpm": parts = ["DDPM " + NumberFormat.counted(steps, "step")]
        case "ddim": parts = ["DDIM " + NumberFormat.counted(steps, "step")]
        case "flow-euler": parts = ["flow matching", NumberFormat.counted(steps, "Euler step")]
        default: parts = ["\(method) " + NumberFormat.counted(steps, "step")]
        }
        if !schedule.isEmpty { parts.append(schedule) }
        if let cfgScale { parts.append(cfgScale > 1 ? "cfg \(cfgScale)" : "no guidance") }
        if let embeddedGuidance { parts.append("guidance \(embeddedGuidance) (embedded)") }
        if cfgScale == nil && embeddedGuidance == nil { parts.append("no guidance") }
        return parts.joined(separator: ", ")
    }

    /// The summary as JSON members: `sampler`, `steps`, `cfg_scale` (null when not applicable),
    /// `guidance` (embedded; null when none), `schedule`.
    public var jsonMembers: [(String, JSONValue)] {
        [("sampler", .string(method)), ("steps", .int(steps)),
         ("cfg_scale", cfgScale.map { .double(Double($0)) } ?? .null),
         ("guidance", embeddedGuidance.map { .double(Double($0)) } ?? .null),
         ("schedule", .string(schedule))]
    }
}

/// A denoiser's sampling loop for a fixed batch of conditions.
public protocol LatentSampler: Sendable {
    /// What the loop does (method, steps, guidance), for messages and reports.
    var summary: SamplerSummary { get }
    /// `[N, C, h, w]`: the shape of the initial noise and of the sampled latents.
    var latentShape: [Int] { get }
    /// One label per image, for file names (`class207`, `caption0`).
    var labels: [String] { get }
    /// Samples latents from `noise`; `progress` receives one unit per step.
    func sample(noise: Tensor, progress: ProgressReporter?) throws -> Tensor
}

extension LatentSampler {
    public var count: Int { latentShape[0] }

    /// DiTKit's seeded initial latents: the first `N·C·h·w` normals of `SeededRandom(seed)`.
    public func initialNoise(seed: UInt64) -> Tensor {
        var rng = SeededRandom(seed: seed)
        let n = latentShape.reduce(1, *)
        return Tensor(shape: latentShape, data: rng.normals(n))
    }

    /// Checks that `noise` has the sampler's latent shape.
    public func checkNoise(_ noise: Tensor) throws {
        guard noise.shape == latentShape else {
            throw ModelError.inconsistent("noise must be \(latentShape) (one latent per image); got \(noise.shape)")
        }
    }
}
