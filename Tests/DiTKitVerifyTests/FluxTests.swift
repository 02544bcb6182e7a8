// FLUX.1 end to end: the diffusers folder, BFL's layout (float8) and ComfyUI's prefixed copy (float8)
// detected and loaded strictly, the forward pass against diffusers at every layer, a perturbed block
// named, every dtype against the source, verification inputs as FluxPipeline builds them, and
// sampling against diffusers' FluxPipeline loop for dev and schnell. Fixtures:
// tools/make_flux_fixtures.py.
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitNumerics
import DiTKitConvert
@testable import DiTKitVerify

/// Converts a FLUX fixture into a fresh directory.
func fluxBundle(_ source: String, _ dtype: StorageType = .f32) throws -> (LoadedModel, String) {
    let dir = NSTemporaryDirectory() + "ditkit-flux-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    var o = ConversionOptions()
    o.dtype = dtype
    _ = try Converter.convert(source: Fixtures.path(source), output: dir + "/m.ditkit", options: o)
    return (try LoadedModel.open(dir + "/m.ditkit"), dir)
}

@Suite struct FluxTests {
    static let dev = ["flux/dev", "flux/dev_bfl_fp8.safetensors"]
    static let schnell = "flux/schnell_comfy_fp8.safetensors"

    @Test func everyLayoutIsDetectedWithItsConfiguration() throws {
        for source in Self.dev + [Self.schnell] {
            let (m, dir) = try fluxBundle(source)
            defer { FileSystem.removeTree(dir) }
            let c = try #require(m.configuration.as(FluxConfiguration.self))
            let isDev = source.contains("dev")
            #expect(m.configuration.family.name == "flux" && m.configuration.variant == "FLUX-custom")
            #expect(c.guidanceEmbeds == isDev)
            #expect(c.numLayers == 1 && c.numSingleLayers == 1)
            #expect(c.numHeads == 2 && c.headDim == 16 && c.axesDimsRope == [4, 6, 6] && c.mlpRatio == 4)
            #expect(c.inChannels == 64 && c.outChannels == nil && c.jointAttentionDim == 32 && c.pooledProjectionDim == 16 && c.latentChannels == 16)
            let bundle = try #require(m.container as? NativeBundle)
            #expect(bundle.manifest.naming == "flux-diffusers")
            let provenance = try #require(bundle.manifest.provenance["source"])
            #expect(provenance["naming"]?.stringValue == (source == "flux/dev" ? "flux-diffusers" : "flux-original"))
            #expect(provenance["subtree"]?.stringValue == (source == Self.schnell ? "model.diffusion_model" : ""))
            #expect(m.configuration.parameterCount == (isDev ? 81_152 : 71_872))
        }
    }

    @Test func bothLayoutsGiveTheSameTensors() throws {
        // bf16 diffusers weights and the float8 BFL file hold the same values (the generator rounded
        // them through float8): split qkv, the uneven linear1 split and the swapped final modulation
        // must reproduce every diffusers tensor bit for bit.
        let (a, da) = try fluxBundle("flux/dev")
        let (b, db) = try fluxBundle("flux/dev_bfl_fp8.safetensors")
        defer { FileSystem.removeTree(da); FileSystem.removeTree(db) }
        let ba = try #require(a.container as? NativeBundle), bb = try #require(b.container as? NativeBundle)
        #expect(ba.tensorNames == bb.tensorNames)
        for t in ba.manifest.tensors {
            let x = try #require(ba.view(t.name)), y = try #require(bb.view(t.name), "\(t.name) missing from the BFL layout")
            #expect(x.shape == y.shape && x.floats() == y.floats(), "\(t.name)")
        }
        let transforms = Dictionary(uniqueKeysWithValues: bb.manifest.tensors.map { ($0.name, $0.transform) })
        #expect(transforms["single_transformer_blocks.0.proj_mlp.weight"] == "row-range 96+128")
        #expect(transforms["transformer_blocks.0.attn.add_v_proj.bias"] == "row-slice 2/3")
        #expect(transforms["norm_out.linear.weight"] == "swap-halves")
    }

