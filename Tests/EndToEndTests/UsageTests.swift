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

    @Test func usageMistakesExit64WithAMessageThatSaysWhatToChange() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let dit = Tool.fixture("verify/dit_verify.pt")
        let vae = Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors")
        let vaeBundle = dir + "/vae.ditkit"
        #expect(try Tool.run(["convert", vae, "-o", vaeBundle]).status == 0)
        let sample = ["sample", dit, "--vae", vae, "-o", dir + "/x.png"]
        let cases: [([String], String)] = [
            (sample + ["--steps", "0"], "--steps 0"),
            (sample + ["--class", "-1"], "class ids are whole numbers from 0"),
            (sample + ["--class", "3,x"], "class ids are whole numbers from 0"),
            (sample + ["--class", "1000"], "has 1000 classes (ids 0 to 999)"),
            (["verify", dit, "--against", dit, "--sample", "--steps", "0"], "--steps 0"),
            (["verify", dit, "--against", dit, "--sample", "--classes", "-3"], "class ids are whole numbers from 0"),
            (["verify", dit, "--against", dit, "--vae", vaeBundle], "--vae describes the --sample comparison"),
            (["verify", dit, "--against", dit, "--classes", "1", "--cfg", "2"], "--classes, --cfg describe the --sample comparison"),
            (["convert", dit, "-o", dir + "/x.ditkit", "--model", "foo"], "is not a model DiTKit knows; use dit, vae, "),
            (["convert", dit, "-o", dir + "/x.ditkit", "--dtype", "int8", "--keep", "blocks.9.*"], "--keep 'blocks.9.*' matches no tensor of DiT-custom"),
            (["convert", dit, "-o", dir + "/x.ditkit", "--keep", "final_layer.*"], "--keep has no effect with --dtype f32"),
            (["convert", dit, "-o", dir + "/x.ditkit", "--dtype", "source", "--keep", "final_layer.*"], "--keep has no effect with --dtype source"),
            (["convert", dit, "-o", dir + "/x.ditkit", "--dtype", "auto"], "--dtype auto needs --min-sqnr DB"),
            (["convert", dit, "-o", dir + "/x.ditkit", "--dtype", "f16", "--keep-dtype", "f16"], "--keep-dtype applies to the block types and auto only"),
            (["convert", dit, "-o", dir + "/x.ditkit", "--dtype", "q8_0", "--keep-dtype", "int8"], "--keep-dtype must be f16, bf16 or f32"),
            (["convert", dit, "-o", dir + "/x.ditkit", "--dtype", "int8", "--quantize-modulations"], "--quantize-modulations applies to the block types and auto only"),
            (["convert", dit, "-o", dir + "/x.ditkit", "--dtype", "q4_k", "--min-sqnr", "30"], "--min-sqnr and --max-size apply to --dtype auto only"),
            (["convert", dit, "-o", dir + "/x.ditkit", "--dtype", "auto", "--min-sqnr", "30", "--max-size", "0"], "--max-size must be a positive number of bytes"),
            (["export", vaeBundle, "--to", "safetensors", "--naming", "official", "-o", dir + "/x.safetensors"], "naming 'official' does not apply to a SD VAE (AutoencoderKL) bundle"),
            (["export", vaeBundle, "--to", "gguf", "--naming", "diffusers", "-o", dir + "/x.gguf"], "--naming applies to --to safetensors only"),
            (["export", vaeBundle, "--to", "hdf5", "--dequantize", "-o", dir + "/x.h5"], "--dequantize applies to --to safetensors only"),
            (["export", vaeBundle, "--to", "safetensors", "--gguf-type", "f16", "-o", dir + "/x.safetensors"], "--gguf-type applies to --to gguf only"),
        ]
        for (args, message) in cases {
            let r = try Tool.run(args)
            #expect(r.status == 64, "\(args): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        #expect(FileSystem.listDirectory(dir) == ["vae.ditkit"], "nothing written")
        // Every usual spelling of a dtype, including the one DiTKit prints.
        for spelling in ["F16", "fp16", "float16", "half", "BF16", "bfloat16", "FP32", "I8", "Q4_K", "q8_0"] {
            let out = dir + "/\(spelling).ditkit"
            let r = try Tool.run(["convert", vae, "-o", out, "--dtype", spelling])
            #expect(r.status == 0, "\(spelling): \(r.stderr)")
            let want = ["F16": "f16", "fp16": "f16", "float16": "f16", "half": "f16", "BF16": "bf16", "bfloat16": "bf16", "FP32": "f32", "I8": "int8", "Q4_K": "q4_k", "q8_0": "q8_0"][spelling]
            let manifest = try JSONReader.parse(try FileSystem.readFile(out + "/manifest.json"))
            #expect(manifest["dtype_policy"]?["dtype"]?.stringValue == want, "\(spelling)")
        }
    }

    @Test func aCheckpointWhereABundleIsExpectedAndAMissingDirectoryAreExplained() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let pt = Tool.fixture("verify/dit_verify.pt")
        for args in [["check", pt], ["export", pt, "--to", "gguf", "-o", dir + "/x.gguf"], ["pack", pt, "-o", dir + "/x.zst"]] {
            let r = try Tool.run(args)
            #expect(r.status == 2, "\(args): \(r.stderr)")
            #expect(r.stderr.contains("\(pt): not a DiTKit bundle: a torch-zip checkpoint") && r.stderr.contains("convert it first: ditkit convert"), "\(r.stderr)")
        }
        let missing = dir + "/no/such/place"
        for args in [["convert", pt, "-o", missing + "/x.ditkit"]] {
            let r = try Tool.run(args)
            #expect(r.status == 74, "\(args): \(r.stderr)")
            #expect(r.stderr.contains("\(missing): no such directory to write x.ditkit into"), "\(r.stderr)")
            #expect(!r.stderr.contains(".partial-"), "no internal temporary name: \(r.stderr)")
        }
        #expect(FileSystem.listDirectory(dir).isEmpty)
    }
}
