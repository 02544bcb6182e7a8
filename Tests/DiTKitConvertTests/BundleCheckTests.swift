// `check` catches every kind of damage, naming where it is.
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats
import DiTKitConvert

@Suite struct BundleCheckTests {
    func makeBundle(_ dtype: StorageType = .int8) throws -> (String, String) {
        let dir = try temporaryDirectory()
        var o = ConversionOptions()
        o.dtype = dtype
        o.hints.numHeads = 2
        _ = try Converter.convert(source: Fixtures.path("readers/dit_tiny.pt"), output: dir + "/m.ditkit", options: o)
        return (dir, dir + "/m.ditkit")
    }

    func flip(_ path: String, at offset: Int) throws {
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try h.seek(toOffset: UInt64(offset))
        let b = try h.read(upToCount: 1)![0]
        try h.seek(toOffset: UInt64(offset))
        h.write(Data([b ^ 0x10]))
        try h.close()
    }

    @Test func intactBundlePasses() throws {
        let (dir, path) = try makeBundle()
        defer { FileSystem.removeTree(dir) }
        #expect(try BundleCheck.run(NativeBundle(path: path)).isEmpty)
    }

    @Test func bitFlipInAnyTensorIsNamed() throws {
        let (dir, path) = try makeBundle()
        defer { FileSystem.removeTree(dir) }
        let b = try NativeBundle(path: path)
        for t in b.manifest.tensors.prefix(40) {
            let offset = t.stored.offset + t.stored.bytes / 2
            try flip(path + "/weights.bin", at: offset)
            let problems = try BundleCheck.run(NativeBundle(path: path))
            #expect(problems.map(\.subject) == [t.name])
            try flip(path + "/weights.bin", at: offset)
        }
        let scaled = try #require(b.manifest.tensors.first { $0.scale != nil })
        try flip(path + "/weights.bin", at: scaled.scale!.offset)
        #expect(try BundleCheck.run(NativeBundle(path: path)).map(\.subject) == [scaled.name + ".scale"])
    }

    @Test func nonZeroPaddingIsCaught() throws {
        let (dir, path) = try makeBundle()
        defer { FileSystem.removeTree(dir) }
        let b = try NativeBundle(path: path)
        let first = b.manifest.tensors[0].stored
        try flip(path + "/weights.bin", at: first.offset + first.bytes + 1)
        let problems = try BundleCheck.run(NativeBundle(path: path))
        #expect(problems.count == 1)
        #expect(problems.first?.problem.contains("non-zero padding at byte \(first.offset + first.bytes + 1)") == true)
    }

    @Test func modifiedManifestIsCaught() throws {
        let (dir, path) = try makeBundle(.f32)
        defer { FileSystem.removeTree(dir) }
        var text = try String(contentsOfFile: path + "/manifest.json", encoding: .utf8)
        text = text.replacingOccurrences(of: "\"num_heads\": 2", with: "\"num_heads\": 4")
        try text.write(toFile: path + "/manifest.json", atomically: false, encoding: .utf8)
        let problems = try BundleCheck.run(NativeBundle(path: path))
        #expect(problems.map(\.subject) == ["manifest.json"])
    }

    @Test func structuralDamageIsRefusedOnOpen() throws {
        let (dir, path) = try makeBundle(.f32)
        defer { FileSystem.removeTree(dir) }
        let original = try String(contentsOfFile: path + "/manifest.json", encoding: .utf8)
        for (from, to, message) in [("\"offset\": 16384,", "\"offset\": 16385,", "not a multiple of 16384"),
                                    ("\"format_version\": 3", "\"format_version\": 7", "version 7 is not supported"),
                                    ("\"alignment\": 16384", "\"alignment\": 1000", "alignment must be a power of two")] {
            try original.replacingOccurrences(of: from, with: to).write(toFile: path + "/manifest.json", atomically: false, encoding: .utf8)
            do {
                _ = try NativeBundle(path: path)
                Issue.record("accepted \(to)")
            } catch { #expect(String(describing: error).contains(message), "\(error)") }
        }
        try original.write(toFile: path + "/manifest.json", atomically: false, encoding: .utf8)
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: path + "/weights.bin"))
        try h.truncate(atOffset: 1000)
        try h.close()
        #expect(throws: BundleError.self) { try NativeBundle(path: path) }
    }
}
