// `convert model.gguf`: GGUF files in ComfyUI-GGUF's layout (what `export --to gguf` writes, and
// what people download for FLUX and SD3) convert back to the same model: block types verbatim by
// default (`--dtype source`), dequantized with `--dtype f32`, requantized with another block type;
// provenance names the GGUF; a file whose architecture disagrees with its tensors is refused.
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitConvert
import DiTKitExport
import DiTKitVerify

@Suite struct GGUFImportTests {
    /// What the tensors do not say comes back from the GGUF's metadata (DiTKit writes model.config
    /// under the architecture's namespace): a DiT's head count, a PixArt's or SD3's image size, a VAE's
    /// scaling factor; the re-imported bundle has the original's configuration without any option.
    @Test func metadataSuppliesWhatTheTensorsDoNotSay() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        for (family, source, heads) in blockFixtures {
            let b = try convertFixture(source, heads: heads, .f32, into: dir, name: "\(family).ditkit") {
                if family == "vae" { $0.hints.scalingFactor = 0.13025 }
            }
            _ = try GGUFExport.export(b, to: dir + "/\(family).gguf")
            _ = try Converter.convert(source: dir + "/\(family).gguf", output: dir + "/\(family)-back.ditkit", options: ConversionOptions())
            let back = try NativeBundle(path: dir + "/\(family)-back.ditkit")
            #expect(back.manifest.config == b.manifest.config, "\(family): \(back.manifest.config) vs \(b.manifest.config)")
        }
        // Options still win over the metadata.
        var o = ConversionOptions()
        o.hints.scalingFactor = 0.5
        _ = try Converter.convert(source: dir + "/vae.gguf", output: dir + "/vae-opt.ditkit", options: o)
        #expect(try NativeBundle(path: dir + "/vae-opt.ditkit").manifest.config["scaling_factor"] == .double(0.5))
    }

    @Test(arguments: [StorageType.q8_0, .q4_k, .q5_1])
    func exportsConvertBackToTheSameModel(_ storage: StorageType) throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        for (family, source, heads) in blockFixtures {
            let b = try convertFixture(source, heads: heads, storage, into: dir, name: "\(family).ditkit")
            let summary = try GGUFExport.export(b, to: dir + "/\(family).gguf")
            // Default: every tensor as the GGUF stores it (the bundle's blocks come back verbatim).
            var o = ConversionOptions()
            o.hints.numHeads = heads
            // A diffusers-named PixArt does not record its image size: the config.json the source had.
            o.hints.diffusersConfig = LoadedModel.diffusersConfig(besides: Fixtures.path(source))
            let s = try Converter.convert(source: dir + "/\(family).gguf", output: dir + "/\(family)-back.ditkit", options: o)
            #expect(s.dtype == .source, "\(family)")
            let back = try NativeBundle(path: dir + "/\(family)-back.ditkit")
            #expect(back.manifest.provenance["source"]?["container"]?.stringValue == "gguf")
            #expect(back.manifest.provenance["source"]?["file"]?.stringValue == "\(family).gguf")
            #expect(back.manifest.provenance["source"]?["gguf"]?["architecture"]?.stringValue == ModelFamilies.named(back.manifest.family)?.ggufArchitecture)
            #expect(back.manifest.tensors.map(\.name) == b.manifest.tensors.map(\.name))
            // Stacks of differently stored tensors were written as float32 (the export says so).
            let mixed = summary.notes.contains { $0.contains("stacks tensors stored as") }
            for t in b.manifest.tensors {
                let v = try #require(back.view(t.name))
                #expect(v.floats() == b.view(t.name)!.floats(), "\(family) \(t.name)")
                if t.stored.dtype.block != nil && !mixed {
                    #expect(v.dtype == t.stored.dtype && back.record(t.name)?.stored.checksum == t.stored.checksum, "\(family) \(t.name)")
                }
            }
            // The GGUF runs as a model: verify the bundle against it (blocks dequantized a layer at a time).
            let r = try Verifier.verify(try LoadedModel.open(dir + "/\(family)-back.ditkit"), against: try LoadedModel.open(dir + "/\(family).gguf", hints: o.hints))
            #expect(r.passed && r.layers.allSatisfy { $0.relL2 == 0 }, "\(family): \(r.text)")
            // --dtype f32 dequantizes: the same values, all float.
            o.dtype = .f32
            _ = try Converter.convert(source: dir + "/\(family).gguf", output: dir + "/\(family)-f32.ditkit", options: o)
            let f32 = try NativeBundle(path: dir + "/\(family)-f32.ditkit")
            for t in f32.manifest.tensors {
                #expect(t.stored.dtype == .f32 && f32.view(t.name)!.floats() == b.view(t.name)!.floats(), "\(family) \(t.name)")
            }
        }
    }

    /// Another block type requantizes the GGUF's values (measured against them); the same type copies.
    @Test func requantizingMeasuresAgainstTheGGUFValues() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let b = try convertFixture("flux/dev_bfl_fp8.safetensors", heads: nil, .q8_0, into: dir, name: "q8.ditkit")
        _ = try GGUFExport.export(b, to: dir + "/q8.gguf")
        var o = ConversionOptions()
        o.dtype = .q4_0
        _ = try Converter.convert(source: dir + "/q8.gguf", output: dir + "/q4.ditkit", options: o)
        let q4 = try NativeBundle(path: dir + "/q4.ditkit")
        let name = "transformer_blocks.0.ff.net.0.proj.weight"
        let t = try #require(q4.record(name))
        #expect(t.stored.dtype == .q4_0 && t.sources.first?.dtype == .q8_0)
        let values = b.view(name)!.floats()
        let q = try values.withUnsafeBufferPointer { try BlockConversion.quantize($0, shape: t.stored.shape, to: .q4_0) }
        #expect(t.error == q.error && t.stored.checksum == XXH3Hasher.hex(UnsafeRawBufferPointer(start: q.bytes.pointer, count: t.stored.bytes)))
        #expect(q4.manifest.formatVersion == 3)
        o.dtype = .q8_0
        _ = try Converter.convert(source: dir + "/q8.gguf", output: dir + "/q8b.ditkit", options: o)
        #expect(try NativeBundle(path: dir + "/q8b.ditkit").record(name)?.stored.checksum == b.record(name)?.stored.checksum)
    }

    /// A GGUF whose general.architecture names another DiTKit family than its tensors is refused.
    @Test func architectureMustAgreeWithTheTensors() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let b = try convertFixture("verify/dit_verify.pt", heads: 2, .f32, into: dir, name: "d.ditkit")
        let tensors = b.manifest.tensors.map { t in
            GGUFTensor(name: t.name, shape: t.stored.shape, type: .f32) { b.view(t.name)!.bytes }
        }
        for (arch, refused) in [("flux", true), ("dit", false), ("llama", false)] {
            let path = dir + "/\(arch).gguf"
            let file = try OutputFile(path: path)
            try GGUFWriter.write(metadata: [("general.architecture", .string(arch))], tensors: tensors, to: file)
            try file.close()
            var o = ConversionOptions()
            o.hints.numHeads = 2
            do {
                _ = try Converter.convert(source: path, output: dir + "/\(arch).ditkit", options: o)
                #expect(!refused, "\(arch) accepted")
            } catch {
                #expect(refused, "\(arch): \(error)")
                #expect("\(error)".contains("general.architecture is 'flux' (FLUX.1) but the tensors are DiT's"), "\(error)")
                #expect(!FileSystem.exists(dir + "/\(arch).ditkit"))
            }
        }
    }
}
