// safetensors export read back by our validating reader (the Python client test lives in EndToEndTests).
import Testing
import DiTKitCore
import DiTKitFormats
import DiTKitConvert
import DiTKitExport

@Suite struct ExportTests {
    @Test func int8ExportKeepsScalesAndDequantizes() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        var o = ConversionOptions()
        o.dtype = .int8
        o.hints.numHeads = 2
        _ = try Converter.convert(source: Fixtures.path("readers/dit_tiny.pt"), output: dir + "/m.ditkit", options: o)
        let b = try NativeBundle(path: dir + "/m.ditkit")
        _ = try SafetensorsExport.export(b, to: dir + "/q.safetensors")
        let q = try SafetensorsFile(file: MappedFile(path: dir + "/q.safetensors"))
        let names = Set(q.tensors.map(\.name))
        #expect(names.contains("blocks.0.attn.qkv.weight.scale"))
        #expect(q.tensors.first { $0.name == "blocks.0.attn.qkv.weight" }?.dtype == .i8)
        #expect(q.metadata.contains { $0.key == "ditkit.source.sha256" })
        _ = try SafetensorsExport.export(b, to: dir + "/f.safetensors", dequantize: true)
        let f = try SafetensorsFile(file: MappedFile(path: dir + "/f.safetensors"))
        #expect(f.tensors.allSatisfy { $0.dtype == .f32 })
        let i = try #require(f.index(of: "blocks.0.attn.qkv.weight"))
        let values = try f.bytes(of: i).withElements(of: Float.self) { Array($0) }
        #expect(values == b.view("blocks.0.attn.qkv.weight")!.floats())
        #expect(throws: OutputError.self) { try SafetensorsExport.export(b, to: dir + "/f.safetensors") }
    }

    @Test func exportIsDeterministic() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        var o = ConversionOptions()
        o.hints.numHeads = 2
        _ = try Converter.convert(source: Fixtures.path("readers/dit_tiny.pt"), output: dir + "/m.ditkit", options: o)
        let b = try NativeBundle(path: dir + "/m.ditkit")
        _ = try SafetensorsExport.export(b, to: dir + "/a.safetensors")
        _ = try SafetensorsExport.export(b, to: dir + "/b.safetensors")
        #expect(try FileSystem.readFile(dir + "/a.safetensors") == FileSystem.readFile(dir + "/b.safetensors"))
    }
}

@Suite struct PackTests {
    @Test func packsDoNotDependOnTheNumberOfWorkers() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        var o = ConversionOptions()
        o.hints.numHeads = 2
        _ = try Converter.convert(source: Fixtures.path("readers/dit_tiny.pt"), output: dir + "/m.ditkit", options: o)
        _ = try BundlePack.pack(bundle: dir + "/m.ditkit", output: dir + "/a.zst", threads: 1)
        _ = try BundlePack.pack(bundle: dir + "/m.ditkit", output: dir + "/b.zst", threads: 4)
        #expect(try FileSystem.readFile(dir + "/a.zst") == FileSystem.readFile(dir + "/b.zst"))
    }
}

/// A copy of a float32 safetensors file with `values` written over the first elements of `tensor`.
func poking(_ source: String, _ tensor: String, with values: [Float], into path: String) throws {
    var bytes = try FileSystem.readFile(source)
    let n = bytes.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
    let header = try JSONReader.parse(Array(bytes[8..<(8 + n)]))
    let start = try #require(header[tensor]?["data_offsets"]?.arrayValue?.first?.intValue) + 8 + n
    for (k, v) in values.enumerated() {
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.replaceSubrange((start + 4 * k)..<(start + 4 * k + 4), with: $0) }
    }
    try FileSystem.writeFile(path, bytes)
}

@Suite struct GGUFNonFiniteExportTests {
    /// A bundle converted with --allow-nonfinite holds NaN and infinities; Q8_0 blocks cannot (ggml's
    /// quantizer would convert NaN to an integer: undefined behaviour). `--gguf-type q8_0` keeps
    /// such a tensor in its stored float type, values bit for bit, and says so.
    @Test func nonFiniteTensorsStayFloatInQ8_0Exports() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let tensor = "encoder.mid_block.attentions.0.to_q.weight"
        try poking(Fixtures.path("verify/vae_verify/diffusion_pytorch_model.safetensors"), tensor, with: [.nan, 0.5, .infinity, -.infinity], into: dir + "/v.safetensors")
        var o = ConversionOptions()
        o.allowNonfinite = true
        _ = try Converter.convert(source: dir + "/v.safetensors", output: dir + "/v.ditkit", options: o)
        let b = try NativeBundle(path: dir + "/v.ditkit")
        let s = try GGUFExport.export(b, to: dir + "/v.gguf", type: .q8_0)
        let g = try GGUFFile(file: MappedFile(path: dir + "/v.gguf"))
        let i = try #require(g.index(of: tensor))
        #expect(g.tensors[i].dtype == .f32)
        #expect(XXH3Hasher.hex(try g.bytes(of: i)) == b.manifest.tensors.first { $0.name == tensor }?.stored.checksum)
        #expect(s.notes.contains { $0.contains(tensor) && $0.contains("3 NaN or infinite values") }, "\(s.notes)")
        // Its finite neighbours are quantized.
        let k = try #require(g.index(of: "encoder.mid_block.attentions.0.to_k.weight"))
        #expect(g.tensors[k].dtype == .q8_0)
    }
}
