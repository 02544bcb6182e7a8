// SD3 / SD3.5 end to end: every layout (diffusers folder, Stability's bare names, a full f16
// single file with its VAE and text encoders) detected and loaded strictly, the forward pass against
// diffusers at every layer, a perturbed block named, every dtype against the source, the VAE of a
// single file with SD3's latent scaling, sampling against diffusers' StableDiffusion3Pipeline loop.
// Fixtures: tools/make_sd3_fixtures.py.
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitNumerics
import DiTKitConvert
@testable import DiTKitVerify

/// Converts an SD3 fixture into a fresh directory.
func sd3Bundle(_ source: String, _ dtype: StorageType = .f32, hints: DetectionHints = DetectionHints()) throws -> (LoadedModel, String) {
    let dir = NSTemporaryDirectory() + "ditkit-sd3-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    var o = ConversionOptions()
    o.dtype = dtype
    o.hints = hints
    _ = try Converter.convert(source: Fixtures.path(source), output: dir + "/m.ditkit", options: o)
    return (try LoadedModel.open(dir + "/m.ditkit"), dir)
}

@Suite struct SD3Tests {
    static let mmditx = "sd3/mmditx/transformer/diffusion_pytorch_model.safetensors"
    static let bare = "sd3/mmditx_bare.safetensors"
    static let full = "sd3/mmditx_full_f16.safetensors"
    static let mmdit = "sd3/mmdit/transformer/diffusion_pytorch_model.safetensors"

    @Test(arguments: [(mmditx, "sd3-diffusers", ""), ("sd3/mmditx", "sd3-diffusers", ""), (bare, "sd3-original", ""),
                      (full, "sd3-original", "model.diffusion_model")])
    func everyLayoutIsDetectedWithItsConfiguration(_ source: String, _ naming: String, _ subtree: String) throws {
        let (m, dir) = try sd3Bundle(source)
        defer { FileSystem.removeTree(dir) }
        let c = try #require(m.configuration.as(SD3Configuration.self))
        #expect(m.configuration.family.name == "sd3")
        #expect(c.numLayers == 3 && c.numHeads == 2 && c.headDim == 4 && c.captionProjectionDim == 8)
        #expect(c.dualAttentionLayers == [0, 1] && c.qkNorm == .rmsNorm && c.posEmbedMaxSize == 6)
        #expect(c.inChannels == 4 && c.outChannels == 4 && c.patchSize == 2 && c.jointAttentionDim == 12 && c.pooledProjectionDim == 10)
        // config.json states the sample size; Stability's files do not (the releases' 128 stands in).
        #expect(c.sampleSize == (naming == "sd3-diffusers" ? 8 : 128))
        #expect(m.configuration.variant == "SD3-custom")
        let bundle = try #require(m.container as? NativeBundle)
        #expect(bundle.manifest.naming == "sd3-diffusers")
        #expect(bundle.manifest.provenance["source"]?["naming"]?.stringValue == naming)
        #expect(bundle.manifest.provenance["source"]?["subtree"]?.stringValue ?? "" == subtree)
        #expect(bundle.manifest.tensors.count == 127)
        #expect(bundle.view("pos_embed.pos_embed")?.shape == [1, 36, 8])
    }

    @Test func layoutsGiveTheSameTensors() throws {
        // Stability's names carry the very same values: q, k, v split from the fused qkv, the final
        // norms' halves swapped back, bit for bit.
        let (a, da) = try sd3Bundle(Self.mmditx)
        let (b, db) = try sd3Bundle(Self.bare)
        // The full single file is f16: it equals diffusers' f32 weights rounded to f16.
        let (c, dc) = try sd3Bundle(Self.mmditx, .f16)
        let (d, dd) = try sd3Bundle(Self.full, .f16)
        defer { for x in [da, db, dc, dd] { FileSystem.removeTree(x) } }
        for (x, y) in [(a, b), (c, d)] {
            let bx = try #require(x.container as? NativeBundle), by = try #require(y.container as? NativeBundle)
            #expect(bx.manifest.tensors.map(\.name) == by.manifest.tensors.map(\.name))
            for t in bx.manifest.tensors {
                #expect(by.manifest.tensors.first { $0.name == t.name }?.stored.checksum == t.stored.checksum, "\(t.name)")
            }
        }
        // The swap is real: the stored bytes differ from the source's for the final norm.
        let bundle = try #require(b.container as? NativeBundle)
        let record = try #require(bundle.manifest.tensors.first { $0.name == "norm_out.linear.weight" })
        #expect(record.transform == "swap-halves")
    }

