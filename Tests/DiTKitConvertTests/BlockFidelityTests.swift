// Every block type, every family, at widths where the K-quants apply (WideModels): the converted
// model runs its real quantized weights a layer at a time and passes `verify --against` its source
// under the type's tolerance profile; the error grows as the bits shrink. The figures printed here
// are the ones README "Verification thresholds" reports for the block types.
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitConvert
import DiTKitVerify

@Suite struct BlockFidelityTests {
    @Test(arguments: ["dit", "vae", "pixart", "sd3", "flux"])
    func everyBlockTypePassesItsProfile(_ family: String) throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let folder = try WideModels.folder(family, in: dir)
        let source = try LoadedModel.open(folder)
        var output: [StorageType: Double] = [:]
        var lines: [String] = []
        for storage in StorageType.allCases where storage.blockType != nil {
            let type = storage.blockType!
            var o = ConversionOptions()
            o.dtype = storage
            let path = dir + "/\(storage.rawValue).ditkit"
            _ = try Converter.convert(source: folder, output: path, options: o)
            let b = try NativeBundle(path: path)
            // At this width the requested type itself holds the matrices (no fallback).
            #expect(b.manifest.tensors.contains { $0.stored.dtype == type }, "\(family) \(type.name)")
            #expect(!b.manifest.tensors.contains { $0.stored.dtype.block != nil && $0.stored.dtype != type }, "\(family) \(type.name)")
            let r = try Verifier.verify(try LoadedModel.open(path), against: source)
            #expect(r.profile.name == storage.rawValue)
            #expect(r.passed, "\(family) \(type.name):\n\(r.text)")
            let worst = r.layers.max { $0.relL2 < $1.relL2 }
            let out = r.layers.filter { ["output", "decode", "encode"].contains($0.name) }.map(\.relL2).max() ?? 0
            output[storage] = out
            lines.append("\(family) \(type.name): worst layer \(worst.map { "\($0.name) \($0.relL2)" } ?? "-"), output \(out), profile \(r.profile.maxRelL2)")
        }
        print(lines.joined(separator: "\n"))
        // Fewer bits, more error: the K-quant ladder and the 32-value types.
        for (a, b) in [(StorageType.q8_0, StorageType.q6_k), (.q6_k, .q5_k), (.q5_k, .q4_k), (.q4_k, .q3_k), (.q3_k, .q2_k),
                       (.q8_0, .q5_1), (.q5_1, .q4_1), (.q5_0, .q4_0)] {
            #expect((output[a] ?? 1) < (output[b] ?? 0), "\(family): \(a.rawValue) \(output[a] ?? -1) vs \(b.rawValue) \(output[b] ?? -1)")
        }
    }
}

@Suite struct BlockSamplingTests {
    /// `verify --sample` on every block type: the wide DiT and the fixture VAE sample from the same
    /// noise (25 DDPM steps, guidance 4, two classes); latents and images meet the type's thresholds.
    @Test func samplesMeetTheBlockThresholds() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let folder = try WideModels.folder("dit", in: dir)
        let source = try LoadedModel.open(folder)
        let vae = try LoadedModel.open(Fixtures.path("verify/vae_verify/diffusion_pytorch_model.safetensors"))
        var lines: [String] = []
        var psnr: [StorageType: Double] = [:]
        for storage in [StorageType.q8_0, .q6_k, .q5_k, .q5_0, .q4_k, .q4_0, .q3_k, .q2_k] {
            var o = ConversionOptions()
            o.dtype = storage
            _ = try Converter.convert(source: folder, output: dir + "/\(storage.rawValue).ditkit", options: o)
            let m = try LoadedModel.open(dir + "/\(storage.rawValue).ditkit")
            var s = SamplingOptions()
            s.steps = "25"
            let cmp = try SampleComparison.run(converted: m, source: source, vae: vae, classes: [3, 7], options: s, profile: .forStorage(storage.rawValue))
            #expect(cmp.passed, "\(storage.rawValue): latents \(cmp.latentRelL2), PSNR \(cmp.psnr)")
            #expect(cmp.thresholds == SampleThresholds.forProfile(storage.rawValue))
            psnr[storage] = cmp.psnr.min()
            lines.append("dit sample \(storage.rawValue): latent rel L2 \(cmp.latentRelL2), PSNR \(cmp.psnr)")
        }
        print(lines.joined(separator: "\n"))
        #expect((psnr[.q8_0] ?? 0) > (psnr[.q4_k] ?? 0) && (psnr[.q4_k] ?? 0) > (psnr[.q2_k] ?? 0))
    }
}

@Suite struct BlockDamageTests {
    /// The block profiles still catch damage: one tensor whose block scales read 4× too large fails
    /// `verify --against` at its layer, with the layers before it passing.
    @Test(arguments: [StorageType.q8_0, .q4_k])
    func aDamagedBlockTensorFailsAtItsLayer(_ storage: StorageType) throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let b = try convertFixture("verify/dit_verify.pt", heads: 2, storage, into: dir, name: "d.ditkit")
        let name = "blocks.1.mlp.fc2.weight"
        let rec = try #require(b.record(name))
        let type = rec.stored.dtype
        let layout = try #require(type.block)
        // Q8_0's d sits at byte 0 of its block, Q4_K's d (and dmin) at 0 and 2: add 2 to the exponent (×4).
        var bytes = try FileSystem.readFile(dir + "/d.ditkit/weights.bin")
        for k in stride(from: rec.stored.offset, to: rec.stored.offset + rec.stored.bytes, by: layout.bytes) {
            for field in (type == .q4_K ? [0, 2] : [0]) {
                let h = UInt16(bytes[k + field]) | UInt16(bytes[k + field + 1]) << 8
                let scaled = h & 0x7C00 == 0 || h & 0x7C00 >= 0x7400 ? h : h &+ 0x0800
                bytes[k + field] = UInt8(scaled & 0xFF)
                bytes[k + field + 1] = UInt8(scaled >> 8)
            }
        }
        try FileSystem.writeFile(dir + "/d.ditkit/weights.bin", bytes)
        let r = try Verifier.verify(try LoadedModel.open(dir + "/d.ditkit"), against: try LoadedModel.open(Fixtures.path("verify/dit_verify.pt"), hints: {
            var h = DetectionHints(); h.numHeads = 2; return h }()))
        #expect(type.name == (storage == .q8_0 ? "Q8_0" : "Q4_K"))
        #expect(!r.passed)
        #expect(r.firstFailingLayer == "blocks.1.mlp", "\(storage.rawValue): \(r.text)")
    }
}
