// PixArt-α / PixArt-Σ end to end: both layouts detected and loaded strictly, the forward pass
// against diffusers at every layer, a perturbed block named, every dtype against the source,
// sampling against diffusers' own pipeline loop. Fixtures: tools/make_pixart_fixtures.py.
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitNumerics
import DiTKitConvert
@testable import DiTKitVerify

/// Converts a PixArt fixture (`--heads 2`: the fixtures' 12-wide heads cannot be inferred).
func pixartBundle(_ source: String, _ dtype: StorageType = .f32) throws -> (LoadedModel, String) {
    let dir = NSTemporaryDirectory() + "ditkit-pixart-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    var o = ConversionOptions()
    o.dtype = dtype
    o.hints.numHeads = 2
    _ = try Converter.convert(source: Fixtures.path(source), output: dir + "/m.ditkit", options: o)
    return (try LoadedModel.open(dir + "/m.ditkit"), dir)
}

@Suite struct PixArtTests {
    static let layouts = ["pixart/alpha/transformer/diffusion_pytorch_model.safetensors", "pixart/alpha_original.pth",
                          "pixart/sigma/transformer/diffusion_pytorch_model.safetensors", "pixart/sigma_original.pth"]

    @Test func bothLayoutsAreDetectedWithTheirConfiguration() throws {
        for source in Self.layouts {
            let (m, dir) = try pixartBundle(source)
            defer { FileSystem.removeTree(dir) }
            let c = try #require(m.configuration.as(PixArtConfiguration.self))
            #expect(m.configuration.family.name == "pixart")
            let alpha = source.contains("alpha")
            #expect(c.sampleSize == (alpha ? 8 : 16))
            #expect(c.useAdditionalConditions == alpha)
            // The original files carry the scale only in their fixed pos_embed; diffusers in config.json.
            #expect(c.interpolationScale == (alpha ? 2 : 0.5))
            #expect(c.numLayers == 2 && c.numHeads == 2 && c.headDim == 12 && c.captionChannels == 16)
            #expect(c.nullCaptionTokens == (source.hasSuffix(".pth") ? (alpha ? 8 : 12) : nil))
            let bundle = try #require(m.container as? NativeBundle)
            #expect(bundle.manifest.naming == "pixart-diffusers")
            #expect(bundle.manifest.provenance["source"]?["naming"]?.stringValue == (source.hasSuffix(".pth") ? "pixart-original" : "pixart-diffusers"))
        }
    }

    @Test func shardsAndFoldersConvertToTheSameBundle() throws {
        let (a, da) = try pixartBundle("pixart/sigma/transformer/diffusion_pytorch_model.safetensors")
        let (b, db) = try pixartBundle("pixart/sigma_sharded")   // a model folder holding an index and 3 shards
        let (c, dc) = try pixartBundle("pixart/sigma")           // a pipeline folder: its transformer
        defer { FileSystem.removeTree(da); FileSystem.removeTree(db); FileSystem.removeTree(dc) }
        let ba = try #require(a.container as? NativeBundle), bb = try #require(b.container as? NativeBundle), bc = try #require(c.container as? NativeBundle)
        #expect(ba.manifest.tensors.map(\.stored.checksum) == bb.manifest.tensors.map(\.stored.checksum))
        #expect(ba.manifest.tensors.map(\.stored.checksum) == bc.manifest.tensors.map(\.stored.checksum))
        // Provenance names every shard with its SHA-256 (what published checksums list).
        let shards = try #require(bb.manifest.provenance["source"]?["shards"]?.arrayValue)
        #expect(shards.count == 3)
        for s in shards {
            let file = Fixtures.path("pixart/sigma_sharded/") + (s["file"]?.stringValue ?? "")
            #expect(s["sha256"]?.stringValue == (try SHA256Hasher.hex(file: file)))
        }
        #expect(bb.manifest.provenance["source"]?["file"]?.stringValue == "diffusion_pytorch_model.safetensors.index.json")
    }

