// What the tool prints reads as written: counts in the right number, paths without doubled slashes.
import Testing
import Foundation
import DiTKitCore

@Suite struct MessageTests {
    @Test func oneIsSingular() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let dit = dir + "/dit.ditkit", vae = dir + "/vae.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("verify/dit_verify.pt"), "-o", dit]).status == 0)
        #expect(try Tool.run(["convert", Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"), "-o", vae]).status == 0)
        let one = try Tool.run(["sample", dit, "--vae", vae, "--class", "1", "--steps", "1", "-o", dir + "/one.png"])
        #expect(one.stdout.contains(": 1 image (DDPM 1 step, cfg "), "\(one.stdout)\(one.stderr)")
        let two = try Tool.run(["sample", dit, "--vae", vae, "--class", "1,2", "--steps", "2", "-o", dir + "/two.png"])
        #expect(two.stdout.contains(": 2 images (DDPM 2 steps, cfg "), "\(two.stdout)\(two.stderr)")
    }

    @Test func pathsBuiltFromADirectoryWithATrailingSlashHaveNoDoubledSlash() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        try FileSystem.makeDirectories(dir + "/models")
        let many = try Tool.run(["convert", Tool.fixture("verify/dit_verify.pt"), Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"),
                                 "-o", dir + "/models/"])
        #expect(many.status == 0, "\(many.stderr)")
        #expect(many.stdout.contains("wrote \(dir)/models/dit_verify.ditkit:") && many.stdout.contains("wrote \(dir)/models/vae_verify.ditkit:"), "\(many.stdout)")
        #expect(try Tool.run(["pack", dir + "/models/dit_verify.ditkit", "-o", dir + "/p.zst"]).status == 0)
        let unpack = try Tool.run(["unpack", dir + "/p.zst", "-o", dir + "/out/"])
        #expect(unpack.stdout.contains("restored \(dir)/out/dit_verify.ditkit:"), "\(unpack.stdout)")
        let s = try LoopbackServer(files: ["dit_verify.pt": Tool.fixture("verify/dit_verify.pt")])
        defer { s.stop() }
        let fetch = try Tool.run(["zoo", "fetch", "test-dit", "--url", s.url("range", "dit_verify.pt"), "--manifests", Tool.fixture("zoo/Manifests") + "/",
                                  "--checksums", Tool.fixture("zoo/Checksums") + "/", "--cache", dir + "/cache/"])
        #expect(fetch.stdout.contains("downloaded \(dir)/cache/zoo/test-dit/dit_verify.pt:"), "\(fetch.stdout)\(fetch.stderr)")
        // A model folder given with a slash names its weights file with one.
        let folder = try Tool.run(["zoo", "identify", "--json", Tool.fixture("verify/vae_verify") + "/"])
        for r in [many, unpack, fetch, folder] { #expect(!(r.stdout + r.stderr).contains("//"), "\(r.stdout)\(r.stderr)") }
    }
}
