// tools/dump_reference.py with the Python that has torch and diffusers (DITKIT_TORCH_PYTHON, e.g.
// ~/venvs/ditkit/bin/python; CI has no torch, so these run where it is set).
import Testing
import Foundation
import DiTKitCore

let torchPython = ProcessInfo.processInfo.environment["DITKIT_TORCH_PYTHON"]

@Suite(.serialized, .enabled(if: torchPython != nil, "needs DITKIT_TORCH_PYTHON with torch, timm and diffusers"))
struct DumpReferenceTests {
    func run(_ args: [String], environment: [String: String] = [:]) throws -> (status: Int32, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: torchPython ?? "/usr/bin/false")
        p.arguments = [Tool.root + "/tools/dump_reference.py"] + args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func aCheckpointThatDoesNotFitSaysWhatDiffersInOneLine() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let pt = Tool.fixture("verify/dit_verify.pt")
        let r = try run(["dit", pt, "-o", dir + "/ref.h5", "--model", "DiT-S/2"])
        #expect(r.status == 2)
        #expect(r.stderr.split(separator: "\n").count == 1 && !r.stderr.contains("Traceback"), "\(r.stderr)")
        #expect(r.stderr.contains("the weights do not fit DiT-S/2 at 256 px: ") && r.stderr.contains("pos_embed: file [1, 16, 128], model [1, 256, 384]"), "\(r.stderr)")
        #expect(r.stderr.contains("hidden size 128, depth 2, patch 2 at 64 px: check --model and --image-size"), "\(r.stderr)")
        let name = try run(["dit", pt, "-o", dir + "/ref.h5", "--model", "DiT-Q/3"])
        #expect(name.status == 2 && name.stderr.contains("--model DiT-Q/3 is not a DiT name") && !name.stderr.contains("Traceback"), "\(name.stderr)")
        #expect(!FileSystem.exists(dir + "/ref.h5"))
    }

    @Test func aSingleFileVAEIsReadWithoutTheNetwork() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        // Any attempt to reach the Hub would fail at once (and HF_HUB_OFFLINE=1 is the script's own default).
        let offline = ["HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"]
        let ckpt = Tool.fixture("convert/vae_ldm.ckpt")   // a small VAE: block_out_channels [32, 64], one layer per block
        let sd = try run(["vae-decode", ckpt, "-o", dir + "/a.h5", "--size", "32"], environment: offline)
        #expect(sd.status == 2, "\(sd.stderr)")
        #expect(sd.stderr.split(separator: "\n").count == 1 && !sd.stderr.contains("Traceback"), "\(sd.stderr)")
        #expect(sd.stderr.contains("the weights do not load with the SD VAE configuration (pass --vae-config for another): "), "\(sd.stderr)")
        #expect(!sd.stderr.contains("127.0.0.1:9") && !sd.stderr.contains("huggingface"), "\(sd.stderr)")
        let config = dir + "/config.json"
        try FileSystem.writeFile(config, Array(#"{"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"], "block_out_channels": [32, 64], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 32, "sample_size": 32}"#.utf8))
        let given = try run(["vae-decode", ckpt, "-o", dir + "/b.h5", "--size", "32", "--vae-config", config], environment: offline)
        #expect(given.status == 0, "\(given.stderr)")
        #expect(FileSystem.exists(dir + "/b.h5"))
    }
}
