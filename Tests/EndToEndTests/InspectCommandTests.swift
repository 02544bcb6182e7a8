import Testing
import Foundation
import DiTKitCore

@Suite struct InspectCommandTests {
    @Test func jsonListingMatchesTorch() throws {
        let r = try Tool.run(["inspect", "--json", "--sha256", Tool.fixture("readers/train_checkpoint.pt")])
        #expect(r.status == 0, "\(r.stderr)")
        let got = try JSONReader.parse(r.stdout)
        let expected = try JSONReader.parse(try FileSystem.readFile(Tool.fixture("readers/train_checkpoint.pt.expected.json")))
        #expect(got == expected)
    }

    /// `--hash` adds the XXH3-128 bundle manifests record (the reference implementation's answers
    /// for torch's bytes), `--sha256` the SHA-256; both together give both, XXH3-128 first.
    @Test func hashIsXXH3AndSHA256IsOnRequest() throws {
        let path = Tool.fixture("readers/train_checkpoint.pt")
        let vectors = try #require(try JSONReader.parse(try FileSystem.readFile(Tool.fixture("readers/xxh3_vectors.json")))["train_checkpoint.pt"]?.objectValue)
        let want = Dictionary(uniqueKeysWithValues: vectors)
        let r = try Tool.run(["inspect", "--json", "--hash", "--sha256", path])
        #expect(r.status == 0, "\(r.stderr)")
        let tensors = try JSONReader.parse(r.stdout)["tensors"]?.arrayValue ?? []
        #expect(tensors.count == want.count && tensors.count > 50)
        for t in tensors {
            let name = try #require(t["name"]?.stringValue)
            #expect(t["xxh3_128"] == want[name]?["xxh3_128"], "\(name)")
            #expect(t["sha256"] == want[name]?["sha256"], "\(name)")
            guard case .object(let members) = t else { continue }
            #expect(members.map(\.0) == ["name", "dtype", "shape", "xxh3_128", "sha256"])
        }
        let table = try Tool.run(["inspect", "--hash", path])
        #expect(table.stdout.contains("xxh3_128") && !table.stdout.contains("sha256"))
        #expect(table.stdout.contains(want["ema.pos_embed"]?["xxh3_128"]?.stringValue ?? "missing"))
    }

    @Test func jsonWithoutHashHasNoHashes() throws {
        let r = try Tool.run(["inspect", "--json", Tool.fixture("readers/dit_tiny.safetensors")])
        #expect(r.status == 0)
        let got = try JSONReader.parse(r.stdout)
        #expect(got["format"]?.stringValue == "safetensors")
        #expect(got["tensors"]?.arrayValue?.first?["sha256"] == nil)
        #expect(got["metadata"]?["source"]?.stringValue == "make_fixtures")
    }

    @Test func tableShowsTotalsAndObjects() throws {
        let r = try Tool.run(["inspect", Tool.fixture("readers/train_checkpoint.pt")])
        #expect(r.status == 0)
        #expect(r.stdout.contains("torch-zip"))
        #expect(r.stdout.contains("ema.blocks.1.mlp.fc2.weight"))
        #expect(r.stdout.contains("total: "))
        #expect(r.stdout.contains("args.lr"))
    }

