import Testing
import Foundation
import DiTKitCore

/// Python with numpy and safetensors, provided by `make test` (DITKIT_PYTHON).
let python = ProcessInfo.processInfo.environment["DITKIT_PYTHON"]

@Suite struct ConvertCommandTests {
    @Test func convertPrintsASummaryAndCheckPasses() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let out = dir + "/dit.ditkit"
        let r = try Tool.run(["convert", Tool.fixture("readers/train_checkpoint.pt"), "-o", out, "--dtype", "int8", "--heads", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("wrote \(out): DiT-custom (dit), int8"))
        #expect(r.stdout.contains("subtree 'ema'"))
        #expect(r.stdout.contains("tensors: 32 (19 F32, 13 I8)"))
        #expect(r.stdout.contains("worst SQNR"))
        let c = try Tool.run(["check", out])
        #expect(c.status == 0)
        #expect(c.stdout.contains("OK"))
        let again = try Tool.run(["convert", Tool.fixture("readers/train_checkpoint.pt"), "-o", out, "--heads", "2"])
        #expect(again.status == 64)
        #expect(again.stderr.contains("already exists (use --force"))
    }

    // The source's SHA-256 is remembered in $DITKIT_CACHE: the second conversion says so, --rehash
    // reads the file again, and `zoo identify` answers from the same store (a planted digest shows it).
    @Test func aSourcesSHA256IsRememberedAcrossCommands() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let source = Tool.fixture("verify/dit_verify.pt"), env = ["DITKIT_CACHE": dir + "/cache"]
        let truth = try SHA256Hasher.hex(file: source)
        func convert(_ name: String, _ extra: [String] = []) throws -> JSONValue? {
            let r = try Tool.run(["convert", source, "-o", dir + "/" + name, "--json"] + extra, environment: env)
            #expect(r.status == 0, "\(r.stderr)")
            return try JSONReader.parse(Array(r.stdout.utf8)).arrayValue?.first?["source"]?["sha256_remembered"]
        }
        #expect(try convert("a.ditkit") == .bool(false))
        #expect(try convert("b.ditkit") == .bool(true))
        #expect(try convert("c.ditkit", ["--rehash"]) == .bool(false))
        let text = try Tool.run(["convert", source, "-o", dir + "/d.ditkit", "--dtype", "f16"], environment: env)
        #expect(text.stdout.contains("(source SHA-256 remembered, not read again; --rehash reads it)"))
        let sha = { try JSONReader.parse(Array(Tool.run(["zoo", "identify", source, "--json"], environment: env).stdout.utf8))["sha256"] }
        #expect(try sha() == .string(truth))
        let id = try #require(FileIdentity(path: source))
        let planted = String(repeating: "0", count: 64)
        #expect(FileDigests(cache: dir + "/cache").remember(planted, before: id, after: id, started: id.changed + FileDigests.settle, path: source))
        #expect(try sha() == .string(planted))
    }

    // --no-sync changes when the bundle reaches the disk, nothing in it: every file of the bundle is
    // byte-identical to the default conversion's, `check` passes it, and an existing output is still
    // refused without --force.
    @Test func noSyncWritesTheSameBundle() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let source = Tool.fixture("verify/dit_verify.pt")
        for dtype in ["f32", "f16", "int8", "q4_k"] {
            let synced = dir + "/\(dtype).ditkit", unsynced = dir + "/\(dtype)-no-sync.ditkit"
            let a = try Tool.run(["convert", source, "-o", synced, "--dtype", dtype])
            let b = try Tool.run(["convert", source, "-o", unsynced, "--dtype", dtype, "--no-sync"])
            #expect(a.status == 0 && b.status == 0, "\(a.stderr)\(b.stderr)")
            for file in ["weights.bin", "manifest.json", "manifest.json.sha256"] {
                #expect(try FileSystem.readFile(synced + "/" + file) == FileSystem.readFile(unsynced + "/" + file), "\(dtype): \(file)")
            }
            let check = try Tool.run(["check", unsynced])
            #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
            let again = try Tool.run(["convert", source, "-o", unsynced, "--dtype", dtype, "--no-sync"])
            #expect(again.status == 64)
        }
        #expect(FileSystem.listDirectory(dir).filter { $0.contains(".partial-") }.isEmpty)
    }

    @Test func checkExitsOneOnDamage() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let out = dir + "/dit.ditkit"
        _ = try Tool.run(["convert", Tool.fixture("readers/dit_tiny.pt"), "-o", out, "--heads", "2"])
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: out + "/weights.bin"))
        try h.seek(toOffset: 16384 + 10)
        h.write(Data([0xFF, 0xFF]))
        try h.close()
        let r = try Tool.run(["check", out])
        #expect(r.status == 1)
        #expect(r.stdout.contains("MISMATCH x_embedder.proj.weight"))
    }

    @Test func refusedConversionsExitTwoAndLeaveNothing() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        for (source, extra, message) in [("convert/dit_mismatch.pt", ["--heads", "2"], "weights do not match"),
                                         ("convert/dit_f16_overflow.pt", ["--heads", "2", "--dtype", "f16"], "overflow to infinity in F16"),
                                         ("readers/evil_posix_system.pt", [], "posix.system"),
                                         ("readers/dit_tiny.pt", [], "--heads")] {
            let r = try Tool.run(["convert", Tool.fixture(source), "-o", dir + "/x.ditkit"] + extra)
            #expect(r.status == 2, "\(source): \(r.stderr)")
            #expect(r.stderr.contains(message), "\(r.stderr)")
            #expect(r.stderr.contains(Tool.fixture(source)), "names the file")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        }
    }

    /// A copy of a float32 safetensors file with `values` written over the first elements of `tensor`.
    func safetensors(_ source: String, poking tensor: String, with values: [Float], into path: String) throws {
        var bytes = try FileSystem.readFile(source)
        let n = bytes.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
        let header = try JSONReader.parse(Array(bytes[8..<(8 + n)]))
        let start = try #require(header[tensor]?["data_offsets"]?.arrayValue?.first?.intValue) + 8 + n
        for (k, v) in values.enumerated() {
            withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.replaceSubrange((start + 4 * k)..<(start + 4 * k + 4), with: $0) }
        }
        try FileSystem.writeFile(path, bytes)
    }

    @Test func aRowRuinedByAnOutlierIsReportedAndWarnedAbout() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        // Five values of 1e6 at the start of row 0 (32 rows of 288): its int8 scale becomes 1e6/127, so
        // the other 283 values of the row are stored as 0, while the tensor's SQNR stays high (the
        // outliers, kept exactly, carry nearly all of its energy).
        let tensor = "encoder.down_blocks.0.resnets.0.conv1.weight"
        let source = dir + "/vae.safetensors"
        try safetensors(Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"), poking: tensor,
                        with: [Float](repeating: 1e6, count: 5), into: source)
        let r = try Tool.run(["convert", source, "-o", dir + "/x.ditkit", "--dtype", "int8"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("ditkit: WARNING: \(tensor): 1 row lost most of its values (row 0: 283 of its 288 values stored as 0: an outlier sets the row's int8 scale)"), "\(r.stderr)")
        #expect(r.stderr.contains("--keep '\(tensor)'"))
        #expect(r.stdout.contains("rows that lost most of their values: 1 in 1 tensor"), "\(r.stdout)")
        let manifest = try JSONReader.parse(try FileSystem.readFile(dir + "/x.ditkit/manifest.json"))
        let e = try #require(manifest["tensors"]?.arrayValue?.first { $0["name"]?.stringValue == tensor }?["error"])
        #expect(e["ruined_rows"] == .object([("count", .int(1)), ("row", .int(0)), ("flushed_to_zero", .int(283)), ("values", .int(288))]), "\(e)")
        #expect((e["sqnr_db"]?.doubleValue ?? 0) > 60, "the whole tensor looks fine: \(e)")
        // Every row is measured: the worst is a real row of the tensor, and reported.
        let worst = try #require(e["worst_row"])
        #expect((0..<32).contains(worst["row"]?.intValue ?? -1))
        #expect(r.stdout.contains("worst row: "), "\(r.stdout)")
        // The bundle reads back, and the same source untouched gives no warning.
        #expect(try Tool.run(["check", dir + "/x.ditkit"]).status == 0)
        let clean = try Tool.run(["convert", Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"), "-o", dir + "/y.ditkit", "--dtype", "int8", "--json"])
        #expect(clean.status == 0 && !clean.stderr.contains("WARNING"), "\(clean.stderr)")
        let cleanManifest = try JSONReader.parse(try FileSystem.readFile(dir + "/y.ditkit/manifest.json"))
        let ce = try #require(cleanManifest["tensors"]?.arrayValue?.first { $0["name"]?.stringValue == tensor }?["error"])
        #expect(ce["ruined_rows"] == nil && ce["worst_row"] != nil, "\(ce)")
        // Kept in float32 as the warning says: no warning.
        let kept = try Tool.run(["convert", source, "-o", dir + "/z.ditkit", "--dtype", "int8", "--keep", tensor])
        #expect(kept.status == 0 && !kept.stderr.contains("WARNING"), "\(kept.stderr)")
    }

    @Test func nonFiniteSourceValuesAreRefusedOrRecordedInAValidManifest() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let tensor = "encoder.down_blocks.0.resnets.0.conv1.weight"   // int8 quantizes it
        let source = dir + "/vae.safetensors"
        try safetensors(Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"), poking: tensor,
                        with: [.nan, 0.5, .infinity, -.infinity], into: source)
        for dtype in ["f32", "f16", "bf16", "int8"] {
            let r = try Tool.run(["convert", source, "-o", dir + "/x.ditkit", "--dtype", dtype])
            #expect(r.status == 2, "\(dtype): \(r.stderr)")
            #expect(r.stderr.contains(source) && r.stderr.contains("\(tensor) (3 values)") && r.stderr.contains("--allow-nonfinite"), "\(r.stderr)")
            #expect(!FileSystem.exists(dir + "/x.ditkit"))
        }
        // int8 cannot store them even when allowed: the tensor must be kept in float32.
        let int8 = try Tool.run(["convert", source, "-o", dir + "/x.ditkit", "--dtype", "int8", "--allow-nonfinite"])
        #expect(int8.status == 2 && int8.stderr.contains("--keep '\(tensor)'"), "\(int8.stderr)")
        let cases = [("f32", [String]()), ("f16", []), ("bf16", []), ("int8", ["--keep", tensor])]
        for (dtype, extra) in cases {
            let out = dir + "/\(dtype).ditkit"
            let r = try Tool.run(["convert", source, "-o", out, "--dtype", dtype, "--allow-nonfinite"] + extra)
            #expect(r.status == 0, "\(dtype): \(r.stderr)")
            #expect(r.stdout.contains("NaN or infinite source values kept: 3 in \(tensor) (3)"), "\(r.stdout)")
            // The manifest is valid: every command reads the bundle.
            for args in [["check", out], ["inspect", out], ["verify", out, "--against", dir + "/f32.ditkit"],
                         ["export", out, "--to", "safetensors", "-o", dir + "/\(dtype).safetensors"]] {
                let c = try Tool.run(args)
                #expect(c.status == 0 || (args[0] == "verify" && c.status == 1), "\(args): \(c.stderr)")
                #expect(!c.stderr.contains("invalid manifest"), "\(args): \(c.stderr)")
            }
            let text = String(decoding: try FileSystem.readFile(out + "/manifest.json"), as: UTF8.self)
            #expect(!text.contains("null"), "no figure is left undefined")
            let manifest = try JSONReader.parse(Array(text.utf8))
            let t = try #require(manifest["tensors"]?.arrayValue?.first { $0["name"]?.stringValue == tensor })
            #expect(t["nonfinite"] == .int(3))
            if dtype == "f16" || dtype == "bf16" {
                // Figures over the finite values only: exactly as without the poked values' lanes.
                let e = try #require(t["error"])
                #expect(e["max_abs"]?.doubleValue.map { $0.isFinite && $0 < 0.01 } == true, "\(e)")
                #expect(e["overflow"] == .int(0))
            }
        }
    }

    @Test func interruptedConversionNeverLeavesAPartialBundle() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let out = dir + "/v.ditkit"
        // A previous bundle sits at the output; killed replacements must leave it intact.
        #expect(try Tool.run(["convert", Tool.fixture("convert/vae_ldm.ckpt"), "-o", out]).status == 0)
        var previous = try FileSystem.readFile(out + "/manifest.json")
        for k in 0..<12 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Tool.binary)
            p.arguments = ["convert", Tool.fixture("convert/vae_ldm.ckpt"), "-o", out, "--dtype", k % 2 == 0 ? "f16" : "int8", "--force"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(useconds_t(2_000 * k))
            kill(p.processIdentifier, k % 3 == 0 ? SIGINT : SIGKILL)
            p.waitUntilExit()
            let manifest = try FileSystem.readFile(out + "/manifest.json")
            let check = try Tool.run(["check", out])
            #expect(check.status == 0, "after kill \(k): \(check.stdout)")
            if manifest != previous {
                // The replacement completed before the signal: it must be the whole new bundle.
                #expect(String(decoding: manifest, as: UTF8.self).contains("\"dtype\": \"\(k % 2 == 0 ? "f16" : "int8")\""))
            }
            previous = manifest
        }
        // A later run cleans up temporaries left by killed processes.
        #expect(try Tool.run(["convert", Tool.fixture("convert/vae_ldm.ckpt"), "-o", out, "--force"]).status == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["v.ditkit"])
    }

    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with numpy and safetensors (make test provides it)"))
    func safetensorsExportReadsBackInPython() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let bundle = dir + "/m.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("readers/dit_tiny.pt"), "-o", bundle, "--dtype", "int8", "--heads", "2"]).status == 0)
        let manifest = try JSONReader.parse(try FileSystem.readFile(bundle + "/manifest.json"))
        for dequantize in [false, true] {
            let file = dir + "/m\(dequantize).safetensors"
            let e = try Tool.run(["export", bundle, "--to", "safetensors", "-o", file] + (dequantize ? ["--dequantize"] : []))
            #expect(e.status == 0, "\(e.stderr)")
            let py = try runPython([Tool.root + "/Tests/EndToEndTests/python/read_safetensors.py", file])
            let got = try JSONReader.parse(py)
            for t in manifest["tensors"]?.arrayValue ?? [] {
                let name = t["name"]!.stringValue!
                let entry = try #require(got["tensors"]?[name], "\(name)")
                if t["dtype"]?.stringValue == "I8" {
                    if dequantize {
                        #expect(entry["dtype"]?.stringValue == "float32")
                    } else {
                        #expect(entry["dtype"]?.stringValue == "int8")
                        #expect(entry["sha256"]?.stringValue == (try Tool.storedSHA256(bundle, t)))
                        #expect(got["tensors"]?[name + ".scale"]?["sha256"]?.stringValue == (try Tool.storedSHA256(bundle, t["quantization"]?["scale"])))
                    }
                } else {
                    #expect(entry["dtype"]?.stringValue == "float32")
                    #expect(entry["sha256"]?.stringValue == (try Tool.storedSHA256(bundle, t)), "\(name)")
                }
                #expect(entry["shape"] == t["shape"])
            }
            #expect(got["metadata"]?["ditkit.variant"]?.stringValue == "DiT-custom")
            #expect(got["metadata"]?["ditkit.source.sha256"] == manifest["provenance"]?["source"]?["sha256"])
        }
    }
}

