// Conversion of every accepted input form, checked against values computed by torch.
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats
import DiTKitModels
@testable import DiTKitConvert

/// A progress reporter that runs `action` once, at the first step reported.
private final class OnFirstStep: ProgressReporter, @unchecked Sendable {
    let action: @Sendable () -> Void
    let done = Locked(false)
    init(_ action: @escaping @Sendable () -> Void) { self.action = action }
    func begin(_ label: String, total: Int, unit: ProgressUnit) {}
    func finish() {}
    func advance(_ units: Int) {
        if done.withLock({ d in defer { d = true }; return !d }) { action() }
    }
}

@Suite struct ConvertTests {
    let expected: JSONValue
    init() throws { expected = try Fixtures.json("convert/expected.json") }

    func convert(_ source: String, _ dtype: StorageType = .f32, heads: Int? = 2, configure: (inout ConversionOptions) -> Void = { _ in }) throws -> (NativeBundle, ConversionSummary, String) {
        let dir = try temporaryDirectory()
        var o = ConversionOptions()
        o.dtype = dtype
        o.hints.numHeads = heads
        configure(&o)
        let out = dir + "/model.ditkit"
        let s = try Converter.convert(source: Fixtures.path(source), output: out, options: o)
        return (try NativeBundle(path: out), s, dir)
    }

