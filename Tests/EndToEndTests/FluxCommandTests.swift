// FLUX.1 exports proven against the producers' files: the diffusers folder equals what diffusers'
// save_pretrained wrote for the same weights, the original naming writes BFL's layout (the names and
// shapes of the BFL file, the fused and swapped tensors with the bytes torch computes for them, and
// a file DiTKit reads back to the same model), GGUF says `flux`. tools/check_flux_export.py also
// loads them into diffusers and BFL's own Flux with strict=True (run locally: it needs torch).
import Testing
import Foundation
import DiTKitCore

extension ExportCommandTests {
    /// `--quantize-modulations`: the GGUF holds BFL's modulation linears in Q8_0 (as ComfyUI-GGUF's
    /// files do), and the bundle still passes verify --against its source under the Q8_0 profile.
    @Test func fluxModulationsQuantizedStillVerifyAndExportAsComfyUIGGUFDoes() throws {
        let source = Tool.fixture("flux/dev_bfl_fp8.safetensors")
        let (dir, b) = try bundle("flux/dev_bfl_fp8.safetensors", ["--dtype", "q8_0", "--quantize-modulations"])
        defer { FileSystem.removeTree(dir) }
        let v = try Tool.run(["verify", b, "--against", source])
        #expect(v.status == 0, "\(v.stdout)\(v.stderr)")
        let e = try Tool.run(["export", b, "--to", "gguf", "-o", dir + "/m.gguf"])
        #expect(e.status == 0, "\(e.stderr)")
        let r = try Tool.run(["inspect", dir + "/m.gguf", "--json"])
        let types = Dictionary(uniqueKeysWithValues: (try JSONReader.parse(r.stdout)["tensors"]?.arrayValue ?? []).map {
            ($0["name"]?.stringValue ?? "", $0["dtype"]?.stringValue ?? "")
        })
        for name in ["double_blocks.0.img_mod.lin.weight", "double_blocks.0.txt_mod.lin.weight", "single_blocks.0.modulation.lin.weight"] {
            #expect(types[name] == "Q8_0", "\(name): \(String(describing: types[name]))")
        }
        #expect(types["final_layer.adaLN_modulation.1.weight"] != "Q8_0")
    }

