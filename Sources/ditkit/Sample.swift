// `ditkit sample`: images from a DiT bundle and a VAE, as the official sample.py draws them.
import ArgumentParser
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitVerify

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample images with a DiT and a VAE (DDPM or DDIM, classifier-free guidance).",
        discussion: """
        The diffusion follows facebookresearch/DiT: linear betas over 1000 steps, respacing as \
        create_diffusion(STEPS) ("250", "25", "ddim25", "10,10,5"), learned-range variance, guidance on the \
        first three channels with the null class. Without --noise, initial latents come from DiTKit's seeded \
        generator (SplitMix64 + Box-Muller, --seed); DDPM noise from the same generator seeded with seed+1.
        """)

    @Argument(help: "The DiT bundle (or checkpoint).") var model: String
    @Option(help: "The VAE bundle (or checkpoint) to decode with.") var vae: String
    @Option(name: .customLong("class"), help: "Comma-separated ImageNet class ids, one image each.") var classes: String = "207,360,387,974"
    @Option(help: "Respacing: 250 (default), 25, ddim25, ...") var steps: String = "250"
    @Option(help: "ddpm or ddim (eta 0).") var sampler: String = "ddpm"
    @Option(help: "Guidance scale (1 disables guidance).") var cfg: Float = 4.0
    @Option(help: "Seed of the generator.") var seed: UInt64 = 0
    @Option(help: "HDF5 file with /noise float32 [N,4,H,W], one latent per class.") var noise: String?
    @Option(help: "Write the final latents (before decoding) to /latents of this HDF5 file.") var saveLatents: String?
    @Option(name: .shortAndLong, help: "PNG grid to write.") var output: String
    @Option(help: "Also write one PNG per image into this directory.") var each: String?
    @Flag(help: "Replace existing outputs.") var force = false

    func validate() throws {
        guard ["ddpm", "ddim"].contains(sampler) else { throw ValidationError("--sampler must be ddpm or ddim") }
        guard !parsedClasses.isEmpty else { throw ValidationError("--class needs at least one class id") }
    }

    var parsedClasses: [Int] { classList(classes) }

    func run() throws {
        try reportingErrors {
            let dit = try LoadedModel.open(model)
            let decoder = try LoadedModel.open(vae)
            let o = samplingOptions(steps: steps, sampler: sampler, cfg: cfg, seed: seed)
            let z = try noise.map(Sampling.readNoise)
            let r = try Sampling.run(dit: dit, vae: decoder, classes: parsedClasses, options: o, noise: z, progress: TerminalProgress())
            if let saveLatents { try Sampling.saveLatents(r, options: o, to: saveLatents) }
            try AtomicOutput.write(try Image8.grid(r.images).png(), to: output, force: force)
            if let each {
                try FileSystem.makeDirectories(each)
                for (k, im) in r.images.enumerated() {
                    let path = each + "/\(k)-\(r.labels[k]).png"
                    try AtomicOutput.write(try im.png(), to: path, force: true)
                }
            }
            writeOut("wrote \(output): \(r.images.count) images (\(o.ddim ? "DDIM" : "DDPM") \(steps) steps, cfg \(cfg))\n")
        }
    }
}

/// Sampling options from the command line (`--steps ddimN` implies DDIM).
func samplingOptions(steps: String, sampler: String, cfg: Float, seed: UInt64) -> SamplingOptions {
    var o = SamplingOptions()
    o.steps = steps
    o.ddim = sampler == "ddim" || steps.hasPrefix("ddim")
    o.cfgScale = cfg
    o.seed = seed
    return o
}

/// Class ids from a comma-separated list.
func classList(_ text: String) -> [Int] {
    text.split(separator: ",").compactMap { Int($0.trimmingPrefix(while: { $0 == " " })) }
}