    @Test func anInt8BundleListsItsTensorsNotItsScales() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let b = dir + "/dit8.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("verify/dit_verify.pt"), "-o", b, "--dtype", "int8"]).status == 0)
        let manifest = try JSONReader.parse(try FileSystem.readFile(b + "/manifest.json"))
        let tensors = try #require(manifest["tensors"]?.arrayValue)
        // 32 tensors, 812,576 parameters (zoo/Manifests/test-dit.json), 13 of them I8 with a scale each.
        let r = try Tool.run(["inspect", b])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("\(b): ditkit, 32 tensors\n"), "\(r.stdout)")
        #expect(r.stdout.contains("total: 32 tensors (19 F32, 13 I8), 812,576 parameters, "), "\(r.stdout)")
        #expect(!r.stdout.contains(".scale"), "\(r.stdout)")
        #expect(r.stdout.contains("ditkit show \(b)"))
        // The bytes still count the scales: the total is every stored byte.
        let stored = tensors.reduce(0) { $0 + ($1["bytes"]?.intValue ?? 0) + ($1["quantization"]?["scale"]?["bytes"]?.intValue ?? 0) }
        let digits = String(stored)
        let withCommas = digits.enumerated().map { k, c in (k > 0 && (digits.count - k) % 3 == 0 ? "," : "") + String(c) }.joined()
        #expect(r.stdout.contains("parameters, \(withCommas) bytes"), "\(r.stdout)")
        let j = try Tool.run(["inspect", "--json", "--hash", b])
        let listed = try #require(try JSONReader.parse(j.stdout)["tensors"]?.arrayValue)
        #expect(listed.count == 32)
        for t in tensors {
            let row = try #require(listed.first { $0["name"] == t["name"] })
            #expect(row["sha256"] == t["sha256"])
            #expect(row["scale"]?["sha256"] == t["quantization"]?["scale"]?["sha256"], "\(t["name"] ?? .null)")
            #expect(row["scale"]?["shape"] == t["quantization"]?["scale"]?["shape"])
        }
    }

    @Test func showSummarisesProvenancePolicyAndLossyTensors() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let source = Tool.fixture("verify/dit_verify.pt")
        let b = dir + "/dit8.ditkit"
        #expect(try Tool.run(["convert", source, "-o", b, "--dtype", "int8", "--keep", "blocks.1.mlp.*"]).status == 0)
        let r = try Tool.run(["show", b])
        #expect(r.status == 0, "\(r.stderr)")
        for line in ["\(b): DiTKit bundle, format 3, DiT-custom (dit), dit-official naming",
                     "  model: depth 2, hidden 128, heads 2, patch 2, image 64, classes 1000",
                     "  tensors: 32 (21 F32, 11 I8; the I8 ones with per-row F32 scales), parameters: 812,576, ",
                     "  dtype policy: int8, float tensors F32, rounding nearest-even",
                     "    kept in float32 by --keep: 'blocks.1.mlp.*'",
                     "    source: dit_verify.pt, 3,263,093 bytes",
                     "    sha256: e16832df6f347677611fde01415a05cb3c1669e6a74433e23ce9dfa06286edfd",
                     "    container: torch-zip, naming: dit-official",
                     "  lossy tensors: 11"] {
            #expect(r.stdout.contains(line), "\(line)\n\(r.stdout)")
        }
        // One row per lossy tensor with its figures as the manifest has them.
        let manifest = try JSONReader.parse(try FileSystem.readFile(b + "/manifest.json"))
        for t in manifest["tensors"]?.arrayValue ?? [] {
            let name = try #require(t["name"]?.stringValue)
            let row = r.stdout.split(separator: "\n").first { $0.hasPrefix(name + " ") }
            if let e = t["error"] {
                let sqnr = try #require(e["sqnr_db"]?.doubleValue)
                let worst = try #require(e["worst_row"])
                #expect(row?.contains(" I8 ") == true && row?.contains(NumberFormat.fixed(sqnr, 1)) == true, "\(name): \(row ?? "none")")
                #expect(row?.contains("(row \(worst["row"]!.intValue!))") == true, "\(name): \(row ?? "none")")
            } else {
                #expect(row == nil, "\(name) is not lossy")
            }
        }
        let j = try Tool.run(["show", "--json", b])
        let s = try JSONReader.parse(j.stdout)
        #expect(s["provenance"] == manifest["provenance"] && s["dtype_policy"] == manifest["dtype_policy"])
        #expect(s["parameters"] == .int(812_576) && s["tensors"] == .int(32))
        #expect(s["lossy"]?.arrayValue?.count == 11)
        // A checkpoint is not a bundle: the usual hint.
        let pt = try Tool.run(["show", source])
        #expect(pt.status == 2 && pt.stderr.contains("convert it first"), "\(pt.stderr)")
    }

    @Test func refusedInputExitsTwoWithOneLine() throws {
        let path = Tool.fixture("readers/evil_posix_system.pt")
        let r = try Tool.run(["inspect", path])
        #expect(r.status == 2)
        #expect(r.stdout.isEmpty)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(r.stderr.contains(path))
        #expect(r.stderr.contains("posix.system"))
    }

    @Test func missingFileAndUsageErrors() throws {
        let missing = try Tool.run(["inspect", "/nonexistent/file.pt"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("/nonexistent/file.pt"))
        let usage = try Tool.run(["inspect"])
        #expect(usage.status == 64)
        let unknown = try Tool.run(["inspect", "--bogus", "x"])
        #expect(unknown.status == 64)
    }
}
