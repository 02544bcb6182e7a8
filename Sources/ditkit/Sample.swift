// `ditkit sample`: images from a DiT bundle and a VAE, as the official sample.py draws them.
import ArgumentParser
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitNumerics
import DiTKitVerify

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample images with a diffusion transformer and a VAE (DDPM or DDIM, classifier-free guidance).",
        discussion: """
        The diffusion follows facebookresearch/DiT: linear betas over 1000 steps, respacing as \
        create_diffusion(STEPS) ("250", "25", "ddim25", "10,10,5"), learned-range variance. DiT is \
        class-conditional (--class; guidance on the first three channels with the null class); PixArt is \
        caption-conditioned (--captions FILE.h5 of T5 features; guidance on every epsilon channel against the \
        file's negative features or the model's null caption). SD3 / SD3.5 sample with flow matching as diffusers' \
        StableDiffusion3Pipeline does (--steps N Euler steps, shift 3.0, guidance against the --text file's negative \
        features; pass the release's steps and --cfg, e.g. --steps 28 --cfg 7). Without --noise, initial latents come from \
        DiTKit's seeded generator (SplitMix64 + Box-Muller, --seed); DDPM noise from the same generator seeded with seed+1.
        """)

    @Argument(help: "The denoiser bundle (or checkpoint): DiT or PixArt.") var model: String
    @Option(help: "The VAE bundle (or checkpoint) to decode with.") var vae: String
    @Option(name: .customLong("class"), parsing: .unconditional, help: "Class-conditional models (DiT): comma-separated class ids, one image each (default 207,360,387,974).") var classes: String?
    @Option(name: [.customLong("captions"), .customLong("text")],
            help: "Text-conditioned models (PixArt, SD3, FLUX): HDF5 of precomputed text features, one image per row (/encoder_hidden_states, ...; README).") var captions: String?
    @Option(help: "Image size in pixels, for models that sample at several sizes (PixArt; default: the trained size).") var imageSize: Int?
    @Option(help: "Steps: DiT and PixArt respacing, 250 (default), 25, ddim25, ...; FLUX a step count (default 28 for FLUX.1-dev, 4 for schnell).") var steps: String?
    @Option(help: "ddpm (default) or ddim (eta 0); --steps ddimN implies ddim.") var sampler: String?
    @Option(help: "Guidance scale (1 disables guidance; default 4). FLUX.1-dev: the guidance embedding's value (default 3.5).") var cfg: Float?
    @Option(help: "Seed of the generator.") var seed: UInt64 = 0
    @Option(help: "HDF5 file with /noise float32 [N,4,H,W], one latent per class.") var noise: String?
    @Option(help: "Write the final latents (before decoding) to /latents of this HDF5 file.") var saveLatents: String?
    @Option(name: .shortAndLong, help: "PNG grid to write.") var output: String
    @Option(help: "Also write one PNG per image into this directory.") var each: String?
    @Flag(help: "Replace existing outputs (-o, --each, --save-latents) that DiTKit wrote.") var force = false
    @Flag(help: "Print JSON instead of text.") var json = false

    func validate() throws {
        try validateSampler(steps: steps ?? "250", sampler: sampler)
        try validateSteps(steps ?? "250")
        if let classes { _ = try classList(classes, option: "--class") }
        if classes != nil && captions != nil { throw ValidationError("give --class (DiT) or --captions (PixArt), not both") }
    }

    /// What the images are conditioned on: captions when given, else classes (DiT's default four).
    func conditioning() throws -> SamplingConditioning {
        if let captions { return SamplingConditioning(featuresPath: captions, imageSize: imageSize) }
        return SamplingConditioning(classes: try classList(classes ?? "207,360,387,974", option: "--class"), imageSize: imageSize)
    }

    func run() throws {
        ForwardMemory.keepFreedBuffers()
        try reportingErrors {
            let dit = try LoadedModel.open(model)
            let conditioning = try conditioning()
            if let classes { try checkClasses(try classList(classes, option: "--class"), option: "--class", for: dit) }
            let o = samplingOptions(steps: steps, sampler: sampler, cfg: cfg, seed: seed, defaultSteps: "250")
            // Every output is checked before sampling, which can take minutes.
            try AtomicOutput.checkAvailable(output, kind: .png, force: force)
            if let saveLatents { try AtomicOutput.checkAvailable(saveLatents, kind: .latents, force: force) }
            let labels = each == nil ? [] : try Sampling.sampler(dit, options: o, conditioning: conditioning).labels
            let eachPaths = each.map { dir in labels.enumerated().map { dir + "/\($0.offset)-\($0.element).png" } } ?? []
            for path in eachPaths { try AtomicOutput.checkAvailable(path, kind: .png, force: force) }
            let decoder = try LoadedModel.open(vae)
            let z = try noise.map(Sampling.readNoise)
            let r = try Sampling.run(model: dit, vae: decoder, conditioning: conditioning, options: o, noise: z, progress: TerminalProgress())
            if let saveLatents { try Sampling.saveLatents(r, to: saveLatents, force: force) }
            try AtomicOutput.write(try Image8.grid(r.images).png(), to: output, kind: .png, force: force)
            if let each {
                try FileSystem.makeDirectories(each)
                for (path, im) in zip(eachPaths, r.images) { try AtomicOutput.write(try im.png(), to: path, kind: .png, force: force) }
            }
            if json {
                let labelValues: [JSONValue] = r.labels.map { .string($0) }
                let files: [JSONValue] = eachPaths.map { .string($0) }
                let latents: JSONValue = saveLatents.map { .string($0) } ?? .null
                let members: [(String, JSONValue)] = [
                    ("output", .string(output)), ("images", .int(r.images.count)), ("labels", .array(labelValues)),
                ] + r.sampler.jsonMembers + [
                    ("seed", .int(Int(seed))), ("each", .array(files)), ("latents", latents),
                ]
                writeOut(JSONWriter.string(.object(members)))
                return
            }
            writeOut("wrote \(output): \(NumberFormat.counted(r.images.count, "image")) (\(r.sampler))\n")
        }
    }
}