    // A durable conversion syncs the weights, the manifest, its checksum and the directory it moves
    // the bundle into; `durable` false (convert --no-sync) syncs none of them.
    @Test func onlyADurableConversionSyncs() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let synced = Locked<[String]>([])
        FileSystem.syncObserver.withLock { $0 = { path in if path.hasPrefix(dir) { synced.withLock { $0.append(path) } } } }
        defer { FileSystem.syncObserver.withLock { $0 = nil } }
        for (name, durable) in [("a", true), ("b", false)] {
            var o = ConversionOptions()
            o.dtype = .f16
            o.durable = durable
            _ = try Converter.convert(source: Fixtures.path("verify/dit_verify.pt"), output: dir + "/\(name).ditkit", options: o)
        }
        let paths = synced.withLock { $0 }
        let names = Set(paths.map { FileSystem.baseName($0) })
        #expect(names == ["weights.bin", "manifest.json", "manifest.json.sha256", FileSystem.baseName(dir)], "\(paths)")
        #expect(paths.filter { $0 == dir }.count == 1, "\(paths)")
        #expect(!paths.contains { $0.contains(".b.ditkit") }, "\(paths)")
        #expect(paths.allSatisfy { $0 == dir || $0.contains(".a.ditkit.partial-") }, "\(paths)")
    }

    // The source's SHA-256, made beside the conversion from the bytes it reads (HashFeed) when
    // there are two threads or more, is the file's, and the bundle does not depend on the threads.
    @Test func theSourceDigestAndBundleDoNotDependOnTheThreads() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        for source in ["verify/dit_verify.pt", "verify/vae_verify/diffusion_pytorch_model.safetensors"] {
            let truth = try SHA256Hasher.hex(file: Fixtures.path(source))
            var manifests: [[UInt8]] = []
            for threads in [1, 2, 3, 5] {
                var o = ConversionOptions()
                o.dtype = .f16
                o.threads = threads
                let out = dir + "/\(threads).ditkit"
                _ = try Converter.convert(source: Fixtures.path(source), output: out, options: o)
                let b = try NativeBundle(path: out)
                #expect(b.manifest.provenance["source"]?["sha256"]?.stringValue == truth, "\(source), \(threads) threads")
                manifests.append(try FileSystem.readFile(out + "/manifest.json") + FileSystem.readFile(out + "/weights.bin"))
                FileSystem.removeTree(out)
            }
            #expect(Set(manifests).count == 1, "\(source)")
        }
    }

    // A source whose SHA-256 is remembered for its present version is not read for it: a planted
    // digest is what the manifest records (and --rehash restores the true one). The committed
    // fixture was last changed when the repository was checked out, long settled.
    @Test func aRememberedSourceDigestIsNotHashedAgain() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let source = Fixtures.path("verify/dit_verify.pt")
        let truth = try SHA256Hasher.hex(file: source)
        var o = ConversionOptions()
        o.dtype = .f16
        o.digests = FileDigests(cache: dir + "/cache")
        func run(_ name: String, rehash: Bool = false) throws -> (ConversionSummary, String?, [UInt8]) {
            o.rehash = rehash
            let s = try Converter.convert(source: source, output: dir + "/" + name, options: o)
            let b = try NativeBundle(path: dir + "/" + name)
            return (s, b.manifest.provenance["source"]?["sha256"]?.stringValue, try FileSystem.readFile(dir + "/" + name + "/manifest.json"))
        }
        let (s1, sha1, m1) = try run("a.ditkit")
        #expect(!s1.sourceHashRemembered && sha1 == truth)
        let identity = try #require(FileIdentity(path: source))
        #expect(o.digests?.sha256(identity) == truth)
        let (s2, sha2, m2) = try run("b.ditkit")
        #expect(s2.sourceHashRemembered && sha2 == truth && m2 == m1)

        let planted = String(repeating: "0", count: 64)
        #expect(o.digests?.remember(planted, before: identity, after: identity, started: identity.changed + FileDigests.settle, path: source) == true)
        let (s3, sha3, _) = try run("c.ditkit")
        #expect(s3.sourceHashRemembered && sha3 == planted)
        let (s4, sha4, _) = try run("d.ditkit", rehash: true)
        #expect(!s4.sourceHashRemembered && sha4 == truth && o.digests?.sha256(identity) == truth)
    }

    /// Converts a copy of the verify fixture to f16 while `change` alters it (called with its path once,
    /// at the conversion's first progress report), with its SHA-256 hashed now or remembered from before;
    /// expects `E` thrown and nothing left behind.
    private func expectRefused<E: Error>(_: E.Type, remembered: Bool, threads: Int = ProcessInfoLite.activeProcessorCount,
                                         change: @escaping @Sendable (String) -> Void) throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let source = dir + "/dit.pt"
        try FileSystem.writeFile(source, try FileSystem.readFile(Fixtures.path("verify/dit_verify.pt")))
        var o = ConversionOptions()
        o.dtype = .f16
        o.threads = threads
        o.digests = FileDigests(cache: dir + "/cache")
        if remembered, let id = FileIdentity(path: source) {
            #expect(o.digests?.remember(try SHA256Hasher.hex(file: source), before: id, after: id, started: id.changed + FileDigests.settle, path: source) == true)
        }
        #expect(throws: E.self) {
            _ = try Converter.convert(source: source, output: dir + "/out.ditkit", options: o, progress: OnFirstStep { change(source) })
        }
        #expect(!FileSystem.exists(dir + "/out.ditkit"))
        #expect(FileSystem.listDirectory(dir).sorted() == ["cache", "dit.pt"] || FileSystem.listDirectory(dir).sorted() == ["dit.pt"])
    }

    // A source written while it is converted (here: one byte rewritten in place, same size and
    // contents, as soon as the conversion reports progress) is refused and leaves nothing, whether
    // its SHA-256 is hashed now or remembered from before.
    @Test(arguments: [false, true])
    func aSourceWrittenDuringTheConversionIsRefused(_ remembered: Bool) throws {
        try expectRefused(FileWrittenWhileReading.self, remembered: remembered) { path in
            guard let h = FileHandle(forUpdatingAtPath: path) else { return }
            let first = h.readData(ofLength: 1)
            h.seek(toFileOffset: 0)
            h.write(first)
            try? h.close()
        }
    }

    // A source cut short while it is converted (truncated to its first 4 KiB as soon as the conversion
    // reports progress) is refused with FileChangedWhileReading and leaves nothing, whether the
    // whole-file hash runs beside the conversion (fed by it) or not (SHA-256 remembered, with two
    // threads or one).
    @Test(arguments: [(false, 2), (true, 2), (true, 1)])
    func aSourceCutShortDuringTheConversionIsRefused(_ remembered: Bool, _ threads: Int) throws {
        try expectRefused(FileChangedWhileReading.self, remembered: remembered, threads: threads) { path in
            _ = truncate(path, 4096)
        }
    }

    @Test(arguments: [StorageType.f32, .f16, .bf16])
    func floatStorageIsBitIdenticalToTorch(_ dtype: StorageType) throws {
        let (b, _, dir) = try convert("readers/dit_tiny.pt", dtype)
        defer { FileSystem.removeTree(dir) }
        let want = try #require(expected["dit_tiny"]?.objectValue)
        let sources = try sourceChecksums("readers/dit_tiny.pt", .xxh3_128)
        let sourceSHA = try sourceChecksums("readers/dit_tiny.pt", .sha256)
        #expect(b.manifest.tensors.count == want.count)
        #expect(b.manifest.formatVersion == 3 && b.manifest.checksum == .xxh3_128)
        for (name, e) in want {
            let t = try #require(b.record(name))
            #expect(b.storedSHA256(name) == e[dtype.rawValue]?.stringValue, "\(name) \(dtype)")
            #expect(t.stored.dtype == dtype.floatDType)
            // The source record is the XXH3-128 of the source tensor (what `inspect --hash` prints) whose SHA-256 is torch's.
            let source = try #require(t.sources.first)
            #expect(source.checksum == sources[source.name])
            #expect(sourceSHA[source.name] == e["f32"]?.stringValue)
            if dtype == .f32 { #expect(t.error == nil) } else { #expect(t.error != nil) }
        }
    }

    @Test func int8MatchesTheReferenceQuantizer() throws {
        let (b, s, dir) = try convert("readers/dit_tiny.pt", .int8)
        defer { FileSystem.removeTree(dir) }
        let want = try #require(expected["dit_tiny"]?.objectValue)
        var quantized = 0
        for (name, e) in want {
            let t = try #require(b.record(name))
            if t.stored.dtype == .i8 {
                quantized += 1
                #expect(b.storedSHA256(name) == e["int8"]?.stringValue, "\(name)")
                #expect(b.scaleSHA256(name) == e["int8_scale"]?.stringValue, "\(name) scale")
                let err = try #require(t.error)
                #expect(err.sqnrDB.map { $0 > 35 } == true, "\(name): \(err)")
            } else {
                #expect(b.storedSHA256(name) == e["f32"]?.stringValue, "\(name) stays float32")
            }
        }
        // qkv, proj, fc1, fc2, adaLN per block; t_embedder (2); final adaLN.
        #expect(quantized == 2 * 5 + 2 + 1)
        #expect(b.record("y_embedder.embedding_table.weight")?.stored.dtype == .f32)
        #expect(b.record("final_layer.linear.weight")?.stored.dtype == .f32)
        #expect(b.record("pos_embed")?.stored.dtype == .f32)
        #expect(s.lossy.count == quantized)
        // Dequantized values are within half a step of the source.
        let view = try #require(b.view("blocks.0.mlp.fc1.weight"))
        let src = try Checkpoint.open(Fixtures.path("readers/dit_tiny.pt"))
        let original = try src.bytes(of: try #require(src.index(of: "blocks.0.mlp.fc1.weight"))).withElements(of: Float.self) { Array($0) }
        let deq = view.floats()
        let scales = view.scale!.withElements(of: Float.self) { Array($0) }
        let cols = original.count / scales.count
        for i in 0..<original.count { #expect(abs(deq[i] - original[i]) <= scales[i / cols] / 2 * 1.0001) }
    }

    /// Every checksum a format-3 manifest records is the XXH3-128 of the bytes it names: each
    /// stored tensor and scale (read back from weights.bin) and each source tensor (hashed in the
    /// source file on its own), through every transform: copy, concat-rows, fold-identical,
    /// computed, row-slice (PixArt's fused qkv), row-range and swap-halves (FLUX's BFL layout,
    /// SD3's original final norm), and through narrowing and quantization streamed in steps.
    @Test(arguments: [("readers/dit_tiny.pt", StorageType.int8, 2), ("readers/dit_tiny.pt", .f16, 2),
                      ("convert/dit_diffusers/diffusion_pytorch_model.safetensors", .bf16, 0),
                      ("pixart/alpha_original.pth", .f16, 2), ("flux/dev_bfl_fp8.safetensors", .int8, 0),
                      ("sd3/mmditx_bare.safetensors", .f32, 0)])
    func everyChecksumIsTheXXH3OfItsBytes(_ source: String, _ dtype: StorageType, _ heads: Int) throws {
        let (b, _, dir) = try convert(source, dtype, heads: heads == 0 ? nil : heads)
        defer { FileSystem.removeTree(dir) }
        #expect(b.manifest.formatVersion == 3)
        let sources = try sourceChecksums(source, .xxh3_128)
        var transforms = Set<String>()
        for t in b.manifest.tensors {
            _ = b.storedSHA256(t.name)
            if t.scale != nil { _ = b.scaleSHA256(t.name) }
            for s in t.sources { #expect(s.checksum == sources[s.name], "\(t.name) <- \(s.name)") }
            transforms.insert(String(t.transform.prefix { $0 != " " }))
        }
        #expect(try BundleCheck.run(b).isEmpty)
        let expected: [String: Set<String>] = [
            "readers/dit_tiny.pt": ["copy"], "convert/dit_diffusers/diffusion_pytorch_model.safetensors": ["concat-rows", "fold-identical", "computed-2d-sincos"],
            "pixart/alpha_original.pth": ["row-slice"], "flux/dev_bfl_fp8.safetensors": ["row-range", "swap-halves"], "sd3/mmditx_bare.safetensors": ["swap-halves"],
        ]
        #expect(expected[source, default: []].isSubset(of: transforms), "\(source): \(transforms.sorted())")
    }

    @Test func trainCheckpointUsesEMAUnlessTold() throws {
        let listing = try Fixtures.json("readers/train_checkpoint.pt.expected.json")
        var hashes: [String: String] = [:]
        for t in listing["tensors"]?.arrayValue ?? [] { hashes[t["name"]!.stringValue!] = t["sha256"]?.stringValue }
        let (ema, s, dir) = try convert("readers/train_checkpoint.pt")
        defer { FileSystem.removeTree(dir) }
        #expect(s.subtree == "ema")
        #expect(ema.manifest.provenance["source"]?["subtree"]?.stringValue == "ema")
        for t in ema.manifest.tensors { #expect(ema.storedSHA256(t.name) == hashes["ema." + t.name], "\(t.name)") }
        let (model, _, dir2) = try convert("readers/train_checkpoint.pt") { $0.hints.select = "model" }
        defer { FileSystem.removeTree(dir2) }
        for t in model.manifest.tensors { #expect(model.storedSHA256(t.name) == hashes["model." + t.name], "\(t.name)") }
    }

    @Test func diffusersDiTFoldsEmbeddersMergesQKVAndRecomputesPosEmbed() throws {
        let (b, s, dir) = try convert("convert/dit_diffusers/diffusion_pytorch_model.safetensors", heads: nil)
        defer { FileSystem.removeTree(dir) }
        #expect(s.sourceNaming == "dit-diffusers")
        let want = try #require(expected["dit_tiny"]?.objectValue)
        for (name, e) in want { #expect(b.storedSHA256(name) == e["f32"]?.stringValue, "\(name)") }
        #expect(b.record("pos_embed")?.transform == "computed-2d-sincos")
        #expect(b.record("blocks.1.attn.qkv.weight")?.transform == "concat-rows")
        #expect(b.record("blocks.1.attn.qkv.weight")?.sources.map(\.name) == ["transformer_blocks.1.attn1.to_q.weight", "transformer_blocks.1.attn1.to_k.weight", "transformer_blocks.1.attn1.to_v.weight"])
        #expect(b.record("t_embedder.mlp.0.weight")?.transform == "fold-identical")
        #expect(b.record("t_embedder.mlp.0.weight")?.sources.count == 2)
        if let c = try ModelConfiguration(family: "dit", json: b.manifest.config).as(DiTConfiguration.self) {
            #expect(c.numHeads == 2 && c.inputSize == 8 && c.numClasses == 10 && c.depth == 2)
        } else { Issue.record("not a DiT") }
    }

    @Test func diffusersDiTWithoutConfigNeedsTheImageSize() throws {
        #expect(throws: FileError.self) { try convert("convert/dit_diffusers_noconfig.safetensors") }
        let (b, _, dir) = try convert("convert/dit_diffusers_noconfig.safetensors") { $0.hints.imageSize = 64 }
        defer { FileSystem.removeTree(dir) }
        #expect(b.manifest.tensors.count == 32)
    }

    @Test func vaeInEveryNamingBecomesTheSameBundle() throws {
        let want = try #require(expected["vae"]?.objectValue)
        let order = (expected["vae_order"]?.arrayValue ?? []).compactMap { $0.stringValue }
        for (source, dtype, naming, subtree) in [("convert/vae_ldm.ckpt", StorageType.f32, "vae-ldm", "state_dict"),
                                                   ("convert/vae_diffusers_legacy_f16.safetensors", .f16, "vae-diffusers-legacy", ""),
                                                   ("convert/sd_full_f16.ckpt", .f16, "vae-ldm", "state_dict.first_stage_model")] {
            let (b, s, dir) = try convert(source, dtype)
            defer { FileSystem.removeTree(dir) }
            #expect(s.sourceNaming == naming)
            #expect(s.subtree == subtree)
            #expect(b.manifest.tensors.map(\.name) == order, "canonical order is diffusers' state_dict order")
            for (name, e) in want { #expect(b.storedSHA256(name) == e[dtype.rawValue]?.stringValue, "\(source): \(name)") }
            if let c = try ModelConfiguration(family: "vae", json: b.manifest.config).as(VAEConfiguration.self) {
                #expect(c.blockOutChannels == [64, 32] && c.layersPerBlock == 1 && c.latentChannels == 4)
            } else { Issue.record("not a VAE") }
        }
    }

    @Test func strictLoadingListsEveryProblemAndWritesNothing() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        var o = ConversionOptions()
        o.hints.numHeads = 2
        do {
            _ = try Converter.convert(source: Fixtures.path("convert/dit_mismatch.pt"), output: dir + "/m.ditkit", options: o)
            Issue.record("accepted")
        } catch {
            let text = String(describing: error)
            #expect(text.contains("1 missing (blocks.1.mlp.fc2.bias)"))
            #expect(text.contains("1 unexpected (blocks.0.attn.extra)"))
            #expect(text.contains("final_layer.linear.bias: [31] instead of [32]"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }

    @Test func float16OverflowIsRefusedUnlessKept() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        var o = ConversionOptions()
        o.dtype = .f16
        o.hints.numHeads = 2
        do {
            _ = try Converter.convert(source: Fixtures.path("convert/dit_f16_overflow.pt"), output: dir + "/o.ditkit", options: o)
            Issue.record("accepted")
        } catch {
            #expect(String(describing: error).contains("blocks.0.mlp.fc2.weight (3 values)"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        o.keep = ["blocks.0.mlp.fc2.*"]
        _ = try Converter.convert(source: Fixtures.path("convert/dit_f16_overflow.pt"), output: dir + "/o.ditkit", options: o)
        let b = try NativeBundle(path: dir + "/o.ditkit")
        #expect(b.record("blocks.0.mlp.fc2.weight")?.stored.dtype == .f32)
        #expect(b.record("blocks.0.mlp.fc1.weight")?.stored.dtype == .f16)
        #expect(b.manifest.dtypePolicy["keep"] == .array([.string("blocks.0.mlp.fc2.*")]))
    }

    @Test func sameInputGivesByteIdenticalBundles() throws {
        // (auto needs a fidelity budget: AutoPrecisionTests checks its determinism.)
        for dtype in StorageType.allCases where dtype != .auto {
            let (a, _, d1) = try convert("readers/dit_tiny.pt", dtype)
            let (b, _, d2) = try convert("readers/dit_tiny.pt", dtype)
            defer { FileSystem.removeTree(d1); FileSystem.removeTree(d2) }
            #expect(a.manifestBytes == b.manifestBytes)
            #expect(a.weightsBytes.contentEquals(b.weightsBytes))
        }
    }

    @Test func existingOutputNeedsForce() throws {
        let (_, _, dir) = try convert("readers/dit_tiny.pt")
        defer { FileSystem.removeTree(dir) }
        var o = ConversionOptions()
        o.hints.numHeads = 2
        o.dtype = .f16
        #expect(throws: OutputError.self) { try Converter.convert(source: Fixtures.path("readers/dit_tiny.pt"), output: dir + "/model.ditkit", options: o) }
        #expect(try NativeBundle(path: dir + "/model.ditkit").manifest.dtypePolicy["dtype"]?.stringValue == "f32")
        o.force = true
        _ = try Converter.convert(source: Fixtures.path("readers/dit_tiny.pt"), output: dir + "/model.ditkit", options: o)
        #expect(try NativeBundle(path: dir + "/model.ditkit").manifest.dtypePolicy["dtype"]?.stringValue == "f16")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["model.ditkit"])
    }

    @Test func modelHintMustAgree() throws {
        #expect(throws: FileError.self) { try convert("readers/dit_tiny.pt") { $0.hints.model = "vae" } }
        #expect(throws: FileError.self) { try convert("readers/dit_tiny.pt") { $0.hints.model = "DiT-XL/2" } }
        let (_, s, dir) = try convert("readers/dit_tiny.pt") { $0.hints.model = "dit" }
        defer { FileSystem.removeTree(dir) }
        #expect(s.variant == "DiT-custom")
    }

    @Test func positionEmbeddingMatchesNumpyBitForBit() throws {
        let want = try #require(expected["pos_embed"]?.objectValue)
        for (key, hash) in want {
            let parts = key.split(separator: ",").compactMap { Int($0) }
            let v = DiTPositionEmbedding.values(hiddenSize: parts[0], gridSize: parts[1])
            let h = v.withUnsafeBytes { SHA256Hasher.hex($0) }
            #expect(h == hash.stringValue, "\(key)")
        }
    }

    /// Conversion streams a tensor in steps of rows: the row figures of the steps, merged, are those
    /// of the whole tensor (row numbers counted from the tensor's first row), for F16 and int8.
    @Test func rowFiguresOfStepsAddUpToTheWholeTensors() {
        let rows = 12, cols = 64
        var values = (0..<(rows * cols)).map { i in Float(sin(Double(i) * 0.37)) * Float(1 + i % 7) }
        // Row 9: a ruined int8 row (one outlier sets its scale) and tiny values F16 flushes.
        for c in 0..<cols { values[9 * cols + c] = c == 0 ? 1e6 : 1e-9 }
        values.withUnsafeBufferPointer { all in
            for int8 in [false, true] {
                func narrow(_ first: Int, _ count: Int) -> ErrorAccumulator {
                    let src = UnsafeBufferPointer(rebasing: all[(first * cols)..<((first + count) * cols)])
                    let q = UnsafeMutablePointer<Int8>.allocate(capacity: src.count), h = UnsafeMutablePointer<UInt16>.allocate(capacity: src.count)
                    let scales = UnsafeMutablePointer<Float>.allocate(capacity: count)
                    defer { q.deallocate(); h.deallocate(); scales.deallocate() }
                    return int8 ? Narrowing.toInt8(src, rows: count, track: true, q, scales) : Narrowing.toF16(src, rows: count, track: true, h)
                }
                let whole = narrow(0, rows)
                var merged = RowTracker()
                var acc = ErrorAccumulator()
                for (first, count) in [(0, 5), (5, 1), (6, 6)] {
                    let a = narrow(first, count)
                    acc.merge(a)
                    if let r = a.rows { merged.merge(r, firstRow: first) }
                }
                acc.rows = merged
                #expect(acc.figures == whole.figures, "int8: \(int8)")
                #expect(whole.figures.ruinedRows?.row == 9 && whole.figures.ruinedRows?.count == 1, "int8: \(int8)")
            }
        }
    }
}