    static let expectedLayers: [String] = {
        var l = ["x_embedder", "time_text_embed.timestep_embedder", "time_text_embed.guidance_embedder", "time_text_embed.text_embedder",
                 "time_text_embed", "context_embedder", "pos_embed.0", "pos_embed.1"]
        let b = "transformer_blocks.0"
        l += (0..<5).map { "\(b).norm1.\($0)" } + (0..<5).map { "\(b).norm1_context.\($0)" }
        l += ["attn.0", "attn.1", "norm2", "ff", "norm2_context", "ff_context", "0", "1"].map { "\(b).\($0)" }
        l += ["norm.0", "norm.1", "attn", "0", "1"].map { "single_transformer_blocks.0.\($0)" }
        return l + ["norm_out", "output"]
    }()

    // f32 against diffusers f32 at every traced module: rel L2 <= 1e-4 (the f32 profile); measured <= 2.2e-6
    // (the 256-channel sin/cos timestep features and what is computed from them are the least exact).
    @Test(arguments: dev)
    func forwardMatchesDiffusersAtEveryLayer(_ source: String) throws {
        let (m, dir) = try fluxBundle(source)
        defer { FileSystem.removeTree(dir) }
        let r = try Verifier.verify(m, reference: Fixtures.path("flux/dev_reference.h5"))
        #expect(r.passed, "\(r.text)")
        #expect(r.layers.map(\.name) == Self.expectedLayers)
        #expect(r.skipped == ["transformer_blocks.0.attn.to_q"])
        #expect(r.layers.allSatisfy { $0.relL2 < 1e-5 })
    }

    @Test func schnellFromComfyMatchesDiffusers() throws {
        let (m, dir) = try fluxBundle(Self.schnell)
        defer { FileSystem.removeTree(dir) }
        let r = try Verifier.verify(m, reference: Fixtures.path("flux/schnell_reference.h5"))
        #expect(r.passed, "\(r.text)")
        // The conditioning vector (no guidance embedding) and block 0's streams, then the output.
        #expect(r.layers.map(\.name) == ["time_text_embed", "transformer_blocks.0.0", "transformer_blocks.0.1", "output"])
        #expect(r.layers.allSatisfy { $0.relL2 < 1e-5 })
        // The source itself, read through its plan (float8 widened on the fly), is the same model.
        let direct = try Verifier.verify(try LoadedModel.open(Fixtures.path(Self.schnell)), reference: Fixtures.path("flux/schnell_reference.h5"))
        #expect(direct.passed)
    }

    @Test func perturbedBlockIsNamed() throws {
        // The float8 BFL file with single block 0's output projection (linear2) negated (the float8 sign
        // bit flipped), written by DiTKit's safetensors writer, against the unperturbed diffusers reference.
        let dir = NSTemporaryDirectory() + "ditkit-flux-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { FileSystem.removeTree(dir) }
        let source = try Checkpoint.open(Fixtures.path(Self.dev[1]))
        var items: [SafetensorsItem] = []
        for (i, t) in source.tensors.enumerated() {
            var bytes = Array(try source.bytes(of: i).buffer)
            if t.name == "single_blocks.0.linear2.weight" {
                #expect(t.dtype == .f8e4m3)
                bytes = bytes.map { $0 ^ 0x80 }
            }
            let copy = bytes
            items.append(SafetensorsItem(name: t.name, dtype: t.dtype, shape: t.shape, bytes: { RawBytes(copying: copy) }))
        }
        let file = try OutputFile(path: dir + "/perturbed.safetensors")
        try SafetensorsWriter.write(items, metadata: [], to: file)
        try file.close()
        let r = try Verifier.verify(try LoadedModel.open(dir + "/perturbed.safetensors"), reference: Fixtures.path("flux/dev_reference.h5"))
        #expect(!r.passed)
        #expect(r.firstFailingLayer == "single_transformer_blocks.0.0")
        let before = r.layers.prefix { $0.name != "single_transformer_blocks.0.0" }
        #expect(before.count == Self.expectedLayers.count - 4 && before.allSatisfy { $0.passed })
    }