/// `--sampler` is ddpm or ddim and does not contradict `--steps` (`ddimN` asks for DDIM).
func validateSampler(steps: String, sampler: String?) throws {
    guard let sampler else { return }
    guard ["ddpm", "ddim"].contains(sampler) else { throw ValidationError("--sampler must be ddpm or ddim") }
    if sampler == "ddpm" && steps.hasPrefix("ddim") {
        throw ValidationError("--steps \(steps) asks for DDIM but --sampler ddpm for DDPM: drop one of them (for DDPM, --steps \(steps.dropFirst(4)))")
    }
}

/// Sampling options from the command line (`--steps ddimN` implies DDIM). Steps and guidance the
/// user did not give are marked so, for families with their own defaults (FLUX).
func samplingOptions(steps: String?, sampler: String?, cfg: Float?, seed: UInt64, defaultSteps: String) -> SamplingOptions {
    var o = SamplingOptions()
    o.steps = steps ?? defaultSteps
    o.stepsGiven = steps != nil
    o.ddim = sampler == "ddim" || o.steps.hasPrefix("ddim")
    o.cfgScale = cfg ?? 4.0
    o.cfgGiven = cfg != nil
    o.seed = seed
    return o
}

/// `--steps` is a respacing `create_diffusion` accepts: `250`, `ddim25`, `10,10,5` (positive counts).
func validateSteps(_ steps: String) throws {
    do { _ = try GaussianDiffusion.spaceTimesteps(1000, steps) } catch {
        throw ValidationError("--steps \(steps): \(error) (use a positive step count such as 250 or 25, ddimN, or section counts such as 10,10,5)")
    }
}

/// Class ids from a comma-separated list: whole numbers from 0.
func classList(_ text: String, option: String) throws -> [Int] {
    let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingPrefix(while: { $0 == " " }) }
    let ids = items.compactMap { Int($0) }
    guard !items.isEmpty, ids.count == items.count, ids.allSatisfy({ $0 >= 0 }) else {
        throw ValidationError("\(option) \(text): class ids are whole numbers from 0 (0 to 999 for ImageNet), separated by commas, e.g. 207,360")
    }
    return ids
}

/// Every class id exists in a class-conditional DiT (`num_classes`; the null class is not a class to draw).
func checkClasses(_ ids: [Int], option: String, for model: LoadedModel) throws {
    guard let c = model.configuration.as(DiTConfiguration.self) else { return }
    if let bad = ids.first(where: { $0 >= c.numClasses }) {
        throw UsageError("\(option) \(bad): \(model.path) has \(c.numClasses) classes (ids 0 to \(c.numClasses - 1))")
    }
}