    static let expectedLayers: [String] = {
        var l = ["pos_embed", "time_text_embed", "context_embedder"]
        let b0 = "transformer_blocks.0."
        l += (0...6).map { b0 + "norm1.\($0)" } + (0...4).map { b0 + "norm1_context.\($0)" }
        l += ["attn.0", "attn.1", "attn2", "norm2", "ff", "norm2_context", "ff_context", "0", "1"].map { b0 + $0 }
        l += ["attn2", "norm2", "ff", "norm2_context", "ff_context", "0", "1"].map { "transformer_blocks.1." + $0 }
        l += ["norm1.0", "norm1_context", "attn.0", "attn.1", "norm2", "ff", "1"].map { "transformer_blocks.2." + $0 }
        return l + ["norm_out", "proj_out", "output"]
    }()

    // f32 against diffusers f32 at every traced module: rel L2 <= 1e-4 (the f32 profile); measured at
    // most ~4e-6 (float32 sin/cos of timesteps near 1000 differ in the last bits between libraries).
    @Test(arguments: [mmditx, bare])
    func forwardMatchesDiffusersAtEveryLayer(_ source: String) throws {
        let (m, dir) = try sd3Bundle(source)
        defer { FileSystem.removeTree(dir) }
        let r = try Verifier.verify(m, reference: Fixtures.path("sd3/mmditx_reference.h5"))
        #expect(r.passed, "\(r.text)")
        #expect(r.layers.map(\.name) == Self.expectedLayers)
        #expect(r.skipped == ["transformer_blocks.0.attn.norm_q"])
        #expect(r.layers.allSatisfy { $0.relL2 < 1e-5 }, "\(r.text)")
    }

    @Test func theFullSingleFileVerifiesAtItsPrecision() throws {
        // Read in place (f16 widened exactly): the f16 profile applies.
        let m = try LoadedModel.open(Fixtures.path(Self.full))
        #expect(m.storage == "f16" && m.configuration.family.name == "sd3")
        let r = try Verifier.verify(m, reference: Fixtures.path("sd3/mmditx_reference.h5"))
        #expect(r.passed, "\(r.text)")
        #expect(r.profile.name == "f16")
        #expect(r.layers.last.map { $0.relL2 > 1e-6 } == true)
    }

    @Test func perturbedBlockIsNamed() throws {
        // The bare file with block 1's image MLP output weights scaled by -1.5, written by DiTKit's
        // safetensors writer, against the unperturbed diffusers reference.
        let dir = NSTemporaryDirectory() + "ditkit-sd3-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { FileSystem.removeTree(dir) }
        let source = try Checkpoint.open(Fixtures.path(Self.bare))
        var items: [SafetensorsItem] = []
        for (i, t) in source.tensors.enumerated() {
            var bytes = Array(try source.bytes(of: i).buffer)
            if t.name == "joint_blocks.1.x_block.mlp.fc2.weight" {
                bytes.withUnsafeMutableBytes { raw in
                    for k in 0..<(raw.count / 4) { raw.storeBytes(of: raw.load(fromByteOffset: 4 * k, as: Float.self) * -1.5, toByteOffset: 4 * k, as: Float.self) }
                }
            }
            let copy = bytes
            items.append(SafetensorsItem(name: t.name, dtype: t.dtype, shape: t.shape, bytes: { RawBytes(copying: copy) }))
        }
        let file = try OutputFile(path: dir + "/perturbed.safetensors")
        try SafetensorsWriter.write(items, metadata: [], to: file)
        try file.close()
        let m = try LoadedModel.open(dir + "/perturbed.safetensors")
        let r = try Verifier.verify(m, reference: Fixtures.path("sd3/mmditx_reference.h5"))
        #expect(!r.passed)
        #expect(r.firstFailingLayer == "transformer_blocks.1.ff")
        let before = r.layers.prefix(while: { !$0.name.hasPrefix("transformer_blocks.1.") })
        #expect(before.count > 20 && before.allSatisfy(\.passed))
    }

