// The GGUF reader on files gguf-py wrote (tools/make_gguf_fixtures.py), on our own writer's output,
// and on hand-made corruptions, each of which must be refused with a precise one-line reason.
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats

/// Encodes GGUF files field by field, so that tests can write any lie into them.
struct GGUFBytes {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func string(_ s: String) { raw(Array(s.utf8)) }
    mutating func raw(_ b: [UInt8]) { u64(UInt64(b.count)); bytes += b }
}

/// A small GGUF file: a string key, an alignment key, an F32 vector and a Q8_0 matrix.
struct GGUFSpec {
    struct Info { var name: String; var dims: [UInt64]; var type: UInt32; var offset: UInt64; var rawName: [UInt8]? = nil }
    var version: UInt32 = 3
    var tensorCount: UInt64?
    var kvCount: UInt64?
    /// Encoded key/value pairs.
    var pairs: [[UInt8]] = [GGUFSpec.stringPair("general.architecture", "flux"), GGUFSpec.u32Pair("general.alignment", 32)]
    var infos = [Info(name: "a", dims: [4], type: 0, offset: 0), Info(name: "b", dims: [32, 2], type: 8, offset: 32)]
    var alignment = 32
    var dataBytes = 100
    var truncateTo: Int?

    static func stringPair(_ k: String, _ v: String) -> [UInt8] {
        var w = GGUFBytes(); w.string(k); w.u32(8); w.string(v); return w.bytes
    }
    static func u32Pair(_ k: String, _ v: UInt32) -> [UInt8] {
        var w = GGUFBytes(); w.string(k); w.u32(4); w.u32(v); return w.bytes
    }
    /// `key`, then raw bytes for type and value.
    static func pair(_ k: String, _ rest: (inout GGUFBytes) -> Void) -> [UInt8] {
        var w = GGUFBytes(); w.string(k); rest(&w); return w.bytes
    }

    var encoded: [UInt8] {
        var w = GGUFBytes()
        w.bytes = Array("GGUF".utf8)
        w.u32(version)
        w.u64(tensorCount ?? UInt64(infos.count))
        w.u64(kvCount ?? UInt64(pairs.count))
        for p in pairs { w.bytes += p }
        for t in infos {
            if let raw = t.rawName { w.raw(raw) } else { w.string(t.name) }
            w.u32(UInt32(t.dims.count))
            for d in t.dims { w.u64(d) }
            w.u32(t.type)
            w.u64(t.offset)
        }
        while w.bytes.count % alignment != 0 { w.u8(0) }
        w.bytes += (0..<dataBytes).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        if let n = truncateTo { return Array(w.bytes.prefix(n)) }
        return w.bytes
    }

    func open() throws -> GGUFFile { try GGUFFile(file: MappedFile(copying: encoded, path: "test.gguf")) }
}

