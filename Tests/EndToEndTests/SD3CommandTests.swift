// SD3 through the command line: single files (the transformer by default, the VAE on request),
// exports that equal what diffusers' save_pretrained and Stability's layout hold, sampling from text
// features and given noise as diffusers' pipeline loop does, and `verify --sample --report`.
import Testing
import Foundation
import DiTKitCore

@Suite struct SD3CommandTests {
    /// Converts a fixture into a fresh directory (ExportCommandTests' helper): (dir, bundle path).
    func convert(_ source: String, _ extra: [String] = []) throws -> (String, String) { try ExportCommandTests().bundle(source, extra) }
    /// name -> (dtype, shape, sha256) of a safetensors file, read by DiTKit's own validating reader.
    func listing(_ path: String) throws -> [String: JSONValue] { try ExportCommandTests().listing(path) }

    func same(_ ours: [String: JSONValue], _ theirs: [String: JSONValue]) {
        #expect(Set(ours.keys) == Set(theirs.keys))
        for (k, v) in theirs {
            for field in ["dtype", "shape", "sha256"] { #expect(ours[k]?[field] == v[field], "\(k) \(field)") }
        }
    }

    @Test func aFullSingleFileGivesItsTransformerOrItsVAE() throws {
        let (dir, b) = try convert("sd3/mmditx_full_f16.safetensors")
        defer { FileSystem.removeTree(dir) }
        let manifest = try JSONReader.parse(try FileSystem.readFile(b + "/manifest.json"))
        #expect(manifest["model"]?["family"]?.stringValue == "sd3")
        let vae = dir + "/vae.ditkit"
        let r = try Tool.run(["convert", Tool.fixture("sd3/mmditx_full_f16.safetensors"), "-o", vae, "--model", "vae"])
        #expect(r.status == 0, "\(r.stderr)")
        let v = try JSONReader.parse(try FileSystem.readFile(vae + "/manifest.json"))
        #expect(v["model"]?["family"]?.stringValue == "vae")
        #expect(v["model"]?["config"]?["latent_channels"] == .int(16))
        #expect(v["model"]?["config"]?["scaling_factor"]?.doubleValue == 1.5305)
        #expect(v["model"]?["config"]?["shift_factor"]?.doubleValue == 0.0609)
        #expect(v["model"]?["config"]?["use_quant_conv"] == .bool(false))
        let bad = try Tool.run(["convert", Tool.fixture("sd3/mmditx_full_f16.safetensors"), "-o", dir + "/te.ditkit", "--select", "text_encoders"])
        #expect(bad.status == 2 && bad.stderr.contains("text_encoders"), "\(bad.stderr)")
        #expect(!FileSystem.exists(dir + "/te.ditkit"))
    }

    @Test func diffusersFolderMatchesWhatDiffusersSaves() throws {
        // From Stability's names (which do not record the sample size: --image-size states it).
        let (dir, b) = try convert("sd3/mmditx_bare.safetensors", ["--image-size", "64"])
        defer { FileSystem.removeTree(dir) }
        let r = try Tool.run(["export", b, "--to", "diffusers", "-o", dir + "/sd3"])
        #expect(r.status == 0, "\(r.stderr)")
        same(try listing(dir + "/sd3/diffusion_pytorch_model.safetensors"),
             try listing(Tool.fixture("sd3/mmditx/transformer/diffusion_pytorch_model.safetensors")))
        let config = try JSONReader.parse(try FileSystem.readFile(dir + "/sd3/config.json"))
        let want = try JSONReader.parse(try FileSystem.readFile(Tool.fixture("sd3/mmditx/transformer/config.json")))
        #expect(config == want)
    }

    @Test func originalNamingRecreatesStabilitysLayout() throws {
        // From the diffusers folder: Stability's names under model.diffusion_model., q|k|v fused, the
        // final norms' halves swapped back; the same bytes as the original module's state dict.
        let (dir, b) = try convert("sd3/mmditx/transformer/diffusion_pytorch_model.safetensors")
        defer { FileSystem.removeTree(dir) }
        let r = try Tool.run(["export", b, "--to", "safetensors", "--naming", "original", "-o", dir + "/o.safetensors"])
        #expect(r.status == 0, "\(r.stderr)")
        var bare: [String: JSONValue] = [:]
        for (k, v) in try listing(Tool.fixture("sd3/mmditx_bare.safetensors")) { bare["model.diffusion_model." + k] = v }
        same(try listing(dir + "/o.safetensors"), bare)
        // From the full f16 single file kept in f16: its transformer tensors byte for byte.
        let (d2, b16) = try convert("sd3/mmditx_full_f16.safetensors", ["--dtype", "f16"])
        defer { FileSystem.removeTree(d2) }
        #expect(try Tool.run(["export", b16, "--to", "safetensors", "--naming", "original", "-o", d2 + "/o.safetensors"]).status == 0)
        same(try listing(d2 + "/o.safetensors"),
             try listing(Tool.fixture("sd3/mmditx_full_f16.safetensors")).filter { $0.key.hasPrefix("model.diffusion_model.") })
    }

    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with h5py (make test provides it)"))
    func sampleFollowsTheDiffusersPipelineLoop() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        // The pipeline folder's transformer; the 4-channel test VAE decodes the 4-channel latents.
        let r = try Tool.run(["sample", Tool.fixture("sd3/mmdit"), "--vae", Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"),
                              "--text", Tool.fixture("sd3/text.h5"), "--noise", Tool.fixture("sd3/noise.h5"), "--steps", "8", "--cfg", "4.5",
                              "--save-latents", dir + "/latents.h5", "-o", dir + "/grid.png"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileSystem.exists(dir + "/grid.png"))
        // The run is described as what it was: flow matching, not DDPM.
        #expect(r.stdout.contains("flow matching, 8 Euler steps, shift 3.0, cfg 4.5"), "\(r.stdout)")
        let attrs = try runPython(["-c", "import sys, h5py; a = h5py.File(sys.argv[1]).attrs; print(*[a[k].decode() if isinstance(a[k], bytes) else a[k] for k in ('sampler', 'steps', 'schedule')])", dir + "/latents.h5"])
        #expect(attrs.trimmingCharacters(in: .whitespacesAndNewlines) == "flow-euler 8 shift 3.0", "\(attrs)")
        let rel = try runPython(["-c", """
            import sys, h5py, numpy as np
            a = h5py.File(sys.argv[1])["latents"][()]; b = h5py.File(sys.argv[2])["latents"][()]
            print(float(np.linalg.norm(a - b) / np.linalg.norm(b)))
            """, dir + "/latents.h5", Tool.fixture("sd3/mmdit_latents.h5")])
        let value = try #require(Double(rel.trimmingCharacters(in: .whitespacesAndNewlines)), "\(rel)")
        #expect(value < 1e-4, "rel L2 \(value)")
        // A DiT-style schedule is refused with a one-line reason.
        let bad = try Tool.run(["sample", Tool.fixture("sd3/mmdit"), "--vae", Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"),
                                "--text", Tool.fixture("sd3/text.h5"), "--steps", "ddim25", "-o", dir + "/x.png"])
        #expect(bad.status != 0 && bad.stderr.contains("--steps"), "\(bad.stderr)")
        #expect(!FileSystem.exists(dir + "/x.png"))
    }

    @Test func verifySampleWritesAReport() throws {
        let (dir, b) = try convert("sd3/mmdit/transformer/diffusion_pytorch_model.safetensors", ["--dtype", "bf16"])
        defer { FileSystem.removeTree(dir) }
        let r = try Tool.run(["verify", b, "--against", Tool.fixture("sd3/mmdit/transformer/diffusion_pytorch_model.safetensors"),
                              "--sample", "--text", Tool.fixture("sd3/text.h5"), "--steps", "4", "--cfg", "4.5",
                              "--report", dir + "/report.html", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(try JSONReader.parse(r.stdout).arrayValue?.first)
        #expect(j["passed"] == .bool(true))
        #expect(j["sample"]?["passed"] == .bool(true))
        #expect(j["sample"]?["sampler"] == .string("flow-euler") && j["sample"]?["steps"] == .int(4), "\(j)")
        #expect((j["sample"]?["latent_rel_l2"]?.doubleValue ?? 1) > 0)
        let html = String(decoding: try FileSystem.readFile(dir + "/report.html"), as: UTF8.self)
        #expect(html.contains("transformer_blocks.1.ff") && html.contains("SD3-custom"))
        #expect(html.contains("flow matching, 4 Euler steps") && !html.contains("DDPM"))
    }
}
