// `ditkit verify`: layer-by-layer proof that a converted model computes what the original does.
import ArgumentParser
import DiTKitCore
import DiTKitModels
import DiTKitVerify

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

    @Argument(help: "The model under test: a .ditkit bundle (or any checkpoint convert accepts).")
    var model: String

    @Option(help: "HDF5 reference activations (tools/dump_reference.py).")
    var reference: String?

    @Option(help: "The source checkpoint or bundle to compare against.")
    var against: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    @Option(help: "Tolerance profile to use instead of the one the dtype selects: f32, f16, bf16, int8.")
    var profile: String?

    @Option(help: "Seed of the --against inputs.")
    var seed: UInt64 = 0

    @Option(help: "VAE image size in pixels for --against (default 256 for the SD VAE, 64 otherwise).")
    var size: Int?

    @Option(help: "Attention heads of a source DiT whose width does not tell them.")
    var heads: Int?

    func validate() throws {
        guard (reference == nil) != (against == nil) else { throw ValidationError("give exactly one of --reference and --against") }
        if let p = profile, !["f32", "f16", "bf16", "int8"].contains(p) { throw ValidationError("--profile must be f32, f16, bf16 or int8") }
    }

    func run() throws {
        try reportingErrors {
            var hints = DetectionHints()
            hints.numHeads = heads
            let m = try LoadedModel.open(model, hints: hints)
            let policy = profile.map(TolerancePolicy.forStorage)
            let result: VerificationResult
            if let reference {
                result = try Verifier.verify(m, reference: reference, profile: policy)
            } else if let against {
                let source = try LoadedModel.open(against, hints: hints)
                var o = Verifier.AgainstOptions()
                o.seed = seed
                o.vaeImageSize = size
                result = try Verifier.verify(m, against: source, options: o, profile: policy)
            } else {
                throw ValidationError("give --reference or --against")
            }
            writeOut(json ? JSONWriter.string(result.json) : result.text)
            if !result.passed { throw Exit.mismatch }
        }
    }
}
