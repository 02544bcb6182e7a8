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