    @Test(arguments: [StorageType.f16, .bf16, .int8])
    func everyDtypeVerifiesAgainstTheSource(_ dtype: StorageType) throws {
        for source in [Self.bare, Self.mmdit] {
            let (m, dir) = try sd3Bundle(source, dtype)
            defer { FileSystem.removeTree(dir) }
            let r = try Verifier.verify(m, against: try LoadedModel.open(Fixtures.path(source)))
            #expect(r.passed, "\(dtype) \(source): \(r.text)")
            #expect(r.profile.name == dtype.rawValue)
            let b = try #require(m.container as? NativeBundle)
            if dtype == .int8 {
                // Tensors under 1024 values stay float (ComfyUI-GGUF's threshold): the width-8 mmditx
                // has none to quantize; the width-16 mmdit's 64×16 MLP weights are quantized.
                let quantized = b.manifest.tensors.filter { b.view($0.name)?.dtype == .i8 }.map(\.name)
                if source == Self.mmdit {
                    #expect(Set(quantized) == ["transformer_blocks.0.ff.net.0.proj.weight", "transformer_blocks.0.ff.net.2.weight",
                                               "transformer_blocks.0.ff_context.net.0.proj.weight", "transformer_blocks.0.ff_context.net.2.weight",
                                               "transformer_blocks.1.ff.net.0.proj.weight", "transformer_blocks.1.ff.net.2.weight"])
                    #expect(b.view("transformer_blocks.0.norm1.linear.weight")?.dtype == .f32)
                    #expect(b.view("time_text_embed.timestep_embedder.linear_1.weight")?.dtype == .f32)
                    #expect(b.view("proj_out.weight")?.dtype == .f32)
                    #expect(r.layers.last.map { $0.relL2 > 0 } == true)
                } else {
                    #expect(quantized.isEmpty)
                }
            } else {
                // Lossy, but not lossless: the comparison saw the stored precision.
                #expect(r.layers.last.map { $0.relL2 > 0 } == true)
            }
        }
    }

    @Test func int8PolicyOnThePublishedShapes() throws {
        let c = try #require(SD3Configuration.named("SD3.5-medium"))
        let config = ModelConfiguration(SD3Family(), c)
        let quantized = c.tensorShapes().filter { config.quantizesByDefault($0.name, shape: $0.shape) }.map(\.name)
        // Per block: q, k, v, out of attn (+ add_q/k/v, to_add_out but in the last block) and of attn2
        // in the 13 dual layers, and the two MLP weights of each stream (one stream in the last block).
        let perBlock = (0..<24).map { i in (i == 23 ? 7 : 8) + (i <= 12 ? 4 : 0) + (i == 23 ? 2 : 4) }.reduce(0, +)
        #expect(quantized.count == perBlock)
        #expect(quantized.allSatisfy { $0.hasPrefix("transformer_blocks.") && !$0.contains("norm") })
    }

    @Test func verificationInputsSpanTheTimesteps() throws {
        let config = ModelConfiguration(SD3Family(), try #require(SD3Configuration.named("SD3-medium")))
        let inputs = try SD3Family().verificationInputs("output", config, options: VerificationInputOptions())
        #expect(inputs["hidden_states"]?.shape == [3, 16, 32, 32])
        #expect(inputs["encoder_hidden_states"]?.shape == [3, 16, 4096])
        #expect(inputs["pooled_projections"]?.shape == [3, 2048])
        #expect(inputs["timestep"]?.data == [1000, 500.5, 1])
        #expect(inputs == (try SD3Family().verificationInputs("output", config, options: VerificationInputOptions())))
        // The tiny model's 6×6 position table bounds the default size.
        let (m, dir) = try sd3Bundle(Self.mmditx)
        defer { FileSystem.removeTree(dir) }
        #expect(try m.family.verificationInputs("output", m.configuration, options: VerificationInputOptions())["hidden_states"]?.shape == [3, 4, 8, 8])
    }

    @Test func stabilityReferenceCodeAgrees() throws {
        // tools/make_sd3_fixtures.py ran Stability's mmditx.py on the same weights and inputs: it
        // attends over [text; image] where diffusers attends over [image; text], which only reorders
        // the softmax sums (README, "SD3").
        let check = try JSONReader.parse(try FileSystem.readFile(Fixtures.path("sd3/mmditx_original_check.json")))
        let rel = try #require(check["original_vs_diffusers_rel_l2"]?.doubleValue)
        #expect(rel < 1e-6)
    }

    @Test func publishedConfigurationsMatchDiffusersAndStabilityCounts() throws {
        let counts = try JSONReader.parse(try FileSystem.readFile(Fixtures.path("sd3/published_counts.json")))
        for (name, c) in SD3Configuration.published {
            let key = name == "SD3.5-large-turbo" ? "SD3.5-large" : name
            #expect(c.tensorShapes().count == counts[key]?["diffusers"]?["tensors"]?.intValue, "\(name)")
            #expect(c.parameterCount == counts[key]?["diffusers"]?["parameters"]?.intValue, "\(name)")
            // Stability's MMDiTX holds the same parameters with q, k, v fused (and pos_embed as a buffer).
            #expect(c.parameterCount == counts[key]?["original"]?["parameters"]?.intValue, "\(name)")
            let fusedAway = (0..<c.numLayers).map { 2 * 2 * 2 + (c.isDual($0) ? 2 * 2 : 0) }.reduce(0, +)
            #expect(c.tensorShapes().count - fusedAway == counts[key]?["original"]?["tensors"]?.intValue, "\(name)")
        }
        #expect(SD3Configuration.named("SD3.5-large-turbo")?.variant == "SD3.5-large")
        #expect(SD3Configuration.named("SD3.5-medium")?.variant == "SD3.5-medium")
        let vae = VAEConfiguration.sd3VAE
        #expect(vae.tensorShapes().count == counts["sd3-vae"]?["diffusers"]?["tensors"]?.intValue)
        #expect(vae.parameterCount == counts["sd3-vae"]?["diffusers"]?["parameters"]?.intValue)
    }
}

