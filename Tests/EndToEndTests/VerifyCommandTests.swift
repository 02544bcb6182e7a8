// `ditkit verify` from the command line: which source it compares with, and how it says so.
import Testing
import Foundation
import DiTKitCore

@Suite struct VerifyCommandTests {
    @Test func againstDetectsTheSourceOnItsOwn() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        // A VAE converted from an LDM checkpoint (subtree 'state_dict'), compared with the same VAE in
        // diffusers safetensors (no such subtree there).
        let bundle = dir + "/vae.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("convert/vae_ldm.ckpt"), "-o", bundle]).status == 0)
        #expect(try Tool.run(["export", bundle, "--to", "diffusers", "-o", dir + "/vae"]).status == 0)
        let r = try Tool.run(["verify", bundle, "--against", dir + "/vae/diffusion_pytorch_model.safetensors", "--size", "32"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(!r.stderr.contains("--select"), "\(r.stderr)")
        // The recorded subtree is still used where the source has it (the very file it came from).
        #expect(try Tool.run(["verify", bundle, "--against", Tool.fixture("convert/vae_ldm.ckpt"), "--size", "32"]).status == 0)

        // The options verify's messages mention exist: --image-size (and --heads) for DiT weights in
        // diffusers naming without config.json, --select for a file with several models.
        let dit = dir + "/dit.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("readers/dit_tiny.pt"), "-o", dit, "--heads", "2"]).status == 0)
        let bare = Tool.fixture("convert/dit_diffusers_noconfig.safetensors")
        let asked = try Tool.run(["verify", dit, "--against", bare])
        #expect(asked.stderr.contains("--image-size"), "\(asked.stderr)")
        let given = try Tool.run(["verify", dit, "--against", bare, "--image-size", "64", "--heads", "2"])
        #expect(given.status == 0, "\(given.stdout)\n\(given.stderr)")
        let train = Tool.fixture("readers/train_checkpoint.pt")
        let ema = dir + "/ema.ditkit"
        #expect(try Tool.run(["convert", train, "-o", ema, "--heads", "2"]).status == 0)
        let model = try Tool.run(["verify", ema, "--against", train, "--heads", "2", "--select", "model"])
        #expect(model.status == 0 || model.status == 1, "--select is an option of verify: \(model.stderr)")
        #expect(try Tool.run(["verify", ema, "--against", train, "--heads", "2"]).status == 0)
    }

    @Test func everyOutputNamesWhatTheModelWasComparedWith() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        // The bundle came from vae_ldm.ckpt; it is compared with another file holding the same VAE.
        let bundle = dir + "/vae.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("convert/vae_ldm.ckpt"), "-o", bundle]).status == 0)
        #expect(try Tool.run(["export", bundle, "--to", "diffusers", "-o", dir + "/vae"]).status == 0)
        let against = dir + "/vae/diffusion_pytorch_model.safetensors"
        let text = try Tool.run(["verify", bundle, "--against", against, "--size", "32", "--report", dir + "/r.html"])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("against: \(against)"), "\(text.stdout)")
        let json = try Tool.run(["verify", bundle, "--against", against, "--size", "32", "--json"])
        let j = try #require(try JSONReader.parse(json.stdout).arrayValue?.first)
        #expect(j["against"]?.stringValue == against, "\(json.stdout.prefix(300))")
        let html = String(decoding: try FileSystem.readFile(dir + "/r.html"), as: UTF8.self)
        #expect(html.contains("<tr><td>compared against</td><td>\(against)</td></tr>"), "the report names the --against file")
        #expect(html.contains("<tr><td>converted from</td><td>vae_ldm.ckpt"), "and, separately, where the bundle came from")
        // --reference names its file the same way.
        let dit = dir + "/dit.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("verify/dit_verify.pt"), "-o", dit]).status == 0)
        let ref = Tool.fixture("verify/dit_reference.h5")
        let r = try Tool.run(["verify", dit, "--reference", ref])
        #expect(r.stdout.contains("reference: \(ref)"), "\(r.stdout)")
    }

    @Test func differentModelsAreExplainedInWords() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let dit = dir + "/dit.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("readers/dit_tiny.pt"), "-o", dit, "--heads", "2"]).status == 0)
        let heads = try Tool.run(["verify", dit, "--against", Tool.fixture("readers/dit_tiny.pt"), "--heads", "4"])
        #expect(heads.status == 2)
        #expect(heads.stderr.contains("\(dit) and \(Tool.fixture("readers/dit_tiny.pt")) are different models: num_heads 2 instead of 4"), "\(heads.stderr)")
        #expect(heads.stderr.contains("--heads 2"), "names the option that reads the source as the model: \(heads.stderr)")
        let size = try Tool.run(["verify", dit, "--against", Tool.fixture("convert/dit_diffusers_noconfig.safetensors"), "--heads", "2", "--image-size", "128"])
        #expect(size.status == 2)
        #expect(size.stderr.contains("input_size 8 instead of 16, image_size 64 instead of 128"), "\(size.stderr)")
        #expect(size.stderr.contains("--image-size 64"), "\(size.stderr)")
        for r in [heads, size] {
            #expect(!r.stderr.contains("JSONValue") && !r.stderr.contains("DiTKitCore") && r.stderr.count < 500, "\(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1)
        }
    }
}
