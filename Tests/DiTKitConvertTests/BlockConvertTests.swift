// `convert --dtype q8_0 … q6_k` for every family: the family's policy chooses the quantized
// tensors (at least as conservative as ComfyUI-GGUF's converter, checked on the published shapes
// under ComfyUI's own names), quantized bytes are BlockConversion's (ggml's), kept tensors hold
// their source values exactly, rows that do not divide fall back as FORMAT.md says, and the
// manifest records every tensor not stored in the requested type, with the reason.
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitConvert

/// One fixture per family (the 2-D weights of DiT, the VAE, PixArt and FLUX have rows of 32 or more).
let blockFixtures: [(family: String, source: String, heads: Int?)] = [
    ("dit", "verify/dit_verify.pt", 2),
    ("vae", "verify/vae_verify/diffusion_pytorch_model.safetensors", nil),
    ("pixart", "pixart/sigma/transformer/diffusion_pytorch_model.safetensors", nil),
    ("sd3", "sd3/mmdit/transformer/diffusion_pytorch_model.safetensors", nil),
    ("flux", "flux/dev_bfl_fp8.safetensors", nil),
]

func convertFixture(_ source: String, heads: Int?, _ dtype: StorageType?, into dir: String, name: String, extra: (inout ConversionOptions) -> Void = { _ in }) throws -> NativeBundle {
    var o = ConversionOptions()
    o.dtype = dtype
    o.hints.numHeads = heads
    extra(&o)
    _ = try Converter.convert(source: Fixtures.path(source), output: dir + "/" + name, options: o)
    return try NativeBundle(path: dir + "/" + name)
}

@Suite struct BlockConvertTests {
    /// Every family, every block type: what is quantized, what is kept and why, and the bytes.
    @Test(arguments: StorageType.allCases.filter { $0.blockType != nil })
    func everyFamilyConvertsWithItsPolicy(_ storage: StorageType) throws {
        let type = try #require(storage.blockType)
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        for (family, source, heads) in blockFixtures {
            let f32 = try convertFixture(source, heads: heads, .f32, into: dir, name: "\(family)-f32.ditkit")
            let srcBundle = try convertFixture(source, heads: heads, .source, into: dir, name: "\(family)-src.ditkit")
            let b = try convertFixture(source, heads: heads, storage, into: dir, name: "\(family).ditkit")
            let config = try ModelConfiguration(family: b.manifest.family, json: b.manifest.config)
            let policy = config.blockPolicy
            let blocks = try #require(b.manifest.dtypePolicy["blocks"])
            #expect(b.manifest.dtypePolicy["dtype"]?.stringValue == storage.rawValue)
            #expect(blocks["type"]?.stringValue == type.name)
            #expect(blocks["quantized"]?.stringValue == policy.quantized)
            let recorded = Dictionary(uniqueKeysWithValues: (blocks["tensors"]?.arrayValue ?? []).map {
                ($0["name"]?.stringValue ?? "", ($0["dtype"]?.stringValue ?? "", $0["reason"]?.stringValue ?? ""))
            })
            var quantized = 0
            for t in b.manifest.tensors {
                let view = try #require(b.view(t.name))
                let reference = try #require(f32.view(t.name)).floats()
                let keptType = try #require(srcBundle.view(t.name)).dtype
                if let why = policy.keepReason(t.name, shape: t.stored.shape) {
                    // Kept: the source type, values exact, and the reason in the manifest.
                    #expect(view.dtype == keptType && view.floats() == reference, "\(family) \(t.name)")
                    #expect(recorded[t.name]?.0 == keptType.name && recorded[t.name]?.1 == why, "\(family) \(t.name): \(String(describing: recorded[t.name]))")
                    continue
                }
                let row = t.stored.shape.last ?? 0
                let expected: DType?
                if row % type.block!.elements == 0 { expected = type }
                else if let f = StoragePlan.fallback(for: type), row % 32 == 0 { expected = f }
                else { expected = nil }
                guard let expected else {
                    #expect(view.dtype == keptType && view.floats() == reference, "\(family) \(t.name)")
                    #expect(recorded[t.name]?.1.hasPrefix("rows of \(row) values are not a multiple of") == true, "\(family) \(t.name)")
                    continue
                }
                #expect(view.dtype == expected, "\(family) \(t.name)")
                #expect((recorded[t.name] == nil) == (expected == type), "\(family) \(t.name)")
                // The stored blocks are ggml's quantization of the source values.
                let q = try reference.withUnsafeBufferPointer { try BlockConversion.quantize($0, shape: t.stored.shape, to: expected) }
                #expect(Array(UnsafeRawBufferPointer(start: q.bytes.pointer, count: view.bytes.count)) == Array(view.bytes.buffer), "\(family) \(t.name)")
                #expect(t.error == q.error, "\(family) \(t.name)")
                quantized += 1
            }
            // Every tensor not in the requested type is listed, and nothing else.
            #expect(Set(recorded.keys) == Set(b.manifest.tensors.filter { $0.stored.dtype != type }.map(\.name)), "\(family)")
            #expect(b.manifest.formatVersion == 3)
            #expect(try BundleCheck.run(b).isEmpty)
            // The fixtures' widths: SD3's (8 and 16) leave nothing to quantize; the others do.
            if family == "sd3" { #expect(quantized == 0) } else { #expect(quantized > 0, "\(family) \(type.name)") }
        }
    }

    @Test func sameSourceAndOptionsGiveTheSameBundle() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        for k in 0..<2 {
            _ = try convertFixture("flux/dev_bfl_fp8.safetensors", heads: nil, .q4_1, into: dir, name: "\(k).ditkit") { $0.threads = k + 1 }
        }
        for file in ["manifest.json", "weights.bin"] {
            #expect(try FileSystem.readFile(dir + "/0.ditkit/" + file) == FileSystem.readFile(dir + "/1.ditkit/" + file))
        }
    }