@Suite struct SD3SingleFileTests {
    @Test func theTransformerIsTheDefaultAndTheVAEIsSelectable() throws {
        let path = Fixtures.path(SD3Tests.full)
        #expect(try LoadedModel.open(path).configuration.family.name == "sd3")
        var byModel = DetectionHints()
        byModel.model = "vae"
        var bySelect = DetectionHints()
        bySelect.select = "first_stage_model"
        for hints in [byModel, bySelect] {
            let m = try LoadedModel.open(path, hints: hints)
            let v = try #require(m.configuration.as(VAEConfiguration.self))
            // SD3's VAE: 16 latent channels, no quant convolutions; the weights cannot tell the latent
            // scaling, the SD3 transformer beside it does.
            #expect(v.latentChannels == 16 && !v.useQuantConv && !v.usePostQuantConv && !v.midAttention)
            #expect(v.scalingFactor == 1.5305 && v.shiftFactor == 0.0609)
            #expect(m.storage == "f16")
        }
        // The text encoders are nobody's model.
        var te = DetectionHints()
        te.select = "text_encoders"
        do {
            _ = try LoadedModel.open(path, hints: te)
            Issue.record("text_encoders opened as a model")
        } catch {
            #expect("\(error)".contains("--select text_encoders: no model DiTKit knows under that path"), "\(error)")
        }
    }

    /// The published SD3 VAE in LDM names (as Stability's single files hold it), names and shapes only.
    static func publishedVAE(prefix: String) -> [SourceTensor] {
        let config = ModelConfiguration(SDVAEFamily(), VAEConfiguration.sd3VAE)
        let ldm = SDVAEFamily().exportNamings(config).first { $0.name == "ldm" }
        return VAEConfiguration.sd3VAE.tensorShapes().flatMap { t in
            (ldm?.map(t.name, t.shape) ?? []).map { SourceTensor(name: prefix + $0.name, dtype: .f16, shape: $0.shape ?? t.shape) }
        }
    }

    @Test func thePublishedVAEGetsItsScalingFromItsTransformerOrFromModel() throws {
        let sd3 = try #require(SD3Configuration.named("SD3-medium"))
        let transformer = sd3.tensorShapes().map { SourceTensor(name: "model.diffusion_model." + $0.name, dtype: .f16, shape: $0.shape) }
        // In diffusers names under Stability's prefix: only the VAE's scaling matters here.
        let file = transformer + Self.publishedVAE(prefix: "first_stage_model.")
        #expect(try ModelDetector.plan(file).configuration.family.name == "sd3")
        var h = DetectionHints()
        h.model = "vae"
        let vae = try ModelDetector.plan(file, hints: h).configuration
        #expect(vae.variant == "sd3-vae")
        // Alone, the weights cannot tell (FLUX.1's VAE has the same shapes): refused, unless --model sd3-vae
        // states SD3's.
        let alone = Self.publishedVAE(prefix: "")
        #expect(throws: ModelError.self) { try ModelDetector.plan(alone) }
        h.model = "sd3-vae"
        let named = try ModelDetector.plan(alone, hints: h).configuration
        #expect(named.variant == "sd3-vae")
        #expect(named.as(VAEConfiguration.self)?.shiftFactor == 0.0609)
    }