    @Test func bothLayoutsGiveTheSameTensors() throws {
        for name in ["alpha", "sigma"] {
            let (a, da) = try pixartBundle("pixart/\(name)/transformer/diffusion_pytorch_model.safetensors")
            let (b, db) = try pixartBundle("pixart/\(name)_original.pth")
            defer { FileSystem.removeTree(da); FileSystem.removeTree(db) }
            let ba = try #require(a.container as? NativeBundle), bb = try #require(b.container as? NativeBundle)
            // Every diffusers tensor equals the original's (q, k, v split from the fused qkv, kv) bit for bit.
            for t in ba.manifest.tensors {
                let x = try #require(ba.view(t.name)), y = try #require(bb.view(t.name), "\(t.name) missing from the original layout")
                #expect(x.shape == y.shape && x.floats() == y.floats(), "\(t.name)")
            }
            #expect(Set(bb.tensorNames).subtracting(ba.tensorNames) == [PixArtNaming.nullCaption])
        }
    }

    // f32 against diffusers f32 at every traced module: rel L2 <= 1e-4 (the f32 profile); measured ~3e-7.
    @Test(arguments: layouts)
    func forwardMatchesDiffusersAtEveryLayer(_ source: String) throws {
        let (m, dir) = try pixartBundle(source)
        defer { FileSystem.removeTree(dir) }
        let ref = source.contains("alpha") ? "pixart/alpha_reference.h5" : "pixart/sigma_reference.h5"
        let r = try Verifier.verify(m, reference: Fixtures.path(ref))
        #expect(r.passed, "\(r.text)")
        var expected = ["pos_embed", "adaln_single.emb", "adaln_single.0", "adaln_single.1", "caption_projection"]
        for i in 0..<2 { expected += ["norm1", "attn1", "attn2", "norm2", "ff"].map { "transformer_blocks.\(i).\($0)" } + ["transformer_blocks.\(i)"] }
        #expect(r.layers.map(\.name) == expected + ["norm_out", "proj_out", "output"])
        #expect(r.skipped == ["transformer_blocks.0.ff.net.0"])
        #expect(r.layers.allSatisfy { $0.relL2 < 1e-5 })
    }

    @Test func perturbedBlockIsNamed() throws {
        for name in ["alpha", "sigma"] {
            let (m, dir) = try pixartBundle("pixart/\(name)_original.pth")
            defer { FileSystem.removeTree(dir) }
            let r = try Verifier.verify(m, reference: Fixtures.path("pixart/\(name)_reference_perturbed_block1.h5"))
            #expect(!r.passed)
            #expect(r.firstFailingLayer == "transformer_blocks.1")
            #expect(r.layers.first?.name == "transformer_blocks.0" && r.layers.first?.passed == true)
        }
    }

    @Test(arguments: [StorageType.f16, .bf16, .int8])
    func everyDtypeVerifiesAgainstTheSource(_ dtype: StorageType) throws {
        for source in ["pixart/alpha_original.pth", "pixart/sigma/transformer/diffusion_pytorch_model.safetensors"] {
            let (m, dir) = try pixartBundle(source, dtype)
            defer { FileSystem.removeTree(dir) }
            var hints = DetectionHints()
            hints.numHeads = 2
            let r = try Verifier.verify(m, against: try LoadedModel.open(Fixtures.path(source), hints: hints))
            #expect(r.passed, "\(dtype) \(source): \(r.text)")
            #expect(r.profile.name == dtype.rawValue)
            // Lossy, but not lossless: the comparison saw the stored precision.
            #expect(r.layers.last.map { $0.relL2 > 0 } == true)
            if dtype == .int8 {
                let b = try #require(m.container as? NativeBundle)
                #expect(b.view("transformer_blocks.0.attn1.to_q.weight")?.dtype == .i8)
                #expect(b.view("proj_out.weight")?.dtype == .f32)
                #expect(b.view("transformer_blocks.0.scale_shift_table")?.dtype == .f32)
            }
        }
    }

