// Exports proven by the clients that consume them: diffusers (committed real-diffusers key lists,
// configs and values), gguf-py, h5py, numpy through examples/read_ditkit.py; packs round-trip.
import Testing
import Foundation
import DiTKitCore

@Suite struct ExportCommandTests {
    /// Converts a fixture into a fresh directory and returns (dir, bundle path).
    func bundle(_ source: String, _ extra: [String] = []) throws -> (String, String) {
        let dir = try Tool.temporaryDirectory()
        let out = dir + "/m.ditkit"
        let r = try Tool.run(["convert", Tool.fixture(source), "-o", out] + extra)
        #expect(r.status == 0, "\(r.stderr)")
        return (dir, out)
    }

    /// name -> (dtype, shape, sha256) of a safetensors file, read by DiTKit's own validating reader.
    func listing(_ path: String) throws -> [String: JSONValue] {
        let r = try Tool.run(["inspect", "--json", "--sha256", path])
        #expect(r.status == 0, "\(r.stderr)")
        var out: [String: JSONValue] = [:]
        for t in try JSONReader.parse(r.stdout)["tensors"]?.arrayValue ?? [] { out[t["name"]!.stringValue!] = t }
        return out
    }

    @Test func diffusersDiTFolderMatchesWhatDiffusersSaves() throws {
        let (dir, b) = try bundle("readers/dit_tiny.pt", ["--heads", "2"])
        defer { FileSystem.removeTree(dir) }
        let r = try Tool.run(["export", b, "--to", "diffusers", "-o", dir + "/dit"])
        #expect(r.status == 0, "\(r.stderr)")
        // Same keys, shapes and values as the folder diffusers' save_pretrained wrote for these weights.
        let ours = try listing(dir + "/dit/diffusion_pytorch_model.safetensors")
        let theirs = try listing(Tool.fixture("convert/dit_diffusers/diffusion_pytorch_model.safetensors"))
        #expect(Set(ours.keys) == Set(theirs.keys))
        for (k, v) in theirs { #expect(ours[k] == v, "\(k)") }
        let config = try JSONReader.parse(try FileSystem.readFile(dir + "/dit/config.json"))
        let want = try JSONReader.parse(try FileSystem.readFile(Tool.fixture("convert/dit_diffusers/config.json")))
        #expect(config == want)
    }

    @Test func diffusersVAEFolderMatchesWhatDiffusersSaves() throws {
        let (dir, b) = try bundle("verify/vae_verify/diffusion_pytorch_model.safetensors")
        defer { FileSystem.removeTree(dir) }
        #expect(try Tool.run(["export", b, "--to", "diffusers", "-o", dir + "/vae"]).status == 0)
        let ours = try listing(dir + "/vae/diffusion_pytorch_model.safetensors")
        let theirs = try listing(Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"))
        #expect(Set(ours.keys) == Set(theirs.keys))
        for (k, v) in theirs { #expect(ours[k] == v, "\(k)") }
        let config = try JSONReader.parse(try FileSystem.readFile(dir + "/vae/config.json"))
        let want = try JSONReader.parse(try FileSystem.readFile(Tool.fixture("verify/vae_verify/config.json")))
        #expect(config == want)
    }

    @Test func pixartDiffusersFolderMatchesWhatDiffusersSaves() throws {
        for name in ["alpha", "sigma"] {
            // From the original release layout: the diffusers export equals save_pretrained's folder.
            let (dir, b) = try bundle("pixart/\(name)_original.pth", ["--heads", "2"])
            defer { FileSystem.removeTree(dir) }
            let r = try Tool.run(["export", b, "--to", "diffusers", "-o", dir + "/pixart"])
            #expect(r.status == 0, "\(r.stderr)")
            // The null caption has no diffusers slot: said, not silently dropped.
            #expect(r.stderr.contains("caption_projection.y_embedding") && r.stderr.contains("not written"))
            let ours = try listing(dir + "/pixart/diffusion_pytorch_model.safetensors")
            let theirs = try listing(Tool.fixture("pixart/\(name)/transformer/diffusion_pytorch_model.safetensors"))
            #expect(Set(ours.keys) == Set(theirs.keys))
            for (k, v) in theirs { #expect(ours[k] == v, "\(k)") }
            let config = try JSONReader.parse(try FileSystem.readFile(dir + "/pixart/config.json"))
            let want = try JSONReader.parse(try FileSystem.readFile(Tool.fixture("pixart/\(name)/transformer/config.json")))
            #expect(config == want)
        }
    }

    @Test func pixartOriginalNamingRecreatesTheRelease() throws {
        for name in ["alpha", "sigma"] {
            let (dir, b) = try bundle("pixart/\(name)_original.pth", ["--heads", "2"])
            defer { FileSystem.removeTree(dir) }
            let r = try Tool.run(["export", b, "--to", "safetensors", "--naming", "original", "-o", dir + "/o.safetensors"])
            #expect(r.status == 0, "\(r.stderr)")
            // Same names, shapes and bytes as the original file torch.save wrote (torch's hashes), fused
            // qkv and kv and the recomputed pos_embed included: the original code loads it strictly.
            let ours = try listing(dir + "/o.safetensors")
            var theirs: [String: JSONValue] = [:]
            for (k, v) in try listing(Tool.fixture("pixart/\(name)_original.pth")) { theirs[String(k.dropFirst("state_dict.".count))] = v }
            #expect(Set(ours.keys) == Set(theirs.keys))
            for (k, v) in theirs {
                for field in ["dtype", "shape", "sha256"] { #expect(ours[k]?[field] == v[field], "\(k) \(field)") }
            }
        }
        // A bundle made from a diffusers folder has no null caption, which the original layout needs.
        let (dir, b) = try bundle("pixart/sigma/transformer/diffusion_pytorch_model.safetensors")
        defer { FileSystem.removeTree(dir) }
        let r = try Tool.run(["export", b, "--to", "safetensors", "--naming", "original", "-o", dir + "/o.safetensors"])
        #expect(r.status == 2 && r.stderr.contains("null caption"), "\(r.stderr)")
        #expect(!FileSystem.exists(dir + "/o.safetensors"))
        let bad = try Tool.run(["export", b, "--to", "safetensors", "--naming", "ldm", "-o", dir + "/o.safetensors"])
        #expect(bad.status != 0 && bad.stderr.contains("diffusers, original"), "\(bad.stderr)")
    }

    @Test func ldmNamingRoundTripsToTheOriginalFile() throws {
        let (dir, b) = try bundle("convert/vae_ldm.ckpt")
        defer { FileSystem.removeTree(dir) }
        #expect(try Tool.run(["export", b, "--to", "safetensors", "--naming", "ldm", "-o", dir + "/ldm.safetensors"]).status == 0)
        let ours = try listing(dir + "/ldm.safetensors")
        var theirs: [String: JSONValue] = [:]
        for (k, v) in try listing(Tool.fixture("convert/vae_ldm.ckpt")) where k.hasPrefix("state_dict.") {
            theirs[String(k.dropFirst("state_dict.".count))] = .object((v.objectValue ?? []).map { $0.0 == "name" ? ($0.0, .string(String(k.dropFirst("state_dict.".count)))) : $0 })
        }
        #expect(Set(ours.keys) == Set(theirs.keys))
        for (k, v) in theirs { #expect(ours[k] == v, "\(k)") }
        let wrong = try Tool.run(["export", b, "--to", "safetensors", "--naming", "official", "-o", dir + "/x.safetensors"])
        #expect(wrong.status == 64)
    }

    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with gguf (make test provides it)"))
    func ggufReadsBackInPython() throws {
        let (dir, b) = try bundle("verify/dit_verify.pt", ["--dtype", "int8"])
        defer { FileSystem.removeTree(dir) }
        #expect(try Tool.run(["export", b, "--to", "gguf", "-o", dir + "/m.gguf"]).status == 0)
        let got = try JSONReader.parse(try runPython([Tool.root + "/Tests/EndToEndTests/python/read_exports.py", "gguf", dir + "/m.gguf", b]))
        #expect(got["alignment"] == .int(32))
        #expect(got["metadata"]?["general.architecture"]?.stringValue == "dit")
        #expect(got["metadata"]?["dit.depth"] == .int(2))
        #expect(got["metadata"]?["dit.num_heads"] == .int(2))
        #expect(got["metadata"]?["ditkit.source.sha256"] != nil)
        #expect(got["metadata"]?["general.quantization_version"] == .int(2))
        #expect(got["q8_0_checked"] == .int(13), "every int8 linear weight exported as Q8_0")
        #expect(got["q8_0_mismatch"] == nil, "Q8_0 bytes must equal gguf-py's bit-exact port of ggml")
        let numpy = try JSONReader.parse(try runPython([Tool.root + "/Tests/EndToEndTests/python/read_exports.py", "ditkit", b, "--dequantize"]))
        for (name, t) in got["tensors"]?.objectValue ?? [] {
            #expect(t["shape"] == numpy["tensors"]?[name]?["shape"], "\(name)")
            if t["type"]?.stringValue == "F32" { #expect(t["values_sha256"] == numpy["tensors"]?[name]?["sha256"], "\(name)") }
        }
        // f16 export: values equal the f16 bundle's.
        let (d2, b16) = try bundle("verify/dit_verify.pt", ["--dtype", "f16"])
        defer { FileSystem.removeTree(d2) }
        #expect(try Tool.run(["export", b16, "--to", "gguf", "-o", d2 + "/h.gguf"]).status == 0)
        let h = try JSONReader.parse(try runPython([Tool.root + "/Tests/EndToEndTests/python/read_exports.py", "gguf", d2 + "/h.gguf"]))
        let manifest = try JSONReader.parse(try FileSystem.readFile(b16 + "/manifest.json"))
        for t in manifest["tensors"]?.arrayValue ?? [] {
            let g = h["tensors"]?[t["name"]!.stringValue!]
            #expect(g?["type"]?.stringValue == "F16")
            #expect(g?["bytes_sha256"]?.stringValue == (try Tool.storedSHA256(b16, t)), "\(t["name"]!)")
        }
    }

    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with h5py (make test provides it)"))
    func hdf5ReadsBackWithH5py() throws {
        for dtype in ["f16", "bf16", "int8"] {
            let (dir, b) = try bundle("verify/dit_verify.pt", ["--dtype", dtype])
            defer { FileSystem.removeTree(dir) }
            #expect(try Tool.run(["export", b, "--to", "hdf5", "-o", dir + "/m.h5"]).status == 0)
            let h = try JSONReader.parse(try runPython([Tool.root + "/Tests/EndToEndTests/python/read_exports.py", "hdf5", dir + "/m.h5"]))
            let numpy = try JSONReader.parse(try runPython([Tool.root + "/Tests/EndToEndTests/python/read_exports.py", "ditkit", b]))
            #expect(h["attrs"]?["format"]?.stringValue == "ditkit-hdf5")
            // Text attributes are strings to h5py, not bytes.
            for (k, t) in h["attr_types"]?.objectValue ?? [] { #expect(t == .string("str"), "\(k): \(t)") }
            #expect(h["dataset_attr_types"] == .array([.string("str")]), "\(h["dataset_attr_types"] ?? .null)")
            let manifest = try JSONReader.parse(h["attrs"]?["manifest"]?.stringValue ?? "")
            #expect(manifest["dtype_policy"]?["dtype"]?.stringValue == dtype)
            for t in manifest["tensors"]?.arrayValue ?? [] {
                // Each dataset carries the manifest's checksum of its stored bytes.
                #expect(h["datasets"]?[t["name"]?.stringValue ?? ""]?["xxh3_128"] == t["xxh3_128"], "\(dtype) \(t["name"]!)")
            }
            for (name, t) in numpy["tensors"]?.objectValue ?? [] {
                let d = h["datasets"]?[name]
                #expect(d?["shape"] == t["shape"], "\(dtype) \(name)")
                #expect(d?["sha256"] == t["sha256"], "\(dtype) \(name): h5py and numpy read the same values")
            }
        }
    }

    /// The numpy reader verifies format-3 checksums with the reference XXH3-128 (pip xxhash) and
    /// names the record whose bytes changed.
    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with numpy and xxhash (make test provides it)"))
    func numpyReaderVerifiesTheChecksums() throws {
        let (dir, b) = try bundle("verify/dit_verify.pt", ["--dtype", "int8"])
        defer { FileSystem.removeTree(dir) }
        let script = Tool.root + "/Tests/EndToEndTests/python/read_exports.py"
        let good = try JSONReader.parse(try runPython([script, "ditkit", b, "--verify"]))
        #expect(good["tensors"]?.objectValue?.count == 32 + 13)
        let manifest = try JSONReader.parse(try FileSystem.readFile(b + "/manifest.json"))
        let scale = try #require(manifest["tensors"]?.arrayValue?.first { $0["quantization"] != nil }?["quantization"]?["scale"])
        let offset = try #require(scale["offset"]?.intValue)
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: b + "/weights.bin"))
        try h.seek(toOffset: UInt64(offset + 2))
        h.write(Data([0x5A]))
        try h.close()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python!)
        p.arguments = [script, "ditkit", b, "--verify"]
        let err = Pipe()
        p.standardOutput = Pipe()
        p.standardError = err
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus != 0)
        #expect(text.contains("the bytes at offset \(offset) do not match their xxh3_128"), "\(text)")
    }

    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with numpy and safetensors (make test provides it)"))
    func numpyReaderAgreesWithTheSafetensorsExport() throws {
        // (numpy has no bfloat16, so safetensors.numpy cannot load BF16 files: f32, f16 and int8 here.)
        for dtype in ["f32", "f16", "int8"] {
            let (dir, b) = try bundle("verify/dit_verify.pt", ["--dtype", dtype])
            defer { FileSystem.removeTree(dir) }
            #expect(try Tool.run(["export", b, "--to", "safetensors", "--dequantize", "-o", dir + "/m.safetensors"]).status == 0)
            let st = try JSONReader.parse(try runPython([Tool.root + "/Tests/EndToEndTests/python/read_safetensors.py", dir + "/m.safetensors"]))
            let numpy = try JSONReader.parse(try runPython([Tool.root + "/Tests/EndToEndTests/python/read_exports.py", "ditkit", b, "--dequantize"]))
            for (name, t) in numpy["tensors"]?.objectValue ?? [] {
                #expect(st["tensors"]?[name]?["sha256"] == t["sha256"], "\(dtype) \(name)")
            }
            #expect(numpy["tensors"]?.objectValue?.count == 32)
        }
    }

    @Test func anInt8BundleExportedToGGUFOrDiffusersSaysWhatBecameOfItsInt8Tensors() throws {
        let (dir, b) = try bundle("verify/vae_verify/diffusion_pytorch_model.safetensors", ["--dtype", "int8"])
        defer { FileSystem.removeTree(dir) }
        let manifest = try JSONReader.parse(try FileSystem.readFile(b + "/manifest.json"))
        let int8 = (manifest["tensors"]?.arrayValue ?? []).filter { $0["dtype"]?.stringValue == "I8" }
        // Q8_0 takes 2-D tensors whose rows are a multiple of 32; the rest (conv kernels) become F32.
        let q8 = int8.filter { t in
            let shape = t["shape"]?.arrayValue?.compactMap(\.intValue) ?? []
            return shape.count == 2 && shape[1] % 32 == 0
        }
        #expect(!q8.isEmpty && q8.count < int8.count, "the fixture has both kinds")
        let r = try Tool.run(["export", b, "--to", "gguf", "-o", dir + "/m.gguf"])
        #expect(r.status == 0, "\(r.stderr)")
        let notes = r.stderr.split(separator: "\n").filter { $0.hasPrefix("ditkit: note: ") }
        #expect(notes.count == 1, "one note: \(r.stderr)")
        #expect(r.stderr.contains("the bundle's \(int8.count) I8 tensors (GGUF has no per-row int8 type): \(int8.count - q8.count) dequantized to F32, \(q8.count) re-quantized to Q8_0"), "\(r.stderr)")
        #expect(r.stderr.contains("--gguf-type f16"))
        // What the note says is what the file holds.
        let listed = try JSONReader.parse(try Tool.run(["inspect", "--json", dir + "/m.gguf"]).stdout)["tensors"]?.arrayValue ?? []
        for t in int8 {
            let row = listed.first { $0["name"] == t["name"] }
            let wanted = q8.contains { $0["name"] == t["name"] } ? "Q8_0" : "F32"
            #expect(row?["dtype"]?.stringValue == wanted, "\(t["name"] ?? .null)")
        }
        // --json keeps stdout JSON and carries the note.
        let j = try Tool.run(["export", b, "--to", "gguf", "-o", dir + "/j.gguf", "--json"])
        #expect(try JSONReader.parse(j.stdout)["notes"]?.arrayValue?.count == 1)
        let half = try Tool.run(["export", b, "--to", "gguf", "-o", dir + "/h.gguf", "--gguf-type", "f16"])
        #expect(half.stderr.contains("\(int8.count) dequantized to F16") && !half.stderr.contains("--gguf-type f16 writes"), "\(half.stderr)")
        let d = try Tool.run(["export", b, "--to", "diffusers", "-o", dir + "/vae"])
        #expect(d.status == 0, "\(d.stderr)")
        #expect(d.stderr.contains("ditkit: note: dequantized the bundle's \(int8.count) I8 tensors to F32 (diffusers loads float weights only)"), "\(d.stderr)")
        // A float bundle has nothing to say.
        let (dir2, f16) = try bundle("verify/vae_verify/diffusion_pytorch_model.safetensors", ["--dtype", "f16"])
        defer { FileSystem.removeTree(dir2) }
        for to in ["gguf", "diffusers"] {
            let q = try Tool.run(["export", f16, "--to", to, "-o", dir2 + "/out-" + to])
            #expect(q.status == 0 && !q.stderr.contains("I8"), "\(to): \(q.stderr)")
        }
    }

    @Test func packRoundTripsAndRefusesDamage() throws {
        let (dir, b) = try bundle("verify/dit_verify.pt", ["--dtype", "f16"])
        defer { FileSystem.removeTree(dir) }
        let pack = dir + "/m.ditkit.zst"
        #expect(try Tool.run(["pack", b, "-o", pack]).status == 0)
        let r = try Tool.run(["unpack", pack, "-o", dir + "/out"])
        #expect(r.status == 0, "\(r.stderr)")
        for f in ["manifest.json", "manifest.json.sha256", "weights.bin"] {
            #expect(try FileSystem.readFile(dir + "/out/m.ditkit/" + f) == FileSystem.readFile(b + "/" + f), "\(f)")
        }
        // The bundle keeps the name it was packed under, whatever the pack file is called.
        try FileManager.default.copyItem(atPath: pack, toPath: dir + "/release-2024.zst")
        let renamed = try Tool.run(["unpack", dir + "/release-2024.zst", "-o", dir + "/out2"])
        #expect(renamed.status == 0 && renamed.stdout.contains(dir + "/out2/m.ditkit:"), "\(renamed.stdout)\(renamed.stderr)")
        #expect(FileSystem.listDirectory(dir + "/out2") == ["m.ditkit"])
        // Packing twice gives the same bytes.
        #expect(try Tool.run(["pack", b, "-o", dir + "/again.zst"]).status == 0)
        #expect(try FileSystem.readFile(pack) == FileSystem.readFile(dir + "/again.zst"))
        // Damaged and truncated packs are refused and leave nothing.
        var bytes = try FileSystem.readFile(pack)
        try FileSystem.writeFile(dir + "/cut.zst", Array(bytes.prefix(bytes.count / 2)))
        bytes[bytes.count / 2] ^= 0x55
        try FileSystem.writeFile(dir + "/bad.zst", bytes)
        for (f, msg) in [("cut.zst", "truncated"), ("bad.zst", "doesn't match checksum")] {
            let u = try Tool.run(["unpack", dir + "/" + f, "-o", dir + "/x"])
            #expect(u.status == 2, "\(f): \(u.stderr)")
            #expect(u.stderr.contains(msg), "\(u.stderr)")
            #expect(FileSystem.listDirectory(dir + "/x").isEmpty, "\(f): nothing left")
        }
    }
}

@Suite struct SwiftAPIExampleTests {
    @Test func theREADMEExampleRuns() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        #expect(try Tool.run(["convert", Tool.fixture("verify/dit_verify.pt"), "-o", dir + "/m.ditkit", "--dtype", "int8"]).status == 0)
        let example = Tool.product("ditkit-example")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: example)
        p.arguments = [dir + "/m.ditkit", "blocks.0.mlp.fc1.weight"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(out.contains("DiT-custom: 32 tensors, stored as int8"))
        #expect(out.contains("blocks.0.mlp.fc1.weight: I8 [512, 128]"))
        #expect(out.contains("first values:"))
    }
}