    @Test(arguments: [StorageType.f16, .bf16, .int8])
    func everyDtypeVerifiesAgainstTheSource(_ dtype: StorageType) throws {
        for source in [Self.dev[1], Self.schnell] {
            let (m, dir) = try fluxBundle(source, dtype)
            defer { FileSystem.removeTree(dir) }
            let r = try Verifier.verify(m, against: try LoadedModel.open(Fixtures.path(source)))
            #expect(r.passed, "\(dtype) \(source): \(r.text)")
            #expect(r.profile.name == dtype.rawValue)
            if dtype == .int8 {
                // Lossy, and the comparison saw it.
                #expect(r.layers.last.map { $0.relL2 > 0 } == true)
                let b = try #require(m.container as? NativeBundle)
                for name in ["transformer_blocks.0.attn.to_q.weight", "transformer_blocks.0.ff_context.net.2.weight",
                             "single_transformer_blocks.0.proj_mlp.weight", "single_transformer_blocks.0.proj_out.weight"] {
                    #expect(b.view(name)?.dtype == .i8, "\(name)")
                }
                for name in ["x_embedder.weight", "context_embedder.weight", "proj_out.weight", "norm_out.linear.weight",
                             "transformer_blocks.0.norm1.linear.weight", "transformer_blocks.0.norm1_context.linear.weight",
                             "single_transformer_blocks.0.norm.linear.weight", "time_text_embed.timestep_embedder.linear_1.weight",
                             "transformer_blocks.0.attn.norm_q.weight", "transformer_blocks.0.attn.to_q.bias"] {
                    #expect(b.view(name)?.dtype == .f32, "\(name)")
                }
            } else {
                // float8 values are exact in f16 and bf16 (every code but the subnormal extremes of
                // e5m2, which the fixtures avoid): the stored model is the source model.
                #expect(r.layers.allSatisfy { $0.relL2 == 0 }, "\(dtype) \(source)")
            }
        }
    }

    @Test func verificationInputsAreWhatThePipelineBuilds() throws {
        let family = FluxFamily()
        let dev = try #require(family.configuration(named: "FLUX.1-dev", imageSize: nil))
        let inputs = try family.verificationInputs("output", dev, options: VerificationInputOptions())
        #expect(inputs["hidden_states"]?.shape == [2, 48, 64])
        #expect(inputs["encoder_hidden_states"]?.shape == [2, 8, 4096] && inputs["pooled_projections"]?.shape == [2, 768])
        #expect(inputs["timestep"]?.data == [1, 0.25] && inputs["guidance"]?.data == [3.5, 1])
        #expect(inputs["txt_ids"]?.data.allSatisfy { $0 == 0 } == true && inputs["txt_ids"]?.shape == [8, 3])
        // img_ids rows (0, row, col), row-major over an 8×6 token grid.
        let ids = try #require(inputs["img_ids"]?.data)
        #expect(Array(ids[0..<9]) == [0, 0, 0, 0, 0, 1, 0, 0, 2] && Array(ids[(6 * 3)..<(6 * 3 + 3)]) == [0, 1, 0] && Array(ids.suffix(3)) == [0, 7, 5])
        #expect(inputs == (try family.verificationInputs("output", dev, options: VerificationInputOptions())))
        let schnell = try #require(family.configuration(named: "FLUX.1-schnell", imageSize: nil))
        #expect(try family.verificationInputs("output", schnell, options: VerificationInputOptions(imageSize: 256))["guidance"] == nil)
        #expect(try family.verificationInputs("output", schnell, options: VerificationInputOptions(imageSize: 256))["img_ids"]?.shape == [256, 3])
    }

    @Test func publishedConfigurationsHaveTheReleasesCounts() throws {
        // Tensor and parameter counts from diffusers' FluxTransformer2DModel (tools/make_flux_fixtures.py).
        let counts = try JSONReader.parse(try FileSystem.readFile(Fixtures.path("flux/published_counts.json")))
        for name in ["FLUX.1-dev", "FLUX.1-schnell"] {
            let c = try #require(FluxFamily().configuration(named: name, imageSize: nil))
            #expect(c.variant == name)
            #expect(c.tensorShapes().count == counts[name]?["diffusers"]?["tensors"]?.intValue)
            #expect(c.parameterCount == counts[name]?["diffusers"]?["parameters"]?.intValue)
            let f = try #require(c.as(FluxConfiguration.self))
            #expect(f.axesDimsRope == [16, 56, 56] && FluxConfiguration.defaultAxes(headDim: 128) == [16, 56, 56])
            // The manifest form reads back to the same configuration.
            #expect(try FluxFamily().configuration(json: c.json) == c)
        }
    }