    @Test func verificationInputsLeaveCaptionTokensOutAndSpanTheTimesteps() throws {
        let (m, dir) = try pixartBundle("pixart/alpha_original.pth")
        defer { FileSystem.removeTree(dir) }
        let inputs = try m.family.verificationInputs("output", m.configuration, options: VerificationInputOptions())
        let mask = try #require(inputs["encoder_attention_mask"])
        #expect(mask.shape == [3, 8])
        let kept = (0..<3).map { b in mask.data[(b * 8)..<((b + 1) * 8)].reduce(0, +) }
        #expect(kept.allSatisfy { $0 >= 1 && $0 < 8 } && Set(kept).count == 3)
        #expect(inputs["timestep"]?.data == [999, 500, 0])
        #expect(inputs["resolution"]?.data == [64, 64, 64, 64, 64, 64])
        #expect(inputs == (try m.family.verificationInputs("output", m.configuration, options: VerificationInputOptions())))
    }

    @Test func aTamperedPositionEmbeddingIsRefused() throws {
        let grid = 4, dim = 24
        var values = Layers.sincosPositionEmbedding(dim: dim, gridHeight: grid, gridWidth: grid, baseSize: grid, interpolationScale: 2)
        #expect(try PixArtFamily.interpolationScale(of: values, grid: grid, dim: dim) == 2)
        let half = Layers.sincosPositionEmbedding(dim: dim, gridHeight: grid, gridWidth: grid, baseSize: grid, interpolationScale: 0.5)
        #expect(try PixArtFamily.interpolationScale(of: half, grid: grid, dim: dim) == 0.5)
        values[5 * dim + 3] += 0.01
        #expect(throws: ModelError.self) { try PixArtFamily.interpolationScale(of: values, grid: grid, dim: dim) }
    }
}

@Suite struct PixArtSamplingTests {
    /// diffusers' PixArtAlphaPipeline with a DDIMScheduler on DiT's betas, 10 steps, guidance 4.5,
    /// from the same noise and captions (tools/make_pixart_fixtures.py): DiTKit's "ddim10".
    func sample(_ source: String, captions: String) throws -> Double {
        let (m, dir) = try pixartBundle(source)
        defer { FileSystem.removeTree(dir) }
        var o = SamplingOptions()
        o.steps = "ddim10"
        o.ddim = true
        o.cfgScale = 4.5
        let noise = try Sampling.readNoise(Fixtures.path("pixart/noise.h5"))
        let r = try Sampling.run(model: m, vae: nil, conditioning: SamplingConditioning(featuresPath: Fixtures.path(captions)),
                                 options: o, noise: noise)
        #expect(r.labels == ["caption0", "caption1"])
        let ref = try HDF5File.open(Fixtures.path("pixart/sigma_ddim_latents.h5"))
        let (shape, expected) = try ref.readFloats("/latents")
        #expect(shape == r.latents.shape)
        return LayerComparison.compare("latents", r.latents.data, expected, shape: shape, threshold: 1e-4).relL2
    }

    // Latents agree with diffusers' loop to float rounding (measured 2.5e-7); the bar is 1e-4.
    @Test func guidanceAgainstTheNullCaptionMatchesDiffusersLoop() throws {
        #expect(try sample("pixart/sigma_original.pth", captions: "pixart/captions.h5") < 1e-4)
    }

    @Test func guidanceAgainstNegativeFeaturesMatchesDiffusersLoop() throws {
        #expect(try sample("pixart/sigma/transformer/diffusion_pytorch_model.safetensors", captions: "pixart/captions_negative.h5") < 1e-4)
    }

    @Test func guidanceWithoutAnUnconditionalCaptionIsRefused() throws {
        // diffusers folders carry no null caption: guidance needs the file's negative features.
        #expect(throws: ModelError.self) {
            _ = try sample("pixart/sigma/transformer/diffusion_pytorch_model.safetensors", captions: "pixart/captions.h5")
        }
    }
}
