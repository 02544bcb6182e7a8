// Usage mistakes: contradictory or impossible options are refused with exit 64 and a message that
// says what to change, before any work is done.
import Testing
import Foundation
import DiTKitCore

@Suite struct UsageTests {
    @Test func conflictingSamplerOptionsAreAUsageError() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let dit = Tool.fixture("verify/dit_verify.pt")
        let vae = Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors")
        for args in [["sample", dit, "--vae", vae, "--class", "1", "-o", dir + "/x.png", "--steps", "ddim4", "--sampler", "ddpm"],
                     ["verify", dit, "--against", dit, "--sample", "--steps", "ddim4", "--sampler", "ddpm"]] {
            let r = try Tool.run(args)
            #expect(r.status == 64, "\(args): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains("--steps ddim4") && r.stderr.contains("--sampler ddpm"), "\(r.stderr)")
            #expect(!FileSystem.exists(dir + "/x.png"))
        }
        // Either alone, or both saying DDIM, is fine.
        for extra in [["--steps", "ddim4"], ["--steps", "ddim4", "--sampler", "ddim"], ["--steps", "4", "--sampler", "ddim"]] {
            let r = try Tool.run(["sample", dit, "--vae", vae, "--class", "1", "-o", dir + "/ok.png", "--force"] + extra)
            #expect(r.status == 0, "\(extra): \(r.stderr)")
            #expect(r.stdout.contains("DDIM"), "\(r.stdout)")
        }
    }
}