    /// `--keep` keeps a tensor out of the block type (in its source type), and says so.
    @Test func keepPatternsKeepTensorsLosslessly() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let b = try convertFixture("verify/dit_verify.pt", heads: 2, .q8_0, into: dir, name: "k.ditkit") { $0.keep = ["blocks.1.*"] }
        let kept = (b.manifest.dtypePolicy["blocks"]?["tensors"]?.arrayValue ?? []).filter { $0["reason"]?.stringValue == "--keep 'blocks.1.*'" }
        #expect(kept.map { $0["name"]?.stringValue ?? "" }.sorted() == ["blocks.1.attn.proj.weight", "blocks.1.attn.qkv.weight", "blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc2.weight"])
        #expect(b.view("blocks.1.mlp.fc1.weight")?.dtype == .f32 && b.view("blocks.0.mlp.fc1.weight")?.dtype == .q8_0)
    }

    /// Sources in 16-bit types keep them: FLUX's float8 weights are kept as F16 (exactly), a
    /// bf16 diffusers folder as BF16.
    @Test func keptTensorsStayInTheirSourceType() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let fp8 = try convertFixture("flux/dev_bfl_fp8.safetensors", heads: nil, .q8_0, into: dir, name: "a.ditkit")
        #expect(fp8.view("transformer_blocks.0.norm1.linear.weight")?.dtype == .f16)
        #expect(fp8.view("transformer_blocks.0.ff.net.0.proj.weight")?.dtype == .q8_0)
        let bf16 = try convertFixture("flux/dev", heads: nil, .q8_0, into: dir, name: "b.ditkit")
        #expect(bf16.view("transformer_blocks.0.norm1.linear.weight")?.dtype == .bf16)
        #expect(fp8.manifest.dtypePolicy["float_dtype"] == nil)
    }

    /// `--keep-dtype f16` stores the kept float tensors as F16 (ComfyUI-GGUF's base type for float32
    /// sources), rounded as torch's `.half()` does; the blocks are unchanged.
    @Test func keepDTypeSetsTheKeptTensorsType() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let lossless = try convertFixture("verify/dit_verify.pt", heads: 2, .q8_0, into: dir, name: "a.ditkit")
        let half = try convertFixture("verify/dit_verify.pt", heads: 2, .q8_0, into: dir, name: "b.ditkit") { $0.keepDType = .f16 }
        let f16 = try convertFixture("verify/dit_verify.pt", heads: 2, .f16, into: dir, name: "c.ditkit")
        for t in half.manifest.tensors {
            let a = try #require(lossless.record(t.name))
            if a.stored.dtype == .q8_0 {
                #expect(t.stored.dtype == .q8_0 && t.stored.checksum == a.stored.checksum, "\(t.name)")
            } else {
                #expect(a.stored.dtype == .f32 && t.stored.dtype == .f16 && t.stored.checksum == f16.record(t.name)?.stored.checksum, "\(t.name)")
            }
        }
        #expect(half.manifest.dtypePolicy["blocks"]?["kept_dtype"]?.stringValue == "F16 (--keep-dtype); block types as stored")
        #expect(half.manifest.weightsBytes < lossless.manifest.weightsBytes)
    }

    /// The policies on the published configurations: at least as conservative as ComfyUI-GGUF's
    /// tools/convert.py and its llama.cpp patch (lcpp.patch), whose rules are written out here on
    /// the names ComfyUI-GGUF sees (the original layouts, without `model.diffusion_model.`).
    @Test func policiesAreAtLeastAsConservativeAsComfyUIGGUF() throws {
        func comfyKeeps(_ original: String, _ shape: [Int], arch: String) -> Bool {
            let n = shape.reduce(1, *)
            if shape.count == 1 || n <= 1024 || shape.count != 2 { return true }
            let lcpp: [String: [String]] = [
                "flux": ["txt_in.", "img_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer."],
                "sd3": ["final_layer.", "time_text_embed.", "context_embedder.", "t_embedder.", "y_embedder.", "x_embedder."],
            ]
            if arch == "sd3" && (original == "proj_out.weight" || original == "pos_embed") { return true }
            return lcpp[arch, default: []].contains { original.contains($0) }
        }
        let models: [(ModelConfiguration, String, (String, [Int]) -> String, Double)] = [
            (ModelConfiguration(FluxFamily(), FluxConfiguration.named("FLUX.1-dev")!), "flux", { n, _ in FluxNaming.toOriginal(n).name }, 0.72),
            (ModelConfiguration(SD3Family(), SD3Configuration.named("SD3.5-large")!), "sd3",
             { n, _ in SD3Naming.toOriginal(n, SD3Configuration.named("SD3.5-large")!).name }, 0.66),
            (ModelConfiguration(SD3Family(), SD3Configuration.named("SD3.5-medium")!), "sd3",
             { n, _ in SD3Naming.toOriginal(n, SD3Configuration.named("SD3.5-medium")!).name }, 0.59),
            (DiTFamily().configuration(named: "DiT-XL/2", imageSize: 256)!, "dit", { n, _ in n }, 0.66),
            (PixArtFamily().configuration(named: "PixArt-Sigma-XL/2-1024", imageSize: nil)!, "pixart", { n, _ in n }, 0.97),
            (SDVAEFamily().configuration(named: "sd-vae-kl-f8", imageSize: nil)!, "vae", { n, _ in n }, 0.03),
        ]
        for (config, arch, original, fraction) in models {
            let policy = config.blockPolicy
            var quantized = 0, total = 0
            for (name, shape) in config.tensorShapes() {
                let n = shape.reduce(1, *)
                total += n
                let ours = policy.keepReason(name, shape: shape)
                if comfyKeeps(original(name, shape), shape, arch: arch) { #expect(ours != nil, "\(config.variant) \(name) (\(original(name, shape)))") }
                // Embeddings, modulations and the input and output layers are kept by name.
                for p in ["embed", "adaLN", "norm1", "norm_out", "norm.linear", "scale_shift_table", "proj_out.", "final_layer", "adaln_single", "caption_projection", "context_embedder"]
                where name.contains(p) && !name.hasPrefix("single_transformer_blocks.") {
                    #expect(ours != nil, "\(config.variant) \(name)")
                }
                if ours == nil { quantized += n }
            }
            // Share of parameters quantized (README): measured, to two decimals.
            #expect(abs(Double(quantized) / Double(total) - fraction) < 0.01, "\(config.variant): \(Double(quantized) / Double(total))")
        }
    }

    /// The row rule of FORMAT.md: a K-quant's rows of 128 fall back to a 32-block type at least as
    /// precise; rows of 8 (SD3's fixture) are kept; no row is padded.
    @Test func rowsThatDoNotDivideFallBackOrAreKept() throws {
        #expect(StoragePlan.fallback(for: .q2_K) == .q4_0 && StoragePlan.fallback(for: .q3_K) == .q4_0)
        #expect(StoragePlan.fallback(for: .q4_K) == .q5_0 && StoragePlan.fallback(for: .q5_K) == .q5_1 && StoragePlan.fallback(for: .q6_K) == .q8_0)
        for t in DType.blockTypes where t.block!.elements == 32 { #expect(StoragePlan.fallback(for: t) == nil) }
        for t in DType.blockTypes {
            if let f = StoragePlan.fallback(for: t) { #expect(f.block!.bitsPerValue >= t.block!.bitsPerValue, "\(t.name) -> \(f.name)") }
        }
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let dit = try convertFixture("verify/dit_verify.pt", heads: 2, .q4_k, into: dir, name: "d.ditkit")
        let fc1 = (dit.manifest.dtypePolicy["blocks"]?["tensors"]?.arrayValue ?? []).first { $0["name"]?.stringValue == "blocks.0.attn.qkv.weight" }
        #expect(fc1?["dtype"]?.stringValue == "Q5_0" && fc1?["reason"]?.stringValue == "rows of 128 values are not a multiple of 256")
        #expect(dit.view("blocks.0.mlp.fc2.weight")?.dtype == .q4_K)
        let sd3 = try convertFixture("sd3/mmditx_bare.safetensors", heads: nil, .q8_0, into: dir, name: "s.ditkit")
        #expect(sd3.manifest.tensors.allSatisfy { $0.stored.dtype.block == nil })
        #expect(sd3.manifest.formatVersion == 3)
    }
}

@Suite struct BlockOverflowTests {
    /// Block scales are float16: a value past what they can scale (here 1e9 in a quantized matrix)
    /// would be stored as infinity; the conversion is refused, naming the tensor, and writes nothing.
    @Test func valuesPastTheScalesRangeAreRefused() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let tensor = "encoder.mid_block.attentions.0.to_q.weight"
        try poking(Fixtures.path("verify/vae_verify/diffusion_pytorch_model.safetensors"), tensor, with: [1e9], into: dir + "/v.safetensors")
        var o = ConversionOptions()
        o.dtype = .q8_0
        #expect { _ = try Converter.convert(source: dir + "/v.safetensors", output: dir + "/v.ditkit", options: o) } throws: {
            "\($0)".contains("would overflow to infinity in Q8_0: \(tensor)")
        }
        #expect(!FileSystem.exists(dir + "/v.ditkit"))
        // Kept out of the blocks, the value is stored as it is.
        o.keep = [tensor]
        _ = try Converter.convert(source: dir + "/v.safetensors", output: dir + "/v.ditkit", options: o)
        #expect(try NativeBundle(path: dir + "/v.ditkit").view(tensor)?.floats().first == 1e9)
    }

    /// `--quantize-modulations`: the blocks' modulation linears go into the block type too (as
    /// ComfyUI-GGUF's converter does), every other tensor is stored as by default, and the manifest
    /// says so.
    @Test func quantizeModulationsQuantizesOnlyTheBlocksModulations() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        for (family, source, heads) in blockFixtures where ["dit", "flux"].contains(family) {
            let plain = try convertFixture(source, heads: heads, .q8_0, into: dir, name: "\(family)-plain.ditkit")
            let mod = try convertFixture(source, heads: heads, .q8_0, into: dir, name: "\(family)-mod.ditkit") { $0.quantizeModulations = true }
            let config = try ModelConfiguration(family: mod.manifest.family, json: mod.manifest.config)
            let modulationRules = config.blockPolicy.rules.filter(\.blockModulation)
            #expect(!modulationRules.isEmpty, "\(family)")
            var moved = 0
            for t in mod.manifest.tensors {
                let before = try #require(plain.record(t.name)).stored.dtype
                let isModulation = modulationRules.contains { globMatch($0.pattern, t.name) } && t.stored.shape.count == 2
                    && t.stored.shape.reduce(1, *) > BlockPolicy.smallTensorLimit
                if isModulation {
                    #expect(t.stored.dtype == .q8_0 && before != .q8_0, "\(family) \(t.name): \(t.stored.dtype), was \(before)")
                    moved += 1
                } else {
                    #expect(t.stored.dtype == before, "\(family) \(t.name)")
                }
            }
            #expect(moved > 0, "\(family)")
            #expect(mod.manifest.dtypePolicy["blocks"]?["modulations_quantized"] == .bool(true))
            #expect(plain.manifest.dtypePolicy["blocks"]?["modulations_quantized"] == .bool(false))
            // Smaller tensors (weights.bin may keep its size: tensors start at aligned offsets).
            #expect(mod.manifest.tensors.reduce(0) { $0 + $1.stored.bytes } < plain.manifest.tensors.reduce(0) { $0 + $1.stored.bytes })
            #expect(try BundleCheck.run(mod).isEmpty)
        }
    }
}
