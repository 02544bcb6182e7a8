// `verify --sample`: the source and the converted model draw from identical noise; the final
// latents and the decoded images are compared.
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitNumerics

/// Thresholds of the visual check, per dtype profile (measured: README "Sample thresholds").
public struct SampleThresholds: Sendable, Equatable {
    /// Minimum PSNR (dB) of every converted image against the source model's image.
    public var minPSNR: Double
    /// Maximum relative L2 error of the final latents.
    public var maxLatentRelL2: Double

    public static func forProfile(_ name: String) -> SampleThresholds {
        switch name {
        case "f16": return SampleThresholds(minPSNR: 35, maxLatentRelL2: 2e-2)
        case "bf16": return SampleThresholds(minPSNR: 25, maxLatentRelL2: 1e-1)
        case "int8", "q8_0", "q6_k": return SampleThresholds(minPSNR: 20, maxLatentRelL2: 2e-1)
        case "q5_k", "q5_1", "q5_0": return SampleThresholds(minPSNR: 18, maxLatentRelL2: 3e-1)
        case "q4_k", "q4_1", "q4_0": return SampleThresholds(minPSNR: 15, maxLatentRelL2: 5e-1)
        case "q3_k": return SampleThresholds(minPSNR: 12, maxLatentRelL2: 6e-1)
        case "q2_k": return SampleThresholds(minPSNR: 10, maxLatentRelL2: 8e-1)
        default: return SampleThresholds(minPSNR: 60, maxLatentRelL2: 1e-4)
        }
    }
}

/// What `verify --sample` found.
public struct SampleComparison: Sendable {
    public var options: SamplingOptions
    /// One label per image (`class207`, `caption0`).
    public var labels: [String]
    public var source: SampleResult
    public var converted: SampleResult
    public var latentRelL2: Double
    /// PSNR of each converted image against the source image (dB; infinite when identical).
    public var psnr: [Double]
    public var thresholds: SampleThresholds

    public var passed: Bool {
        latentRelL2.isFinite && latentRelL2 <= thresholds.maxLatentRelL2 && psnr.allSatisfy { $0 >= thresholds.minPSNR }
    }

    public var json: JSONValue {
        .object([("passed", .bool(passed))] + converted.sampler.jsonMembers + [
            ("seed", .int(Int(options.seed))), ("labels", .array(labels.map { .string($0) })),
            ("classes", .array(labels.compactMap { $0.hasPrefix("class") ? Int($0.dropFirst(5)).map { .int($0) } : nil })),
            ("latent_rel_l2", .double(latentRelL2)), ("psnr_db", .array(psnr.map { $0.isFinite ? .double($0) : .null })),
            ("thresholds", .object([("min_psnr_db", .double(thresholds.minPSNR)), ("max_latent_rel_l2", .double(thresholds.maxLatentRelL2))])),
        ])
    }

    /// Samples with both models from the same noise and compares.
    public static func run(converted: LoadedModel, source: LoadedModel, vae: LoadedModel?, conditioning: SamplingConditioning,
                           options: SamplingOptions, profile: TolerancePolicy, progress: ProgressReporter? = nil) throws -> SampleComparison {
        let noise = try Sampling.sampler(converted, options: options, conditioning: conditioning).initialNoise(seed: options.seed)
        // Two runs of the same phases: each bar says whose it is (`source: sampling`, `converted: decoding`).
        let a = try Sampling.run(model: source, vae: vae, conditioning: conditioning, options: options, noise: noise,
                                 progress: progress.map { LabelledProgress("source", $0) })
        let b = try Sampling.run(model: converted, vae: vae, conditioning: conditioning, options: options, noise: noise,
                                 progress: progress.map { LabelledProgress("converted", $0) })
        let cmp = LayerComparison.compare("latents", b.latents.data, a.latents.data, shape: b.latents.shape, threshold: .infinity)
        let psnr = zip(b.images, a.images).map { $0.psnr(against: $1) }
        return SampleComparison(options: options, labels: b.labels, source: a, converted: b, latentRelL2: cmp.nonFinite > 0 ? .nan : cmp.relL2,
                                psnr: psnr, thresholds: .forProfile(profile.name))
    }

    /// Class-conditional convenience (DiT).
    public static func run(converted: LoadedModel, source: LoadedModel, vae: LoadedModel?, classes: [Int], options: SamplingOptions,
                           profile: TolerancePolicy, progress: ProgressReporter? = nil) throws -> SampleComparison {
        try run(converted: converted, source: source, vae: vae, conditioning: SamplingConditioning(classes: classes), options: options,
                profile: profile, progress: progress)
    }
}