@Suite struct GGUFReaderTests {
    @Test func readsWhatGGUFPyWrote() throws {
        for name in ["types.gguf", "aligned64.gguf"] {
            let c = try Checkpoint.open(Fixtures.path("gguf/" + name))
            let g = try #require(c as? GGUFFile)
            let want = try Fixtures.json("gguf/\(name).expected.json")
            #expect(c.format == .gguf)
            #expect(g.alignment == want["alignment"]?.intValue)
            let tensors = want["tensors"]?.arrayValue ?? []
            #expect(c.tensors.map(\.name) == tensors.compactMap { $0["name"]?.stringValue })
            for (i, t) in tensors.enumerated() {
                let e = c.tensors[i]
                #expect(e.dtype.name == t["type"]?.stringValue, "\(e.name)")
                #expect(e.shape == t["shape"]?.arrayValue?.compactMap(\.intValue), "\(e.name): PyTorch order is ggml's ne reversed")
                let bytes = try c.bytes(of: i)
                #expect(SHA256Hasher.hex(bytes) == t["bytes_sha256"]?.stringValue, "\(e.name)")
                if let values = t["values_sha256"]?.stringValue {
                    // The float32 values gguf-py's `dequantize` gives, bit for bit.
                    var out = [Float](repeating: 0, count: e.elementCount)
                    out.withUnsafeMutableBufferPointer { ElementConversion.toFloat32(bytes.buffer.baseAddress!, dtype: e.dtype, count: e.elementCount, into: $0.baseAddress!) }
                    #expect(out.withUnsafeBytes { SHA256Hasher.hex($0) } == values, "\(e.name) (\(e.dtype.name))")
                }
            }
        }
        let g = try GGUFFile(file: MappedFile(path: Fixtures.path("gguf/types.gguf")))
        #expect(g.value("test.u8") == .u8(200))
        #expect(g.value("test.i64") == .i64(-(1 << 62)))
        #expect(g.value("test.u64") == .u64((1 << 63) + 5))
        #expect(g.value("test.f64") == .f64(-2.5))
        #expect(g.value("test.bool") == .bool(true))
        #expect(g.value("test.string") == .string("héllo GGUF"))
        #expect(g.value("test.strings") == .array([.string("a"), .string("bc"), .string("")], elementType: 8))
        #expect(g.metadata.first { $0.key == "test.long" }?.value == "[40 × i32]")
        #expect(g.metadata.first { $0.key == "general.architecture" }?.value == "flux")
        let meta = try Fixtures.json("gguf/types.gguf.expected.json")["metadata"]
        #expect(meta?["test.u32"]?.intValue == 4_000_000_000 && g.value("test.u32") == .u32(4_000_000_000))
    }

    @Test func writerAndReaderAgree() throws {
        let dir = NSTemporaryDirectory() + "ditkit-gguf-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { FileSystem.removeTree(dir) }
        var rng = SeededRandom(seed: 3)
        let x = rng.normals(2 * 512)
        var tensors: [GGUFTensor] = []
        var stored: [String: [UInt8]] = [:]
        for type in DType.blockTypes + [.f32] {
            let size = try type.byteCount(shape: [2, 512])
            var b = [UInt8](repeating: 0, count: size)
            x.withUnsafeBufferPointer { src in
                b.withUnsafeMutableBytes { dst in
                    if type == .f32 { dst.copyMemory(from: UnsafeRawBufferPointer(src)) } else {
                        BlockQuantizer.quantize(type, src.baseAddress!, count: x.count, into: dst.baseAddress!)
                    }
                }
            }
            stored[type.name] = b
            let copy = b
            tensors.append(GGUFTensor(name: "t." + type.name, shape: [2, 512], type: type, bytes: { RawBytes(copying: copy) }))
        }
        let file = try OutputFile(path: dir + "/w.gguf")
        try GGUFWriter.write(metadata: [("general.architecture", .string("dit")), ("x.list", .array([.i64(-1), .i64(2)])),
                                        ("x.empty", .array([], elementType: 8)), ("x.half", .u16(7))], tensors: tensors, to: file)
        try file.close()
        let g = try GGUFFile(file: MappedFile(path: dir + "/w.gguf"))
        for (i, t) in g.tensors.enumerated() {
            #expect(t.shape == [2, 512])
            #expect(Array(try g.bytes(of: i).buffer) == stored[String(t.name.dropFirst(2))], "\(t.name)")
            #expect(g.ranges[i].lowerBound % 32 == 0)
        }
        #expect(g.value("x.list") == .array([.i64(-1), .i64(2)], elementType: 11))
        #expect(g.value("x.empty") == .array([], elementType: 8))
        #expect(g.value("x.half") == .u16(7))
    }

    @Test func theSpecBuilderMakesAValidFile() throws {
        let g = try GGUFSpec().open()
        #expect(g.tensors.map(\.name) == ["a", "b"])
        #expect(g.tensors[1].dtype == .q8_0 && g.tensors[1].shape == [2, 32])
    }