    @Test func configJsonStatesWhatWeightsCannot() throws {
        let dir = NSTemporaryDirectory() + "ditkit-flux-config-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { FileSystem.removeTree(dir) }
        let weights = try FileSystem.readFile(Fixtures.path("flux/dev/transformer/diffusion_pytorch_model.safetensors"))
        try FileSystem.writeFile(dir + "/diffusion_pytorch_model.safetensors", weights)
        let original = String(decoding: try FileSystem.readFile(Fixtures.path("flux/dev/transformer/config.json")), as: UTF8.self)
        // Other rotary axes: read from config.json (the weights cannot tell them).
        try FileSystem.writeFile(dir + "/config.json", Array(original.replacingOccurrences(of: "4,\n    6,\n    6", with: "8,\n    4,\n    4").utf8))
        let m = try LoadedModel.open(dir)
        #expect(m.configuration.as(FluxConfiguration.self)?.axesDimsRope == [8, 4, 4])
        // A config.json that disagrees with the weights is refused, naming what disagrees.
        try FileSystem.writeFile(dir + "/config.json", Array(original.replacingOccurrences(of: "\"num_single_layers\": 1", with: "\"num_single_layers\": 3").utf8))
        let error = #expect(throws: (any Error).self) { try LoadedModel.open(dir) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("num_single_layers 3 (the weights have 1)"))
    }

    @Test func scaledFloat8CheckpointsAreRefusedByName() throws {
        let dir = NSTemporaryDirectory() + "ditkit-flux-scaled-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { FileSystem.removeTree(dir) }
        let source = try Checkpoint.open(Fixtures.path(Self.schnell))
        var items = try source.tensors.indices.map { i -> SafetensorsItem in
            let e = source.tensors[i]
            let copy = RawBytes(copying: Array(try source.bytes(of: i).buffer))
            return SafetensorsItem(name: e.name, dtype: e.dtype, shape: e.shape, bytes: { copy })
        }
        items.append(SafetensorsItem(name: "model.diffusion_model.img_in.scale_weight", dtype: .f32, shape: [1], bytes: { RawBytes(copying: [0, 0, 128, 63]) }))
        let path = dir + "/scaled.safetensors"
        let file = try OutputFile(path: path)
        try SafetensorsWriter.write(items, metadata: [], to: file)
        try file.close()
        let error = #expect(throws: (any Error).self) { try LoadedModel.open(path) }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("model.diffusion_model.img_in.scale_weight") && text.contains("scaled-float8"), "\(text)")
    }

    @Test func packingIsThePipelines() throws {
        // [1, 2, 4, 4]: token (r, c) holds each channel's 2×2 patch row-major.
        let x = Tensor(shape: [1, 2, 4, 4], data: (0..<32).map(Float.init))
        let p = try FluxPacking.pack(x)
        #expect(p.shape == [1, 4, 8])
        #expect(Array(p.data[0..<8]) == [0, 1, 4, 5, 16, 17, 20, 21])
        #expect(Array(p.data[8..<16]) == [2, 3, 6, 7, 18, 19, 22, 23])
        #expect(try FluxPacking.unpack(p, height: 4, width: 4) == x)
        #expect(throws: ModelError.self) { try FluxPacking.pack(Tensor(zeros: [1, 2, 3, 4])) }
    }
}

@Suite struct FluxSamplingTests {
    /// diffusers' FluxPipeline, 4 steps, prompt embeds given directly, output_type "latent", from
    /// the same noise (packed as the pipeline packs it) and text features
    /// (tools/make_flux_fixtures.py), unpacked.
    func sample(_ source: String, expected: String, steps: String? = "4", cfg: Float? = 3.5) throws -> Double {
        let (m, dir) = try fluxBundle(source)
        defer { FileSystem.removeTree(dir) }
        var o = SamplingOptions()
        o.steps = steps ?? "250"
        o.stepsGiven = steps != nil
        o.cfgScale = cfg ?? 4
        o.cfgGiven = cfg != nil
        let noise = try Sampling.readNoise(Fixtures.path("flux/noise.h5"))
        let r = try Sampling.run(model: m, vae: nil, conditioning: SamplingConditioning(featuresPath: Fixtures.path("flux/text.h5"), imageSize: 32),
                                 options: o, noise: noise)
        #expect(r.labels == ["prompt0", "prompt1"])
        let ref = try HDF5File.open(Fixtures.path(expected))
        let (shape, values) = try ref.readFloats("/latents")
        #expect(shape == r.latents.shape && shape == [2, 16, 4, 4])
        return LayerComparison.compare("latents", r.latents.data, values, shape: shape, threshold: 1e-4).relL2
    }

    // Latents agree with diffusers' loop to float rounding (measured 9.8e-8 dev, 8.7e-8 schnell); the bar is 1e-4.
    @Test func devWithGuidanceAndTheResolutionShiftMatchesFluxPipeline() throws {
        #expect(try sample("flux/dev_bfl_fp8.safetensors", expected: "flux/dev_latents.h5") < 1e-4)
        // Another guidance value gives other latents: the guidance embedding is used.
        #expect(try sample("flux/dev_bfl_fp8.safetensors", expected: "flux/dev_latents.h5", cfg: 1.5) > 1e-3)
    }

