// Bundles holding ggml block types: opened, checked, listed, dequantized by views and the forward
// pass, exported (GGUF verbatim, safetensors/HDF5 dequantized), and read by the Python clients.
// These bundles are made by requantizing a converted F32 bundle through the converter's block API
// (every 2-D weight whose rows divide), independently of the families' policies (BlockConvertTests).
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats
import DiTKitConvert
import DiTKitExport

private let python = ProcessInfo.processInfo.environment["DITKIT_PYTHON"]

/// Path of the `ditkit` binary next to the running test bundle.
private let ditkit: String = {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<3 {
        let candidate = dir.appendingPathComponent("ditkit").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return Fixtures.root + "/../../.build/debug/ditkit"
}()

private func run(_ executable: String, _ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// Rewrites the bundle at `source` as `output`, storing every tensor `choose` names a type for in
/// that type (through `BlockConversion`); the other tensors keep their bytes.
func requantize(_ source: String, to output: String, _ choose: (BundleTensor) -> DType?) throws {
    let b = try NativeBundle(path: source)
    let writer = try BundleWriter(path: output, force: false)
    var stored: [(BundleTensor, [UInt8])] = []
    for t in b.manifest.tensors {
        let view = b.view(t.name)!
        if let type = choose(t) {
            let values = view.floats()
            let q = try values.withUnsafeBufferPointer { try BlockConversion.quantize($0, shape: t.shape, to: type, threads: 2) }
            let bytes = Array(UnsafeRawBufferPointer(start: q.bytes.pointer, count: try type.byteCount(shape: t.shape)))
            var r = t
            r.stored = StoredRecord(dtype: type, shape: t.shape, offset: 0, bytes: bytes.count, checksum: bytes.withUnsafeBytes { XXH3Hasher.hex($0) })
            r.error = q.error
            stored.append((r, bytes))
        } else {
            stored.append((t, Array(view.bytes.buffer)))
        }
    }
    let (offsets, total) = try writer.layout(stored.map(\.1.count))
    var tensors: [BundleTensor] = []
    for ((t, bytes), o) in zip(stored, offsets) {
        try bytes.withUnsafeBytes { try writer.write($0, at: o) }
        var r = t
        r.stored.offset = o
        tensors.append(r)
    }
    let m = b.manifest
    try writer.finish(BundleManifest(alignment: m.alignment, family: m.family, variant: m.variant, config: m.config, naming: m.naming,
                                     provenance: m.provenance, dtypePolicy: .object([("dtype", .string("f32")), ("blocks", .string("test"))]),
                                     weightsBytes: total, tensors: tensors))
}

private extension BundleTensor {
    var shape: [Int] { stored.shape }
}

@Suite(.serialized) struct BlockBundleTests {
    /// A converted F32 DiT and, for `type`, the bundle with every 2-D weight whose rows divide stored in it.
    func bundles(_ type: DType) throws -> (dir: String, f32: String, blocks: String) {
        let dir = try temporaryDirectory()
        var o = ConversionOptions()
        o.hints.numHeads = 2
        _ = try Converter.convert(source: Fixtures.path("verify/dit_verify.pt"), output: dir + "/f32.ditkit", options: o)
        try requantize(dir + "/f32.ditkit", to: dir + "/q.ditkit") { t in
            t.shape.count == 2 && t.shape[1] % type.block!.elements == 0 ? type : nil
        }
        return (dir, dir + "/f32.ditkit", dir + "/q.ditkit")
    }

    @Test(arguments: DType.blockTypes)
    func bundleHoldsBlocksAndViewsDequantizeThem(_ type: DType) throws {
        let (dir, f32, path) = try bundles(type)
        defer { FileSystem.removeTree(dir) }
        let b = try NativeBundle(path: path)
        let source = try NativeBundle(path: f32)
        let quantized = b.manifest.tensors.filter { $0.stored.dtype == type }
        #expect(quantized.count >= (type.block!.elements == 256 ? 3 : 14), "\(type.name): \(quantized.count) tensors")
        #expect(b.manifest.formatVersion == 3)
        #expect(try JSONReader.parse(b.manifestBytes)["format_version"] == .int(3))
        #expect(try BundleCheck.run(b).isEmpty)
        for t in quantized {
            let view = b.view(t.name)!
            #expect(view.bytes.count == (try type.byteCount(shape: t.shape)))
            // The view's values are the block values, and the error figures measure them against the source.
            var direct = [Float](repeating: 0, count: view.elementCount)
            direct.withUnsafeMutableBufferPointer { BlockQuantizer.dequantize(type, view.bytes.buffer.baseAddress!, count: view.elementCount, into: $0.baseAddress!) }
            let values = view.floats()
            #expect(values == direct)
            var threaded = [Float](repeating: 0, count: view.elementCount)
            threaded.withUnsafeMutableBufferPointer { view.dequantize(into: $0.baseAddress!, threads: 3) }
            #expect(threaded == values)
            let original = source.view(t.name)!.floats()
            var e = 0.0, s = 0.0
            for (a, q) in zip(original, values) { e += Double(q - a) * Double(q - a); s += Double(a) * Double(a) }
            let sqnr = 10 * log10(s / e)
            #expect(abs(sqnr - (t.error?.sqnrDB ?? 0)) < 1e-6, "\(t.name)")
        }
        // The listing shows the block types; a bit flip in a block is named by check.
        let listing = ContainerListing.json(b, hashes: [(.xxh3_128, try TensorHashing.hashAll(b, .xxh3_128))])
        let first = try #require(quantized.first)
        let row = listing["tensors"]?.arrayValue?.first { $0["name"]?.stringValue == first.name }
        #expect(row?["dtype"]?.stringValue == type.name)
        #expect(row?["xxh3_128"]?.stringValue == first.stored.checksum)
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: path + "/weights.bin"))
        try h.seek(toOffset: UInt64(first.stored.offset + 1))
        h.write(Data([0x5A]))
        try h.close()
        #expect(try BundleCheck.run(NativeBundle(path: path)).map(\.subject) == [first.name])
    }

    @Test func quantizedBytesDoNotDependOnThreads() throws {
        var rng = SeededRandom(seed: 5)
        let x = rng.normals(300 * 1024)
        for type in [DType.q4_K, .q8_0, .q5_1] {
            let a = try x.withUnsafeBufferPointer { try BlockConversion.quantize($0, shape: [300, 1024], to: type, threads: 1) }
            let b = try x.withUnsafeBufferPointer { try BlockConversion.quantize($0, shape: [300, 1024], to: type, threads: 4) }
            let n = try type.byteCount(shape: [300, 1024])
            #expect(memcmp(a.bytes.pointer, b.bytes.pointer, n) == 0, "\(type.name)")
            #expect(a.error == b.error)
            #expect((a.error.sqnrDB ?? 0) > (type == .q8_0 ? 38 : 18), "\(type.name): \(a.error)")
        }
        var bad = x
        bad[17] = .nan
        bad[99] = .infinity
        #expect(throws: BlockQuantizationError.nonFinite(.q4_K, count: 2)) {
            try bad.withUnsafeBufferPointer { try BlockConversion.quantize($0, shape: [300, 1024], to: .q4_K) }
        }
        #expect(throws: BlockQuantizationError.rowNotMultiple(.q4_K, rowLength: 1000, blockElements: 256)) {
            try Array(x.prefix(3000)).withUnsafeBufferPointer { try BlockConversion.quantize($0, shape: [3, 1000], to: .q4_K) }
        }
    }

    @Test func newerVersionsAreTurnedAwayAndBlockRecordsMustDivide() throws {
        let (dir, f32, path) = try bundles(.q8_0)
        defer { FileSystem.removeTree(dir) }
        // Bundles are written as version 3 (XXH3-128 checksums), with or without block types.
        #expect(try JSONReader.parse(NativeBundle(path: f32).manifestBytes)["format_version"] == .int(3))
        let text = try String(contentsOfFile: path + "/manifest.json", encoding: .utf8)
        #expect(text.contains("\"format_version\": 3"))
        try text.replacingOccurrences(of: "\"format_version\": 3", with: "\"format_version\": 4").write(toFile: path + "/manifest.json", atomically: false, encoding: .utf8)
        #expect { _ = try NativeBundle(path: path) } throws: { "\($0)".contains("bundle format version 4 is not supported (this DiTKit reads versions 1 to 3)") }
        // Read as version 2, its records lack the SHA-256 version 2 promises.
        try text.replacingOccurrences(of: "\"format_version\": 3", with: "\"format_version\": 2").write(toFile: path + "/manifest.json", atomically: false, encoding: .utf8)
        #expect { _ = try NativeBundle(path: path) } throws: { "\($0)".contains("no sha256 of 64 hex digits (format_version 2)") }
        // A record whose rows do not divide into blocks is refused on open.
        let m = try JSONReader.parse(Array(text.utf8))
        let name = try #require(m["tensors"]?.arrayValue?.first { $0["dtype"]?.stringValue == "Q8_0" }?["name"]?.stringValue)
        var edited = text
        let marker = "\"name\": \"\(name)\""
        let at = try #require(edited.range(of: marker))
        let shapeRange = try #require(edited.range(of: "\"shape\": [", range: at.upperBound..<edited.endIndex))
        let close = try #require(edited.range(of: "]", range: shapeRange.upperBound..<edited.endIndex))
        edited.replaceSubrange(shapeRange.upperBound..<close.lowerBound, with: "\n        1,\n        33\n      ")
        try edited.write(toFile: path + "/manifest.json", atomically: false, encoding: .utf8)
        #expect { _ = try NativeBundle(path: path) } throws: { "\($0)".contains("rows of 33 values cannot be stored as Q8_0") }
    }

    @Test func exportsCarryBlocks() throws {
        let (dir, _, path) = try bundles(.q4_K)
        defer { FileSystem.removeTree(dir) }
        let b = try NativeBundle(path: path)
        // safetensors has no block dtype: refused without --dequantize, float32 values with it.
        #expect { _ = try SafetensorsExport.export(b, to: dir + "/x.safetensors") } throws: { "\($0)".contains("stored as Q4_K, which safetensors has no dtype for") }
        #expect(!FileSystem.exists(dir + "/x.safetensors"))
        _ = try SafetensorsExport.export(b, to: dir + "/f.safetensors", dequantize: true)
        let f = try SafetensorsFile(file: MappedFile(path: dir + "/f.safetensors"))
        #expect(f.metadata.first { $0.key == "ditkit.format_version" }?.value == "3")
        for t in b.manifest.tensors where t.stored.dtype == .q4_K {
            let i = try #require(f.index(of: t.name))
            #expect(f.tensors[i].dtype == .f32)
            #expect(try f.bytes(of: i).withElements(of: Float.self) { Array($0) } == b.view(t.name)!.floats())
        }
        // GGUF: block tensors verbatim, whatever the target; the file reads back with our reader.
        for target in [GGUFTarget.auto, .f16] {
            _ = try GGUFExport.export(b, to: dir + "/m.gguf", type: target, force: true)
            let g = try GGUFFile(file: MappedFile(path: dir + "/m.gguf"))
            #expect(g.value("general.quantization_version") == .u32(2))
            for t in b.manifest.tensors where t.stored.dtype == .q4_K {
                let i = try #require(g.index(of: t.name))
                #expect(g.tensors[i].dtype == .q4_K && g.tensors[i].shape == t.shape)
                #expect(XXH3Hasher.hex(try g.bytes(of: i)) == t.stored.checksum)
            }
        }
    }

    /// The CLI and the Python clients: inspect and check list and hash block tensors; numpy
    /// (examples/read_ditkit.py), gguf-py and h5py read values equal to the bundle's.
    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with numpy, gguf and h5py (make test provides it)"))
    func clientsReadTheSameValues() throws {
        for type in [DType.q4_0, .q5_K, .q6_K] {
            let (dir, _, path) = try bundles(type)
            defer { FileSystem.removeTree(dir) }
            let b = try NativeBundle(path: path)
            let inspect = try run(ditkit, ["inspect", path, "--json", "--hash"])
            #expect(inspect.status == 0, "\(inspect.stderr)")
            let listed = try JSONReader.parse(inspect.stdout)["tensors"]?.arrayValue ?? []
            let q = b.manifest.tensors.filter { $0.stored.dtype == type }
            #expect(listed.filter { $0["dtype"]?.stringValue == type.name }.count == q.count)
            #expect(try run(ditkit, ["check", path]).status == 0)
            for (kind, file) in [("gguf", "m.gguf"), ("hdf5", "m.h5")] {
                let r = try run(ditkit, ["export", path, "--to", kind, "-o", dir + "/" + file])
                #expect(r.status == 0, "\(r.stderr)")
            }
            let script = Fixtures.root + "/../EndToEndTests/python/read_exports.py"
            let numpy = try JSONReader.parse(try run(python!, [script, "ditkit", path, "--dequantize"]).stdout)
            let gguf = try JSONReader.parse(try run(python!, [script, "gguf", dir + "/m.gguf"]).stdout)
            let h5 = try JSONReader.parse(try run(python!, [script, "hdf5", dir + "/m.h5"]).stdout)
            for t in q {
                let values = b.view(t.name)!.floats().withUnsafeBytes { SHA256Hasher.hex($0) }
                #expect(numpy["tensors"]?[t.name]?["sha256"]?.stringValue == values, "numpy \(type.name) \(t.name)")
                #expect(gguf["tensors"]?[t.name]?["type"]?.stringValue == type.name)
                #expect(gguf["tensors"]?[t.name]?["bytes_sha256"]?.stringValue == SHA256Hasher.hex(b.view(t.name)!.bytes), "gguf-py sees the stored blocks")
                #expect(gguf["tensors"]?[t.name]?["values_sha256"]?.stringValue == values, "gguf-py dequantizes \(t.name) to the same values")
                #expect(h5["datasets"]?[t.name]?["sha256"]?.stringValue == values, "h5py \(t.name)")
                #expect(h5["datasets"]?[t.name]?["stored_dtype"]?.stringValue == type.name)
            }
        }
    }

    /// The forward pass reads block weights a layer at a time: `verify --against` runs on Q8_0 and
    /// Q4_K bundles, and the output error grows as the bits shrink.
    @Test func forwardPassRunsOnBlockWeights() throws {
        var output: [DType: Double] = [:]
        for type in [DType.q8_0, .q4_K] {
            let (dir, _, path) = try bundles(type)
            defer { FileSystem.removeTree(dir) }
            let r = try run(ditkit, ["verify", path, "--against", Fixtures.path("verify/dit_verify.pt"), "--json", "--profile", "int8"])
            #expect(r.status == 0 || r.status == 1, "\(r.stderr)")
            let json = try JSONReader.parse(r.stdout)
            let layers = json.arrayValue?.first?["layers"]?.arrayValue ?? []
            let out = layers.first { $0["name"]?.stringValue == "output" }
            output[type] = out?["rel_l2"]?.doubleValue
        }
        let q8 = try #require(output[.q8_0]), q4 = try #require(output[.q4_K])
        #expect(q8 > 0 && q8 < 0.05, "Q8_0 output rel L2 \(q8)")
        #expect(q4 > q8 * 2 && q4 < 0.5, "Q4_K output rel L2 \(q4)")
    }
}