    /// Each corruption is refused with a GGUFError whose message says what and where.
    @Test func corruptionsAreRefusedCleanly() throws {
        func pairs(_ extra: [UInt8]) -> [[UInt8]] { [GGUFSpec.stringPair("general.architecture", "flux"), extra] }
        var cases: [(String, GGUFSpec, String)] = []
        func add(_ label: String, _ expected: String, _ edit: (inout GGUFSpec) -> Void) {
            var s = GGUFSpec()
            edit(&s)
            cases.append((label, s, expected))
        }
        add("huge tensor count", "tensor count 1099511627776 at byte 8 exceeds the limit") { $0.tensorCount = 1 << 40 }
        add("lying tensor count", "tensor count 500000 cannot fit") { $0.tensorCount = 500_000 }
        add("lying key/value count", "key/value count 100000 cannot fit") { $0.kvCount = 100_000 }
        add("huge key/value count", "key/value count 18446744073709551615 at byte 16 exceeds") { $0.kvCount = .max }
        add("one tensor too many", "runs past the end") { $0.tensorCount = 3 }
        add("data past the end", "runs past the end of the") { $0.infos[1].offset = 4096 }
        add("offset past Int", "data offset 9223372036854775808 is out of range") { $0.infos[1].offset = 1 << 63 }
        add("overlapping data", "overlaps the data of 'a'") { $0.infos[1].offset = 0 }
        add("misaligned data", "data offset 16 is not a multiple of the alignment 32") { $0.infos[1].offset = 16 }
        add("alignment not a power of two", "general.alignment 48 is not a power of two") { $0.pairs[1] = GGUFSpec.u32Pair("general.alignment", 48) }
        add("alignment zero", "general.alignment 0 is not a power of two") { $0.pairs[1] = GGUFSpec.u32Pair("general.alignment", 0) }
        add("alignment of the wrong type", "general.alignment is not a u32") { $0.pairs[1] = GGUFSpec.stringPair("general.alignment", "32") }
        add("unknown ggml type", "tensor 'b' (info at byte") { $0.infos[1].type = 99 }
        add("unknown ggml type named", "ggml type 99 (unknown) is not supported") { $0.infos[1].type = 99 }
        add("IQ type", "ggml type 16 (IQ2_XXS) is not supported") { $0.infos[1].type = 16; $0.infos[1].dims = [256, 1] }
        add("rows that do not divide", "rows of 100 values cannot be stored as Q4_K") { $0.infos[1].type = 12; $0.infos[1].dims = [100, 1] }
        add("too many dimensions", "5 dimensions (at most 4)") { $0.infos[0].dims = [1, 1, 1, 1, 4] }
        add("dimensions that overflow", "overflows") { $0.infos[0].dims = [1 << 40, 1 << 40] }
        add("dimension past Int64", "dimension 9223372036854775809 is out of range") { $0.infos[0].dims = [(1 << 63) + 1] }
        add("tensor name too long", "a tensor name of 65 bytes at byte") { $0.infos[0].name = String(repeating: "n", count: 65) }
        add("duplicate tensor", "tensor 'a' (info at byte") { $0.infos[1].name = "a" }
        add("duplicate key", "duplicate key 'general.architecture'") { $0.pairs[1] = GGUFSpec.stringPair("general.architecture", "x") }
        add("huge string", "a string value of 4611686018427387904 bytes at byte") {
            $0.pairs = pairs(GGUFSpec.pair("s") { $0.u32(8); $0.u64(1 << 62) })
        }
        add("string past the end", "truncated GGUF: a string value at byte") {
            $0.pairs = pairs(GGUFSpec.pair("s") { $0.u32(8); $0.u64(100_000) })
        }
        add("huge key", "a key of 70000 bytes") { $0.pairs = [GGUFSpec.stringPair(String(repeating: "k", count: 70_000), "v")] }
        add("huge array", "array element count 1099511627776 at byte") {
            $0.pairs = pairs(GGUFSpec.pair("arr") { $0.u32(9); $0.u32(4); $0.u64(1 << 40) })
        }
        add("array that cannot fit", "array of 1000000 u32 cannot fit") {
            $0.pairs = pairs(GGUFSpec.pair("arr") { $0.u32(9); $0.u32(4); $0.u64(1_000_000) })
        }
        add("arrays nested too deep", "arrays nested deeper than 4") {
            // Value type 9, then six arrays of one array each (element type 9, count 1), then u32[0].
            $0.pairs = pairs(GGUFSpec.pair("arr") { w in w.u32(9); for _ in 0..<6 { w.u32(9); w.u64(1) }; w.u32(4); w.u64(0) })
        }
        add("unknown array element type", "unknown array element type 13") {
            $0.pairs = pairs(GGUFSpec.pair("arr") { $0.u32(9); $0.u32(13); $0.u64(1) })
        }
        add("unknown value type", "unknown value type 13") { $0.pairs = pairs(GGUFSpec.pair("v") { $0.u32(13); $0.u32(0) }) }
        add("bool that is not 0 or 1", "bool value 2 (must be 0 or 1)") { $0.pairs = pairs(GGUFSpec.pair("b") { $0.u32(7); $0.u8(2) }) }
        add("key that is not UTF-8", "a key is not valid UTF-8") {
            $0.pairs = [{ var w = GGUFBytes(); w.raw([0xC3, 0x28]); w.u32(4); w.u32(1); return w.bytes }()]
        }
        add("version 1", "GGUF version 1 is not supported") { $0.version = 1 }
        add("big-endian", "big-endian GGUF") { $0.version = UInt32(3).byteSwapped }
        add("truncated header", "truncated GGUF: the tensor count at byte 8") { $0.truncateTo = 10 }
        add("truncated tensor info", "truncated GGUF") { $0.truncateTo = 120 }
        add("empty file", "not a GGUF file") { $0.truncateTo = 0 }
        add("tensor name that is not UTF-8", "a tensor name is not valid UTF-8") { $0.infos[0].rawName = [0xFF, 0x61] }
        add("0-d block tensor", "a 0-d tensor cannot be stored as Q8_0") { $0.infos[1].dims = [] }
        add("one key/value pair too many", "at byte") { $0.kvCount = 3 }   // the first tensor info read as a pair
        add("string in an array too long", "a string value of 1099511627776 bytes at byte") {
            $0.pairs = pairs(GGUFSpec.pair("arr") { $0.u32(9); $0.u32(8); $0.u64(2); $0.string("ok"); $0.u64(1 << 40) })
        }
        add("arrays over the budget of all arrays", "array element count 4000000 at byte") {
            // Each array is under the per-array cap; together they are over the file's budget.
            $0.pairs = pairs(GGUFSpec.pair("big") { w in w.u32(9); w.u32(0); w.u64(5_000_000); w.bytes += [UInt8](repeating: 1, count: 5_000_000) })
                + [GGUFSpec.pair("big2") { w in w.u32(9); w.u32(0); w.u64(4_000_000); w.bytes += [UInt8](repeating: 1, count: 4_000_000) }]
        }

        for (label, spec, expected) in cases {
            do {
                _ = try spec.open()
                Issue.record("\(label): accepted")
            } catch let e as GGUFError {
                let message = "\(e)"
                #expect(message.contains(expected), "\(label): \(message)")
                #expect(!message.contains("\n"), "\(label): one line")
            } catch {
                Issue.record("\(label): \(type(of: error)) \(error), not a GGUFError")
            }
        }
        #expect(throws: GGUFError.self) { try GGUFFile(file: MappedFile(copying: Array("GGUX".utf8) + [UInt8](repeating: 0, count: 40), path: "x")) }
    }

