// `export --to gguf` in ComfyUI-GGUF's conventions, for every family: `general.architecture`, the
// original (non-diffusers) names at the root for FLUX, SD3 and PixArt, ggml's dimension order, block
// types verbatim. gguf-py reads every file; its names, shapes and values are those of the
// float32 safetensors export in the same layout (a second, independent path through the namings,
// which tools/check_diffusers_export.py loads into BFL's Flux and Stability's MMDiTX).
import Testing
import Foundation
import DiTKitCore

@Suite struct GGUFExportCommandTests {
    /// family fixture, convert options, architecture, the GGUF's naming, a name it must hold.
    static let cases: [(source: String, extra: [String], arch: String, naming: String, expect: String)] = [
        ("verify/dit_verify.pt", ["--heads", "2"], "dit", "dit-official", "blocks.0.attn.qkv.weight"),
        ("verify/vae_verify/diffusion_pytorch_model.safetensors", [], "sdvae", "vae-diffusers", "encoder.mid_block.attentions.0.to_q.weight"),
        ("pixart/alpha_original.pth", ["--heads", "2"], "pixart", "pixart-original", "blocks.0.attn.qkv.weight"),
        ("pixart/sigma/transformer/diffusion_pytorch_model.safetensors", [], "pixart", "pixart-diffusers", "transformer_blocks.0.attn1.to_q.weight"),
        ("sd3/mmdit/transformer/diffusion_pytorch_model.safetensors", [], "sd3", "sd3-original", "joint_blocks.0.x_block.attn.qkv.weight"),
        ("flux/dev_bfl_fp8.safetensors", [], "flux", "flux-original", "double_blocks.0.img_attn.qkv.weight"),
    ]

    /// The safetensors export whose names the GGUF's should be (its `--naming`), float32 values.
    static func referenceNaming(_ naming: String) -> String? {
        naming.hasSuffix("-original") ? "original" : nil
    }

    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with gguf and safetensors (make test provides it)"),
          arguments: ["q8_0", "q4_k", "int8"])
    func exportsFollowComfyUIGGUFAndReadBackInGGUFPy(_ dtype: String) throws {
        for c in Self.cases {
            let dir = try Tool.temporaryDirectory()
            defer { FileSystem.removeTree(dir) }
            let b = dir + "/m.ditkit"
            let conv = try Tool.run(["convert", Tool.fixture(c.source), "-o", b, "--dtype", dtype] + c.extra)
            #expect(conv.status == 0, "\(conv.stderr)")
            let e = try Tool.run(["export", b, "--to", "gguf", "-o", dir + "/m.gguf"])
            #expect(e.status == 0, "\(e.stderr)")
            var ref = ["export", b, "--to", "safetensors", "--dequantize", "-o", dir + "/ref.safetensors"]
            if let n = Self.referenceNaming(c.naming) { ref += ["--naming", n] }
            #expect(try Tool.run(ref).status == 0)
            let got = try JSONReader.parse(try runPython([Tool.root + "/Tests/EndToEndTests/python/read_exports.py", "gguf", dir + "/m.gguf", dir + "/ref.safetensors"]))
            let label = "\(c.source) \(dtype)"
            #expect(got["metadata"]?["general.architecture"]?.stringValue == c.arch, "\(label)")
            #expect(got["metadata"]?["ditkit.naming"]?.stringValue == c.naming, "\(label)")
            let tensors = got["tensors"]?.objectValue ?? []
            #expect(tensors.contains { $0.0 == c.expect }, "\(label): \(tensors.map(\.0).prefix(8))")
            #expect(!tensors.contains { $0.0.hasPrefix("model.diffusion_model.") }, "ComfyUI-GGUF's converter strips the prefix")
            // Same names, shapes and values as the float32 export in that layout; Q8_0 made here is ggml's.
            #expect(got["reference"]?["not_in_reference"]?.arrayValue == [], "\(label): \(String(describing: got["reference"]))")
            #expect(got["reference"]?["not_in_gguf"]?.arrayValue == [], "\(label)")
            #expect(got["reference"]?["value_mismatch"]?.arrayValue == [], "\(label)")
            #expect(got["q8_0_mismatch"] == nil, "\(label)")
            // Block types are in the file (int8 bundles: written as Q8_0); the bundle's blocks verbatim.
            let manifest = try JSONReader.parse(try FileSystem.readFile(b + "/manifest.json"))
            let stored = Dictionary(uniqueKeysWithValues: (manifest["tensors"]?.arrayValue ?? []).map { ($0["name"]!.stringValue!, $0) })
            // (The fixtures' rows of 32 to 128 values take Q4_K's fallback, Q5_0; SD3's width-16 fixture has nothing to quantize.)
            let wants = dtype == "int8" ? ["Q8_0"] : dtype == "q4_k" ? ["Q4_K", "Q5_0"] : [dtype.uppercased()]
            if !c.source.hasPrefix("sd3/") {
                #expect(tensors.contains { wants.contains($0.1["type"]?.stringValue ?? "") }, "\(label)")
            }
            for (name, t) in tensors {
                guard let s = stored[name], let sd = s["dtype"]?.stringValue, sd.hasPrefix("Q") else { continue }
                let bytesSHA256 = try Tool.storedSHA256(b, s)
                #expect(t["type"]?.stringValue == sd && t["bytes_sha256"]?.stringValue == bytesSHA256, "\(label) \(name)")
            }
        }
    }

    /// DiTKit's own reader lists the export under BFL's names; the notes say what was not verbatim.
    @Test func ggufReadsBackWithDiTKitsReader() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let b = dir + "/m.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("flux/dev_bfl_fp8.safetensors"), "-o", b, "--dtype", "q5_0"]).status == 0)
        let e = try Tool.run(["export", b, "--to", "gguf", "-o", dir + "/m.gguf", "--json"])
        #expect(e.status == 0)
        let notes = try JSONReader.parse(e.stdout)["notes"]?.arrayValue ?? []
        // The fixture's single block stacks a kept 32×32 to_q with a quantized proj_mlp: float32, said once.
        #expect(notes.map { $0.stringValue ?? "" } == ["'single_blocks.0.linear1.weight' stacks tensors stored as F16 and Q5_0: written as F32 values"], "\(notes)")
        let r = try Tool.run(["inspect", dir + "/m.gguf", "--json"])
        let listed = try JSONReader.parse(r.stdout)
        #expect(listed["metadata"]?["general.architecture"]?.stringValue == "flux")
        let names = (listed["tensors"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
        #expect(names.contains("final_layer.adaLN_modulation.1.weight") && names.contains("single_blocks.0.linear1.weight"))
        #expect(!names.contains { $0.hasPrefix("transformer_blocks.") })
    }
}
