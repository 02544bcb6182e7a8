// `ditkit verify`: layer-by-layer proof that a converted model computes what the original does.
import ArgumentParser
import DiTKitCore
import DiTKitModels
import DiTKitNumerics
import DiTKitVerify
import DiTKitFormats

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare a model layer by layer with PyTorch reference activations or with its source checkpoint.",
        discussion: """
        --reference REF.h5 runs the model on the file's inputs (written by tools/dump_reference.py) and compares \
        every layer the file holds. --against SOURCE runs both models on the same deterministic inputs (seeded \
        latents, timesteps spread over 0..999, real and null classes; for a VAE, decode and encode). The \
        tolerance profile follows the stored dtype. Exit 0 pass, 1 fail, 2 refused input.
        """
    )

    @Argument(help: "The model(s) under test: .ditkit bundles (or any checkpoint convert accepts). Several need --against.")
    var models: [String]

    @Option(help: "Models verified at once when several are given (each gets cores/jobs threads; a model's two forwards run side by side when it has two or more).")
    var jobs: Int = 1

    var model: String { models[0] }

    @Option(help: "HDF5 reference activations (tools/dump_reference.py).")
    var reference: String?

    @Option(help: "The source checkpoint or bundle to compare against.")
    var against: String?

    @Flag(help: "Print JSON instead of a table: a list with one object per model (README, 'Machine-readable output').")
    var json = false

    @Option(help: "Tolerance profile to use instead of the one the dtype selects: f32, f16, bf16, int8, or a block type (q8_0, q6_k, q5_k, q5_1, q5_0, q4_k, q4_1, q4_0, q3_k, q2_k).")
    var profile: String?

    @Option(help: "Seed of the --against inputs.")
    var seed: UInt64 = 0

    @Option(help: "Image size in pixels for --against (VAE: default 256 for the SD VAE, 64 otherwise; FLUX: 128×96 by default) and for --sample (FLUX: default 1024).")
    var size: Int?

    @Option(help: "Attention heads of a source DiT whose width does not tell them.")
    var heads: Int?

    @Option(help: "Dotted path of the model inside the --against file (default: detected; a bundle's recorded subtree when the file has it).")
    var select: String?

    @Option(help: "Image size in pixels of a --against DiT in diffusers naming without a config.json beside it.")
    var imageSize: Int?

    @Flag(help: "With --against: also sample with both models from identical noise and compare latents and images.")
    var sample = false

    @Option(help: "--sample: VAE bundle (or checkpoint) to decode samples with.")
    var vae: String?

    @Option(parsing: .unconditional, help: "--sample: classes to sample (comma-separated; class-conditional models; default 207,360,387,974).")
    var classes: String?

    @Option(name: [.customLong("captions"), .customLong("text")],
            help: "--sample: text features to sample with (HDF5; text-conditioned models such as PixArt, SD3, FLUX).")
    var captions: String?

    @Option(help: "--sample: sampling steps (respacing as for `ditkit sample`, default 25; FLUX: a step count, default 28 for dev, 4 for schnell).")
    var steps: String?

    @Option(help: "--sample: ddpm (default) or ddim; --steps ddimN implies ddim.")
    var sampler: String?

    @Option(help: "--sample: guidance scale (default 4; FLUX.1-dev: the guidance embedding, default 3.5).")
    var cfg: Float?

    var sampleClasses: String { classes ?? "207,360,387,974" }
    var sampleSteps: String { steps ?? "25" }

    @Option(help: "Write a self-contained HTML report here.")
    var report: String?

    @Flag(help: "Replace an existing --report that DiTKit wrote.")
    var force = false

    func validate() throws {
        guard (reference == nil) != (against == nil) else { throw ValidationError("give exactly one of --reference and --against") }
        guard !models.isEmpty else { throw ValidationError("give the model to verify") }
        if models.count > 1 {
            guard against != nil else { throw ValidationError("several models can only be verified --against one source") }
            guard !sample else { throw ValidationError("--sample takes one model at a time (--report with several models draws their size against output SQNR)") }
        }
        guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
        if let h = heads, h <= 0 { throw ValidationError("--heads must be positive") }
        if let s = imageSize, s <= 0 || s % 8 != 0 { throw ValidationError("--image-size must be a positive multiple of 8") }
        if (select != nil || imageSize != nil) && against == nil { throw ValidationError("--select and --image-size describe the --against source") }
        let profiles = ["f32", "f16", "bf16", "int8"] + TolerancePolicy.blockTypes.map(\.name)
        if let p = profile, !profiles.contains(p) { throw ValidationError("--profile must be one of \(profiles.joined(separator: ", "))") }
        if sample && against == nil { throw ValidationError("--sample needs --against (the model to compare samples with)") }
        // The sampling options do nothing without --sample: refused rather than ignored.
        let sampling = [("--vae", vae != nil), ("--classes", classes != nil), ("--captions", captions != nil), ("--steps", steps != nil),
                        ("--sampler", sampler != nil), ("--cfg", cfg != nil)]
        let given = sampling.filter(\.1).map(\.0)
        if !sample && !given.isEmpty {
            throw ValidationError("\(given.joined(separator: ", ")) describe\(given.count == 1 ? "s" : "") the --sample comparison: add --sample or drop \(given.count == 1 ? "it" : "them")")
        }
        if classes != nil && captions != nil { throw ValidationError("give --classes (DiT) or --captions (PixArt), not both") }
        try validateSampler(steps: sampleSteps, sampler: sampler)
        try validateSteps(sampleSteps)
        _ = try classList(sampleClasses, option: "--classes")
    }

    /// One element of the `--json` list: the model's path, then its result.
    static func item(_ path: String, _ result: JSONValue) -> JSONValue {
        guard case .object(let m) = result else { return result }
        return .object([("path", .string(path))] + m)
    }

    func run() throws {
        ForwardMemory.keepFreedBuffers()
        try reportingErrors {
            var hints = DetectionHints()
            hints.numHeads = heads
            var sourceHints = hints
            sourceHints.select = select
            sourceHints.imageSize = imageSize
            if models.count > 1, let against {
                if let report { try AtomicOutput.checkAvailable(report, kind: .htmlReport, force: force) }
                var o = Verifier.AgainstOptions()
                o.seed = seed
                o.imageSize = size
                let results = Verifier.verifyMany(models, against: against, hints: hints, sourceHints: sourceHints, options: o,
                                                  profile: profile.map(TolerancePolicy.forStorage), jobs: jobs)
                var failed = 0, refused = 0
                var jsonItems: [JSONValue] = []
                for (path, r) in zip(models, results) {
                    switch r {
                    case .success(let v):
                        if !v.passed { failed += 1 }
                        if json {
                            jsonItems.append(Verify.item(path, v.json))
                        } else {
                            writeOut("== \(path)\n" + v.text + "\n")
                        }
                    case .failure(let e):
                        refused += 1
                        printError("ditkit: error: \(e)")
                    }
                }
                if json { writeOut(JSONWriter.string(.array(jsonItems))) } else {
                    writeOut("\(models.count - failed - refused) of \(models.count) passed\n")
                }
                if let report {
                    // Size against output SQNR, one point per bundle verified.
                    var points: [TradeOffPoint] = []
                    for (path, r) in zip(models, results) {
                        guard case .success(let v) = r, let b = try? NativeBundle(path: path) else { continue }
                        points.append(try TradeOffPoint(path: path, bundle: b, result: v))
                    }
                    let html = HTMLReport.renderTradeOff(points, title: "DiTKit trade-off: \(FileSystem.baseName(against))", against: against)
                    try AtomicOutput.write(Array(html.utf8), to: report, kind: .htmlReport, force: force)
                    if json { printError("report: \(report)") } else { writeOut("report: \(report)\n") }
                }
                if refused > 0 { throw Exit.refused }
                if failed > 0 { throw Exit.mismatch }
                return
            }
            if let report { try AtomicOutput.checkAvailable(report, kind: .htmlReport, force: force) }
            let m = try LoadedModel.open(model, hints: hints)
            let policy = profile.map(TolerancePolicy.forStorage)
            let result: VerificationResult
            var source: LoadedModel?
            if let reference {
                result = try Verifier.verify(m, reference: reference, profile: policy)
            } else if let against {
                let s = try Verifier.openSource(against, for: m, hints: sourceHints)
                source = s
                var o = Verifier.AgainstOptions()
                o.seed = seed
                o.imageSize = size
                result = try Verifier.sharingCores(jobs: 1) { atOnce in
                    o.forwardsAtOnce = atOnce
                    return try Verifier.verify(m, against: s, options: o, profile: policy, progress: json ? nil : TerminalProgress())
                }
            } else {
                throw ValidationError("give --reference or --against")
            }
            var comparison: SampleComparison?
            if sample, let source {
                let o = samplingOptions(steps: steps, sampler: sampler, cfg: cfg, seed: seed, defaultSteps: "25")
                let decoder = try vae.map { try LoadedModel.open($0) }
                let conditioning: SamplingConditioning
                if let captions {
                    conditioning = SamplingConditioning(featuresPath: captions, imageSize: size)
                } else {
                    let ids = try classList(sampleClasses, option: "--classes")
                    try checkClasses(ids, option: "--classes", for: m)
                    conditioning = SamplingConditioning(classes: ids, imageSize: size)
                }
                comparison = try SampleComparison.run(converted: m, source: source, vae: decoder,
                                                      conditioning: conditioning, options: o, profile: result.profile, progress: TerminalProgress())
            }
            if json {
                var j = result.json
                if let c = comparison, case .object(var members) = j {
                    members.append(("sample", c.json))
                    members[0] = ("passed", .bool(result.passed && c.passed))
                    j = .object(members)
                }
                writeOut(JSONWriter.string(.array([Verify.item(model, j)])))
            } else {
                var text = result.text
                if let c = comparison {
                    let psnr = c.psnr.map { $0.isFinite ? fixed($0, 1) : "inf" }.joined(separator: ", ")
                    text += "samples (\(c.converted.sampler)): final-latent rel L2 \(scientific(c.latentRelL2)) (<= \(scientific(c.thresholds.maxLatentRelL2))); "
                    text += c.source.images.isEmpty ? "no VAE, no images\n" : "image PSNR \(psnr) dB (>= \(fixed(c.thresholds.minPSNR, 0)))\n"
                    text += c.passed ? "samples PASSED\n" : "samples FAILED\n"
                }
                writeOut(text)
            }
            if let report {
                let html = try HTMLReport.render(result, title: "DiTKit verification: \(FileSystem.baseName(model))",
                                                 bundle: m.container as? NativeBundle, sample: comparison)
                try AtomicOutput.write(Array(html.utf8), to: report, kind: .htmlReport, force: force)
                // With --json, standard output holds only the JSON document.
                if json { printError("report: \(report)") } else { writeOut("report: \(report)\n") }
            }
            if !result.passed || comparison?.passed == false { throw Exit.mismatch }
        }
    }
}