    @Test func schnellInFourUnshiftedStepsMatchesFluxPipeline() throws {
        // schnell's defaults are the pipeline's 4 steps; guidance does not apply, so asking for it is refused.
        #expect(try sample(Self.schnellSource, expected: "flux/schnell_latents.h5", steps: nil, cfg: nil) < 1e-4)
        #expect(try sample(Self.schnellSource, expected: "flux/schnell_latents.h5", steps: "4", cfg: nil) < 1e-4)
        #expect(throws: ModelError.self) { try sample(Self.schnellSource, expected: "flux/schnell_latents.h5", steps: "4", cfg: 7) }
    }
    static let schnellSource = "flux/schnell_comfy_fp8.safetensors"

    @Test func samplerSchedulesAsThePipeline() throws {
        let (m, dir) = try fluxBundle("flux/dev")
        defer { FileSystem.removeTree(dir) }
        let text = try FluxText.read(Fixtures.path("flux/text.h5"), configuration: try #require(m.configuration.as(FluxConfiguration.self)))
        let model = FluxModel(config: try #require(m.configuration.as(FluxConfiguration.self)), weights: m.weights)
        var o = SamplingOptions()
        o.stepsGiven = false
        o.cfgGiven = false
        let s = try FluxSampler(model: model, text: text, options: o, imageSize: 1024)
        // FLUX.1-dev defaults: 28 steps, guidance 3.5, mu for 4096 tokens (1.15).
        #expect(s.schedule == (try FlowMatchSchedule.dynamic(steps: 28, mu: 1.15)) && s.guidance == 3.5)
        #expect(s.summary.description == "flow matching, 28 Euler steps, mu 1.15, guidance 3.5 (embedded)")
        #expect(s.latentShape == [2, 16, 128, 128])
        #expect(throws: ModelError.self) { try FluxSampler(model: model, text: text, options: o, imageSize: 1000) }
    }

    @Test func textFeaturesNeedThePooledProjections() throws {
        let dir = NSTemporaryDirectory() + "ditkit-flux-text-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { FileSystem.removeTree(dir) }
        let f = try HDF5File.create(dir + "/t.h5")
        try f.writeFloats("/encoder_hidden_states", shape: [1, 2, 32], [Float](repeating: 0, count: 64))
        try f.flush()
        var c = FluxConfiguration(guidanceEmbeds: true)
        c.jointAttentionDim = 32
        let error = #expect(throws: (any Error).self) { try FluxText.read(dir + "/t.h5", configuration: c) }
        #expect((error.map { "\($0)" } ?? "").contains("/pooled_projections"))
    }
}

/// The FLUX.1 VAE: how its latent scale and shift are set (its weights do not record them).
@Suite struct FluxVAETests {
    /// A small 16-channel AutoencoderKL without quant convolutions, written under BFL's ae.safetensors
    /// names (the LDM names: `encoder.down.0.block.0`, `mid.attn_1.q` as 1x1 convolutions, …),
    /// under `prefix`, or under diffusers names; random values.
    func write(_ path: String, prefix: String = "", diffusersNames: Bool = false) throws {
        var c = VAEConfiguration()
        c.blockOutChannels = [32, 32]
        c.layersPerBlock = 1
        c.latentChannels = 16
        c.useQuantConv = false
        c.usePostQuantConv = false
        var rng = SeededRandom(seed: 5)
        let items = c.tensorShapes().map { t -> SafetensorsItem in
            var name = t.name, shape = t.shape
            if !diffusersNames {
                name = VAENaming.toLDM.remap(t.name, levels: c.levels).name
                if name.contains(".attn_1."), name.hasSuffix(".weight"), shape.count == 2 { shape += [1, 1] }
            }
            let values = rng.normals(shape.reduce(1, *)).map { $0 * 0.05 }
            let bytes = RawBytes(copying: values.withUnsafeBytes { Array($0) })
            return SafetensorsItem(name: prefix + name, dtype: .f32, shape: shape, bytes: { bytes })
        }
        let file = try OutputFile(path: path)
        try SafetensorsWriter.write(items, metadata: [], to: file)
        try file.close()
    }

    func factors(_ m: LoadedModel) -> (Double, Double?) {
        let v = m.configuration.as(VAEConfiguration.self)
        return (v?.scalingFactor ?? 0, v?.shiftFactor)
    }

    @Test func aBFLAutoencoderFileTakesFluxFactors() throws {
        let dir = NSTemporaryDirectory() + "ditkit-flux-vae-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { FileSystem.removeTree(dir) }
        try write(dir + "/ae.safetensors")
        let m = try LoadedModel.open(dir + "/ae.safetensors")
        #expect(m.configuration.family.name == "vae")
        #expect(factors(m) == (0.3611, 0.1159))
        // Explicit factors win.
        var h = DetectionHints()
        h.scalingFactor = 1.5305
        h.shiftFactor = 0.0609
        #expect(factors(try LoadedModel.open(dir + "/ae.safetensors", hints: h)) == (1.5305, 0.0609))
        // Elsewhere (inside a bigger file, or under diffusers names without config.json) the factors
        // cannot be guessed: refused unless given.
        try write(dir + "/full.safetensors", prefix: "vae.")
        try write(dir + "/diffusers.safetensors", diffusersNames: true)
        for f in ["full", "diffusers"] {
            let error = #expect(throws: FileError.self) { try LoadedModel.open(dir + "/\(f).safetensors") }
            #expect("\(error.map { "\($0)" } ?? "")".contains("--model flux-vae"))
            #expect(factors(try LoadedModel.open(dir + "/\(f).safetensors", hints: h)) == (1.5305, 0.0609))
        }
    }

    @Test func theReleasedShapesTakeTheirFactorsFromTheLayoutOrModel() throws {
        // FLUX.1's VAE in LDM names, names and shapes only: float32 at the root is BFL's ae.safetensors;
        // the same shapes in f16 (an extracted SD3 VAE, say) cannot be told apart and need --model.
        let config = ModelConfiguration(SDVAEFamily(), VAEConfiguration.fluxVAE)
        let ldm = try #require(SDVAEFamily().exportNamings(config).first { $0.name == "ldm" })
        func tensors(_ dtype: DType) -> [SourceTensor] {
            VAEConfiguration.fluxVAE.tensorShapes().flatMap { t in ldm.map(t.name, t.shape).map { SourceTensor(name: $0.name, dtype: dtype, shape: $0.shape ?? t.shape) } }
        }
        let bfl = try ModelDetector.plan(tensors(.f32))
        #expect(bfl.configuration.variant == "flux-vae")
        #expect(throws: ModelError.self) { try ModelDetector.plan(tensors(.f16)) }
        var h = DetectionHints()
        for (model, variant) in [("flux-vae", "flux-vae"), ("sd3-vae", "sd3-vae")] {
            h.model = model
        let named = try ModelDetector.plan(tensors(.f16), hints: h)
            #expect(named.configuration.variant == variant)
        }
        h.model = "sd3-vae"
        let sd3 = try ModelDetector.plan(tensors(.f32), hints: h)
        #expect(sd3.configuration.variant == "sd3-vae")
        // In a single file beside FLUX.1 (ComfyUI's checkpoints), the VAE takes FLUX.1's factors, and the
        // file converts its transformer by default.
        let flux = try #require(FluxConfiguration.named("FLUX.1-schnell"))
        let file = flux.tensorShapes().map { SourceTensor(name: "model.diffusion_model." + $0.name, dtype: .bf16, shape: $0.shape) }
            + tensors(.bf16).map { SourceTensor(name: "vae." + $0.name, dtype: $0.dtype, shape: $0.shape) }
        let transformer = try ModelDetector.plan(file)
        #expect(transformer.configuration.variant == "FLUX.1-schnell")
        h.model = "vae"
        let companion = try ModelDetector.plan(file, hints: h)
        #expect(companion.configuration.variant == "flux-vae")
    }

    @Test func theNamedConfigurationIsTheRelease() throws {
        let counts = try JSONReader.parse(try FileSystem.readFile(Fixtures.path("flux/published_counts.json")))
        let c = try #require(SDVAEFamily().configuration(named: "flux-vae", imageSize: nil))
        #expect(c.variant == "flux-vae" && SDVAEFamily().latentChannels(c) == 16)
        #expect(c.tensorShapes().count == counts["flux-vae"]?["diffusers"]?["tensors"]?.intValue)
        #expect(c.parameterCount == counts["flux-vae"]?["diffusers"]?["parameters"]?.intValue)
        #expect(SDVAEFamily().diffusersConfig(c)?["shift_factor"] == .double(0.1159))
    }
}