    // The pipeline's decode: vae.decode(latents / 1.5305 + 0.0609), f16 weights widened exactly, f32
    // arithmetic; measured rel L2 ~1e-7, the bar is 1e-4.
    @Test func decodingAppliesSD3sScalingAndShift() throws {
        var h = DetectionHints()
        h.model = "vae"
        let vae = try LoadedModel.open(Fixtures.path(SD3Tests.full), hints: h)
        let ref = try HDF5File.open(Fixtures.path("sd3/vae_decoded.h5"))
        let (ls, lv) = try ref.readFloats("/latents")
        let (shape, expected) = try ref.readFloats("/images")
        let images = try #require(try vae.family.decodeLatents(Tensor(shape: ls, data: lv), vae.configuration, weights: vae.weights, progress: nil))
        #expect(images.shape == shape)
        let rel = LayerComparison.compare("images", images.data, expected, shape: shape, threshold: 1e-4).relL2
        #expect(rel < 1e-4, "rel L2 \(rel)")
    }
}

@Suite struct SD3SamplingTests {
    /// diffusers' StableDiffusion3Pipeline (FlowMatchEulerDiscreteScheduler, shift 3.0, 8 steps,
    /// guidance 4.5, the text features and noise given) on the mmdit transformer.
    func sample(_ source: String, text: String = "sd3/text.h5", cfg: Float = 4.5) throws -> Double {
        let m = try LoadedModel.open(Fixtures.path(source))
        var o = SamplingOptions()
        o.steps = "8"
        o.cfgScale = cfg
        let noise = try Sampling.readNoise(Fixtures.path("sd3/noise.h5"))
        let r = try Sampling.run(model: m, vae: nil, conditioning: SamplingConditioning(featuresPath: text.hasPrefix("/") ? text : Fixtures.path(text)),
                                 options: o, noise: noise)
        #expect(r.labels == ["prompt0", "prompt1"])
        let ref = try HDF5File.open(Fixtures.path("sd3/mmdit_latents.h5"))
        let (shape, expected) = try ref.readFloats("/latents")
        #expect(shape == r.latents.shape)
        return LayerComparison.compare("latents", r.latents.data, expected, shape: shape, threshold: 1e-4).relL2
    }

    // Latents agree with diffusers' loop to float rounding; the bar is 1e-4.
    @Test func guidedFlowMatchingMatchesTheDiffusersPipeline() throws {
        let rel = try sample(SD3Tests.mmdit)
        #expect(rel < 1e-4, "rel L2 \(rel)")
        // Without guidance the loop is another one: the comparison can fail.
        #expect(try sample(SD3Tests.mmdit, cfg: 1) > 1e-2)
    }

    @Test func guidanceWithoutNegativeFeaturesIsRefused() throws {
        let dir = NSTemporaryDirectory() + "ditkit-sd3-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { FileSystem.removeTree(dir) }
        let src = try HDF5File.open(Fixtures.path("sd3/text.h5"))
        let f = try HDF5File.create(dir + "/t.h5")
        for name in ["/encoder_hidden_states", "/pooled_projections"] {
            let (s, v) = try src.readFloats(name)
            try f.writeFloats(name, shape: s, v)
        }
        try f.flush()
        #expect(throws: ModelError.self) { _ = try sample(SD3Tests.mmdit, text: dir + "/t.h5") }
        // The same features without guidance sample (and differ from the guided reference).
        #expect(try sample(SD3Tests.mmdit, text: dir + "/t.h5", cfg: 1) > 1e-2)
    }
}

@Suite struct SD3SamplerDefaultsTests {
    /// Without --steps / --cfg, SD3 samples as StableDiffusion3Pipeline's defaults (28 Euler steps,
    /// guidance 7.0), not with DiT's 250-step respacing; what was given wins, DDIM is refused.
    @Test func pipelineDefaultsApplyWhenNothingIsGiven() throws {
        let (m, dir) = try sd3Bundle(SD3Tests.mmdit)
        defer { FileSystem.removeTree(dir) }
        let text = SamplingConditioning(featuresPath: Fixtures.path("sd3/text.h5"))
        var o = SamplingOptions()
        o.stepsGiven = false
        o.cfgGiven = false
        let s = try Sampling.sampler(m, options: o, conditioning: text)
        #expect(s.summary == SamplerSummary(method: "flow-euler", steps: 28, cfgScale: 7.0, schedule: "shift 3.0"))
        #expect(s.summary.description == "flow matching, 28 Euler steps, shift 3.0, cfg 7.0")
        o.steps = "8"
        o.stepsGiven = true
        o.cfgScale = 4.5
        o.cfgGiven = true
        #expect(try Sampling.sampler(m, options: o, conditioning: text).summary.description == "flow matching, 8 Euler steps, shift 3.0, cfg 4.5")
        o.ddim = true
        #expect(throws: ModelError.self) { try Sampling.sampler(m, options: o, conditioning: text) }
    }
}