/// Runs `$DITKIT_PYTHON args...` and returns stdout; fails the test on a non-zero exit.
func runPython(_ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: python ?? "/usr/bin/python3")
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    if p.terminationStatus != 0 {
        Issue.record("python \(args.joined(separator: " ")) failed: \(String(decoding: errData, as: UTF8.self))")
    }
    return String(decoding: data, as: UTF8.self)
}

@Suite struct ManyInputsTests {
    @Test func severalSourcesConvertAndVerifyInParallel() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let sources = [Tool.fixture("verify/dit_verify.pt"), Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"),
                       Tool.fixture("convert/vae_ldm.ckpt")]
        let r = try Tool.run(["convert"] + sources + ["-o", dir + "/out", "--dtype", "f16", "--jobs", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let made = try FileManager.default.contentsOfDirectory(atPath: dir + "/out").sorted()
        #expect(made == ["dit_verify.ditkit", "vae_ldm.ditkit", "vae_verify.ditkit"])
        for m in made { #expect(try Tool.run(["check", dir + "/out/" + m]).status == 0) }
        // One refused source fails the run (exit 2) without stopping the others.
        let bad = try Tool.run(["convert", Tool.fixture("hostile/literal_os_system.pt"), sources[0], "-o", dir + "/mixed"])
        #expect(bad.status == 2)
        #expect(FileSystem.exists(dir + "/mixed/dit_verify.ditkit"))
        #expect(!FileSystem.exists(dir + "/mixed/literal_os_system.ditkit"))
        // Several bundles verified against one source.
        #expect(try Tool.run(["convert", sources[0], "-o", dir + "/int8.ditkit", "--dtype", "int8"]).status == 0)
        let v = try Tool.run(["verify", dir + "/out/dit_verify.ditkit", dir + "/int8.ditkit", "--against", sources[0], "--jobs", "2", "--json"])
        #expect(v.status == 0, "\(v.stderr)")
        let results = try JSONReader.parse(v.stdout).arrayValue ?? []
        #expect(results.count == 2)
        #expect(results.allSatisfy { $0["passed"] == .bool(true) })
        #expect(results.map { $0["profile"]?["name"]?.stringValue } == ["f16", "int8"])
    }
}
