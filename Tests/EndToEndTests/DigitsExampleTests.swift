// The trained digits example (examples/digits, tools/train_digits.py): ditkit converts the DiT and
// its VAE to each dtype, samples every digit, and a classifier trained on the same data set
// (tools/classify_digits.py, numpy only) must read the digit that was asked for.
import Testing
import Foundation
import DiTKitCore

@Suite struct DigitsExampleTests {
    static let digits = Tool.root + "/examples/digits"
    static let dit = digits + "/dit-digits.pt"
    static let vae = digits + "/vae/diffusion_pytorch_model.safetensors"

    /// Samples per digit, and the sampler: DDIM 25 steps with sample.py's default guidance scale 4.
    static let perDigit = 3
    static let sampling = ["--steps", "ddim25", "--cfg", "4", "--seed", "1"]
    /// Lowest accepted share of samples whose digit the classifier reads as the one requested (at most
    /// 3 misses in 30). Measured (examples/digits/README.md): 499 of 500 for each of f32, f16 and int8
    /// with these settings over seeds 0–4, and 30 of 30 in this run.
    static let minimumAccuracy = 0.9

    static var classes: String { (0..<perDigit).flatMap { _ in 0..<10 }.map(String.init).joined(separator: ",") }

    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with numpy (make test provides it)"),
          arguments: ["f32", "f16", "int8", "q8_0", "q5_0", "q4_k", "q2_k"])
    func sampledDigitsAreTheRequestedOnes(_ dtype: String) throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        for (source, name) in [(Self.dit, "dit"), (Self.vae, "vae")] {
            let c = try Tool.run(["convert", source, "-o", "\(dir)/\(name).ditkit", "--dtype", dtype])
            #expect(c.status == 0, "\(c.stderr)")
        }
        let s = try Tool.run(["sample", dir + "/dit.ditkit", "--vae", dir + "/vae.ditkit", "--class", Self.classes,
                              "--each", dir + "/each", "-o", dir + "/grid.png"] + Self.sampling)
        #expect(s.status == 0, "\(s.stderr)")
        let out = try runPython([Tool.root + "/tools/classify_digits.py", dir + "/each", "--json"])
        let r = try JSONReader.parse(Array(out.utf8))
        let images = try #require(r["images"]?.arrayValue)
        #expect(images.count == 10 * Self.perDigit)
        let accuracy = try #require(r["accuracy"]?.doubleValue)
        #expect(accuracy >= Self.minimumAccuracy, "\(dtype): the classifier read the requested digit in \(accuracy) of the samples\n\(out)")
        // The classifier tells digits apart: against the wrong labels (digit + 1) it agrees rarely.
        let wrong = images.filter { im in
            guard let asked = im["requested"]?.intValue, let read = im["read"]?.intValue else { return false }
            return read == (asked + 1) % 10
        }
        #expect(Double(wrong.count) / Double(images.count) <= 0.2, "\(dtype): \(out)")
    }

    @Test(arguments: ["f16", "int8", "q8_0", "q4_k", "q2_k"])
    func convertedSamplesMatchTheSourceModel(_ dtype: String) throws {
        // Trained weights through verify --sample: same noise, source model against converted model
        // (the VAE stays the source's), judged by the profile's sample thresholds (README).
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        #expect(try Tool.run(["convert", Self.dit, "-o", dir + "/dit.ditkit", "--dtype", dtype]).status == 0)
        let v = try Tool.run(["verify", dir + "/dit.ditkit", "--against", Self.dit, "--sample", "--vae", Self.vae,
                              "--classes", "0,1,2,3,4,5,6,7,8,9", "--json"] + Self.sampling)
        #expect(v.status == 0, "\(v.stderr)")
        // verify --json prints one object per bundle.
        let r = try #require(try JSONReader.parse(Array(v.stdout.utf8)).arrayValue?.first, "\(v.stdout)")
        #expect(r["passed"] == .bool(true), "\(v.stdout)")
        #expect(r["sample"]?["passed"] == .bool(true), "\(v.stdout)")
        #expect(r["sample"]?["psnr_db"]?.arrayValue?.count == 10)
    }
}