    @Test func fluxDiffusersFolderMatchesWhatDiffusersSaves() throws {
        // From BFL's layout (float8, stored as bf16): the diffusers export equals save_pretrained's bf16 folder.
        let (dir, b) = try bundle("flux/dev_bfl_fp8.safetensors", ["--dtype", "bf16"])
        defer { FileSystem.removeTree(dir) }
        let r = try Tool.run(["export", b, "--to", "diffusers", "-o", dir + "/flux"])
        #expect(r.status == 0, "\(r.stderr)")
        let ours = try listing(dir + "/flux/diffusion_pytorch_model.safetensors")
        let theirs = try listing(Tool.fixture("flux/dev/transformer/diffusion_pytorch_model.safetensors"))
        #expect(Set(ours.keys) == Set(theirs.keys) && theirs.count == 66)
        for (k, v) in theirs { #expect(ours[k] == v, "\(k)") }
        let config = try JSONReader.parse(try FileSystem.readFile(dir + "/flux/config.json"))
        let want = try JSONReader.parse(try FileSystem.readFile(Tool.fixture("flux/dev/transformer/config.json")))
        #expect(config == want)
    }

    @Test func fluxOriginalNamingWritesTheBFLLayout() throws {
        let (dir, b) = try bundle("flux/dev")
        defer { FileSystem.removeTree(dir) }
        let r = try Tool.run(["export", b, "--to", "safetensors", "--naming", "original", "-o", dir + "/flux1.safetensors"])
        #expect(r.status == 0, "\(r.stderr)")
        let ours = try listing(dir + "/flux1.safetensors")
        let theirs = try listing(Tool.fixture("flux/dev_bfl_fp8.safetensors"))
        #expect(Set(ours.keys) == Set(theirs.keys) && theirs.count == 52)
        for (k, v) in theirs { #expect(ours[k]?["shape"] == v["shape"], "\(k)") }
        // The fused qkv, the uneven linear1 (q | k | v | mlp) and the [shift, scale] final modulation
        // hold the float32 bytes torch computed for BFL's tensors.
        let check = try JSONReader.parse(try FileSystem.readFile(Tool.fixture("flux/bfl_check.json")))
        let hashes = try #require(check["dev"]?["f32_sha256"]?.objectValue)
        #expect(hashes.count == 8)
        for (name, sha) in hashes { #expect(ours[name]?["sha256"] == sha, "\(name)") }
        // Read back, the export is the same model, tensor for tensor.
        let again = dir + "/again.ditkit"
        #expect(try Tool.run(["convert", dir + "/flux1.safetensors", "-o", again]).status == 0)
        let m1 = try JSONReader.parse(try FileSystem.readFile(b + "/manifest.json"))
        let m2 = try JSONReader.parse(try FileSystem.readFile(again + "/manifest.json"))
        let h1 = (m1["tensors"]?.arrayValue ?? []).map { [$0["name"], $0["xxh3_128"]] }
        let h2 = (m2["tensors"]?.arrayValue ?? []).map { [$0["name"], $0["xxh3_128"]] }
        #expect(h1 == h2 && h1.count == 66 && h1.allSatisfy { $0[1] != nil })
        #expect(m2["model"] == m1["model"])
    }

    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with gguf (make test provides it)"))
    func fluxGGUFSaysFlux() throws {
        let (dir, b) = try bundle("flux/schnell_comfy_fp8.safetensors", ["--dtype", "int8"])
        defer { FileSystem.removeTree(dir) }
        #expect(try Tool.run(["export", b, "--to", "gguf", "-o", dir + "/m.gguf"]).status == 0)
        // BFL's names, as ComfyUI-GGUF's converter writes them: compared with the float32 export in that layout.
        #expect(try Tool.run(["export", b, "--to", "safetensors", "--naming", "original", "--dequantize", "-o", dir + "/ref.safetensors"]).status == 0)
        let got = try JSONReader.parse(try runPython([Tool.root + "/Tests/EndToEndTests/python/read_exports.py", "gguf", dir + "/m.gguf", dir + "/ref.safetensors"]))
        #expect(got["reference"]?["not_in_reference"]?.arrayValue == [] && got["reference"]?["value_mismatch"]?.arrayValue == [])
        #expect(got["q8_0_checked"]?.intValue ?? 0 > 0)
        #expect(got["metadata"]?["general.architecture"]?.stringValue == "flux")
        #expect(got["metadata"]?["flux.num_single_layers"] == .int(1))
        #expect(got["metadata"]?["flux.guidance_embeds"] == .bool(false))
        #expect(got["q8_0_mismatch"] == nil)
    }
}

@Suite struct FluxCommandTests {
    @Test func verifySampleReportsAgainstTheFloat8Source() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let b = dir + "/dev.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("flux/dev"), "-o", b, "--dtype", "bf16"]).status == 0)
        // Layers, then 4 sampling steps of both models from the same noise and text features, into one report.
        let r = try Tool.run(["verify", b, "--against", Tool.fixture("flux/dev_bfl_fp8.safetensors"), "--sample", "--text", Tool.fixture("flux/text.h5"),
                              "--size", "32", "--steps", "4", "--report", dir + "/report.html"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("single_transformer_blocks.0.1") && r.stdout.contains("samples PASSED"), "\(r.stdout)")
        // FLUX.1-dev: flow matching with the resolution-dependent shift and the embedded guidance's default.
        #expect(r.stdout.contains("samples (flow matching, 4 Euler steps, mu ") && r.stdout.contains("guidance 3.5 (embedded)"), "\(r.stdout)")
        let html = String(decoding: try FileSystem.readFile(dir + "/report.html"), as: UTF8.self)
        #expect(html.contains("FLUX-custom") && html.contains("transformer_blocks.0.attn.0"))
        // Text features without the pooled projections are refused, naming the dataset.
        let bad = try Tool.run(["verify", b, "--against", Tool.fixture("flux/dev_bfl_fp8.safetensors"), "--sample", "--text", Tool.fixture("flux/noise.h5"),
                                "--size", "32", "--steps", "4"])
        #expect(bad.status == 2 && bad.stderr.contains("/encoder_hidden_states"), "\(bad.stderr)")
        // DDIM does not apply to flow matching: refused rather than ignored.
        let ddim = try Tool.run(["verify", b, "--against", Tool.fixture("flux/dev_bfl_fp8.safetensors"), "--sample", "--text", Tool.fixture("flux/text.h5"),
                                 "--size", "32", "--steps", "4", "--sampler", "ddim"])
        #expect(ddim.status != 0 && ddim.stderr.contains("DDIM does not apply"), "\(ddim.stderr)")
    }
}