    @Test func openingThroughCheckpointNamesTheFile() throws {
        let dir = NSTemporaryDirectory() + "ditkit-gguf-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { FileSystem.removeTree(dir) }
        var s = GGUFSpec()
        s.infos[1].type = 16
        s.infos[1].dims = [256, 1]
        try FileSystem.writeFile(dir + "/iq.gguf", s.encoded)
        do {
            _ = try Checkpoint.open(dir + "/iq.gguf")
            Issue.record("accepted")
        } catch {
            #expect("\(error)".hasPrefix(dir + "/iq.gguf: tensor 'b' (info at byte "))
            #expect("\(error)".hasSuffix("ggml type 16 (IQ2_XXS) is not supported"))
        }
    }
}

@Suite struct ManifestVersionTests {
    func manifest(stored: DType, source: DType, _ checksum: ChecksumAlgorithm = .sha256) -> BundleManifest {
        let hash = String(repeating: "0", count: checksum.hexDigits)
        let t = BundleTensor(name: "w", stored: StoredRecord(dtype: stored, shape: [2, 256], offset: 0, bytes: try! stored.byteCount(shape: [2, 256]), checksum: hash),
                             sources: [SourceTensorRecord(name: "w", dtype: source, shape: [2, 256], checksum: hash)], transform: "copy")
        return BundleManifest(alignment: 64, family: "dit", variant: "x", config: .object([]), naming: "n", provenance: .object([]),
                              dtypePolicy: .object([]), weightsBytes: t.stored.bytes, tensors: [t], checksum: checksum)
    }

    /// `json` with `format_version` set to `v`.
    func withVersion(_ json: JSONValue, _ v: Int) -> JSONValue {
        guard case .object(let members) = json else { return json }
        return .object(members.map { $0.0 == "format_version" ? ($0.0, .int(v)) : $0 })
    }

    /// With SHA-256 checksums (bundles of versions 1 and 2), version 2 exactly when a stored or
    /// source dtype is a block type; a version-1 manifest naming one is refused.
    @Test func versionFollowsTheBlockTypes() throws {
        #expect(manifest(stored: .f32, source: .f16).formatVersion == 1)
        #expect(manifest(stored: .q4_K, source: .f32).formatVersion == 2)
        #expect(manifest(stored: .f32, source: .q4_K).formatVersion == 2)
        for m in [manifest(stored: .q4_K, source: .f32), manifest(stored: .f32, source: .q6_K)] {
            let parsed = try BundleManifest(json: m.json)
            #expect(parsed.tensors == m.tensors)
            #expect(parsed.checksum == .sha256)
            #expect { _ = try BundleManifest(json: withVersion(m.json, 1)) } throws: { "\($0)".contains("which needs format_version 2 (the manifest says 1)") }
        }
    }

    /// Version 3 records XXH3-128 (member `xxh3_128`, 32 hex digits) for every stored, scale and
    /// source record, with or without block types; versions 1 and 2 keep `sha256` (64 digits).
    /// A manifest whose records do not carry its version's checksum is refused, naming it.
    @Test func version3RecordsXXH3() throws {
        for (stored, source) in [(DType.f32, DType.f16), (.q4_K, .f32)] {
            let m = manifest(stored: stored, source: source, .xxh3_128)
            #expect(m.formatVersion == 3)
            let json = m.json
            #expect(json["format_version"] == .int(3))
            let t = json["tensors"]?.arrayValue?.first
            #expect(t?["xxh3_128"]?.stringValue?.count == 32 && t?["sha256"] == nil)
            #expect(t?["source"]?["tensors"]?.arrayValue?.first?["xxh3_128"] != nil)
            let parsed = try BundleManifest(json: json)
            #expect(parsed.checksum == .xxh3_128 && parsed.tensors == m.tensors && parsed.formatVersion == 3)
            // Read as version 2, the records lack their SHA-256; an old manifest relabelled 3 lacks its XXH3-128.
            #expect { _ = try BundleManifest(json: withVersion(json, 2)) } throws: { "\($0)".contains("no sha256 of 64 hex digits (format_version 2)") }
            let old = manifest(stored: stored, source: source, .sha256).json
            #expect { _ = try BundleManifest(json: withVersion(old, 3)) } throws: { "\($0)".contains("no xxh3_128 of 32 hex digits (format_version 3)") }
        }
        #expect(BundleManifest.readableVersions == 1...3)
        #expect { _ = try BundleManifest(json: withVersion(manifest(stored: .f32, source: .f32, .xxh3_128).json, 4)) } throws: {
            "\($0)".contains("bundle format version 4 is not supported (this DiTKit reads versions 1 to 3)")
        }
    }
}
