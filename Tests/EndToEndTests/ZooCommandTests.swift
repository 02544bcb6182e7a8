// `ditkit zoo` against a loopback mirror serving the fixtures.
import Testing
import Foundation
import DiTKitCore

@Suite(.serialized) struct ZooCommandTests {
    let manifests = Tool.fixture("zoo/Manifests")
    let checksums = Tool.fixture("zoo/Checksums")
    let dit = Tool.fixture("verify/dit_verify.pt")

    func zoo(_ args: [String], cache: String) throws -> ToolResult {
        try Tool.run(["zoo"] + args + ["--manifests", manifests, "--checksums", checksums, "--cache", cache])
    }

    func server() throws -> LoopbackServer {
        try LoopbackServer(files: ["dit_verify.pt": dit,
                                   "diffusion_pytorch_model.safetensors": Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"),
                                   "config.json": Tool.fixture("verify/vae_verify/config.json")])
    }

    @Test func fetchVerifiesAndMovesIntoPlace() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try server()
        defer { s.stop() }
        let r = try zoo(["fetch", "test-dit", "--url", s.url("range", "dit_verify.pt")], cache: cache)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("downloaded"))
        #expect(r.stdout.contains("(published)"))
        let path = cache + "/zoo/test-dit/dit_verify.pt"
        #expect(try FileSystem.readFile(path) == FileSystem.readFile(dit))
        // The cache is reused: no second request.
        let before = s.log.count
        let again = try zoo(["fetch", "test-dit", "--url", s.url("range", "dit_verify.pt")], cache: cache)
        #expect(again.stdout.contains("cached"))
        #expect(s.log.count == before)
    }

    @Test func interruptedDownloadResumesWithARangeRequest() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try server()
        defer { s.stop() }
        let cut = try zoo(["fetch", "test-dit", "--url", s.url("cut", "dit_verify.pt")], cache: cache)
        #expect(cut.status != 0)
        #expect(cut.stderr.contains("connection closed") || cut.stderr.contains("download failed"), "\(cut.stderr)")
        #expect(!FileSystem.exists(cache + "/zoo/test-dit/dit_verify.pt"), "nothing under the final name")
        let partial = FileSystem.fileSize(cache + "/zoo/test-dit/.dit_verify.pt.part") ?? 0
        #expect(partial > 0)
        let resumed = try zoo(["fetch", "test-dit", "--url", s.url("range", "dit_verify.pt")], cache: cache)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("resumed"))
        #expect(s.log.last?.hasSuffix("range=\(partial)") == true, "\(s.log)")
        #expect(try FileSystem.readFile(cache + "/zoo/test-dit/dit_verify.pt") == FileSystem.readFile(dit))
    }

    @Test func serverWithoutRangeSupportRestartsTheDownload() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try server()
        defer { s.stop() }
        _ = try zoo(["fetch", "test-dit", "--url", s.url("cut", "dit_verify.pt")], cache: cache)
        let r = try zoo(["fetch", "test-dit", "--url", s.url("norange", "dit_verify.pt")], cache: cache)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("downloaded"))
        #expect(try FileSystem.readFile(cache + "/zoo/test-dit/dit_verify.pt") == FileSystem.readFile(dit))
    }

    @Test func corruptedBodyIsRefusedAndRemoved() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try server()
        defer { s.stop() }
        let r = try zoo(["fetch", "test-dit", "--url", s.url("corrupt", "dit_verify.pt")], cache: cache)
        #expect(r.status == 1)
        #expect(r.stderr.contains("SHA-256 mismatch"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: cache + "/zoo/test-dit").isEmpty, "no file left, partial or final")
    }

    @Test func unpinnedFilesAreTrustedOnFirstUseThenPinned() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try server()
        defer { s.stop() }
        let first = try zoo(["fetch", "test-dit-unpinned", "--url", s.url("range", "dit_verify.pt")], cache: cache)
        #expect(first.status == 0)
        #expect(first.stderr.contains("TRUST ON FIRST USE"))
        let pins = String(decoding: try FileSystem.readFile(cache + "/zoo/pins.SHA256SUMS"), as: UTF8.self)
        #expect(pins.contains("test-dit-unpinned/dit_verify.pt"))
        // A later download must match the pin.
        FileSystem.removeTree(cache + "/zoo/test-dit-unpinned/dit_verify.pt")
        let bad = try zoo(["fetch", "test-dit-unpinned", "--url", s.url("corrupt", "dit_verify.pt")], cache: cache)
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("differs from the hash recorded on first download"))
        let good = try zoo(["fetch", "test-dit-unpinned", "--url", s.url("range", "dit_verify.pt")], cache: cache)
        #expect(good.status == 0)
        #expect(good.stdout.contains("(pinned)"))
        #expect(!good.stderr.contains("TRUST ON FIRST USE"))
    }

    @Test func aFileThatIsNotTheEntrysModelIsNeverPinned() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try LoopbackServer(files: ["small-dit.safetensors": Tool.fixture("convert/dit_diffusers/diffusion_pytorch_model.safetensors"),
                                           "vae.safetensors": Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"),
                                           "views.pt": Tool.fixture("readers/views.pt")])
        defer { s.stop() }
        for (name, why) in [("small-dit.safetensors", "it holds DiT-custom: "), ("vae.safetensors", "it holds a SD VAE"),
                            ("views.pt", "holds no DiT DiTKit reads: no model DiTKit knows")] {
            let r = try zoo(["fetch", "test-dit-unpinned", "--url", s.url("range", name)], cache: cache)
            #expect(r.status == 1, "\(name): \(r.stderr)")
            #expect(r.stderr.contains("test-dit-unpinned/dit_verify.pt: not what the zoo entry describes: \(why)"), "\(r.stderr)")
            #expect(r.stderr.contains("812,576 parameters") || name != "small-dit.safetensors", "\(r.stderr)")
            #expect(!r.stderr.contains("TRUST ON FIRST USE"))
            #expect(!FileSystem.exists(cache + "/zoo/pins.SHA256SUMS"), "nothing pinned")
            #expect(try FileManager.default.contentsOfDirectory(atPath: cache + "/zoo/test-dit-unpinned").isEmpty, "nothing left")
        }
        // A foreign file already in the cache under the entry's name is not pinned either: it is
        // replaced by a download, which is checked in turn.
        try FileSystem.writeFile(cache + "/zoo/test-dit-unpinned/dit_verify.pt", try FileSystem.readFile(Tool.fixture("readers/views.pt")))
        let s2 = try server()
        defer { s2.stop() }
        let r = try zoo(["fetch", "test-dit-unpinned", "--url", s2.url("range", "dit_verify.pt")], cache: cache)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("downloaded"))
        #expect(r.stderr.contains("after checking its structure (DiT-custom: 32 tensors, 812,576 parameters)"), "\(r.stderr)")
        #expect(try FileSystem.readFile(cache + "/zoo/test-dit-unpinned/dit_verify.pt") == FileSystem.readFile(dit))
    }

    @Test func unpinDropsThePinAndTheCachedCopy() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try server()
        defer { s.stop() }
        #expect(try zoo(["fetch", "test-dit-unpinned", "--url", s.url("range", "dit_verify.pt")], cache: cache).status == 0)
        let show = try zoo(["show", "test-dit-unpinned"], cache: cache)
        #expect(show.stdout.contains("(pinned)"), "a pin is not a published hash: \(show.stdout)")
        let unknown = try zoo(["unpin", "test-dit-unpinned/other.pt"], cache: cache)
        #expect(unknown.status == 2 && unknown.stderr.contains("has no file 'other.pt' (its files: dit_verify.pt)"), "\(unknown.stderr)")
        let r = try zoo(["unpin", "test-dit-unpinned", "--json"], cache: cache)
        #expect(r.status == 0, "\(r.stderr)")
        let dropped = try #require(try JSONReader.parse(Array(r.stdout.utf8)).arrayValue)
        #expect(dropped.count == 1)
        #expect(dropped.first?["file"]?.stringValue == "test-dit-unpinned/dit_verify.pt")
        #expect(dropped.first?["removed_copy"]?.stringValue == cache + "/zoo/test-dit-unpinned/dit_verify.pt")
        let pins = String(decoding: try FileSystem.readFile(cache + "/zoo/pins.SHA256SUMS"), as: UTF8.self)
        #expect(!pins.contains("test-dit-unpinned"), "\(pins)")
        #expect(!FileSystem.exists(cache + "/zoo/test-dit-unpinned/dit_verify.pt"))
        // Nothing pinned any more: unpin again says so and succeeds; the next fetch pins anew.
        let again = try zoo(["unpin", "test-dit-unpinned"], cache: cache)
        #expect(again.status == 0 && again.stderr.contains("nothing pinned for test-dit-unpinned"), "\(again.stderr)")
        let refetch = try zoo(["fetch", "test-dit-unpinned", "--url", s.url("range", "dit_verify.pt")], cache: cache)
        #expect(refetch.status == 0 && refetch.stderr.contains("TRUST ON FIRST USE"), "\(refetch.stderr)")
    }

    @Test func importConvertsAndVerifiesEndToEnd() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try server()
        defer { s.stop() }
        let out = cache + "/dit.ditkit"
        let r = try zoo(["import", "test-dit", "--dtype", "int8", "-o", out, "--url", s.url("range", "dit_verify.pt")], cache: cache)
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("PASSED"))
        let manifest = try JSONReader.parse(try FileSystem.readFile(out + "/manifest.json"))
        #expect(manifest["provenance"]?["zoo"]?["id"]?.stringValue == "test-dit")
        #expect(manifest["dtype_policy"]?["dtype"]?.stringValue == "int8")
        let v = try zoo(["import", "test-vae", "-o", cache + "/vae.ditkit", "--url", s.url("range", "diffusion_pytorch_model.safetensors")], cache: cache)
        #expect(v.status == 0, "\(v.stdout)\n\(v.stderr)")
        #expect(FileSystem.exists(cache + "/zoo/test-vae/config.json"))
    }

    @Test func identifyByHashThenByStructure() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let byHash = try zoo(["identify", dit], cache: cache)
        #expect(byHash.status == 0)
        #expect(byHash.stdout.contains("identical to test-dit/dit_verify.pt"))
        let real = try Tool.run(["zoo", "identify", "--json", Tool.fixture("convert/vae_ldm.ckpt")])
        let j = try JSONReader.parse(real.stdout)
        #expect(j["model"]?["family"]?.stringValue == "vae")
        #expect(j["naming"]?.stringValue == "vae-ldm")
        #expect(j["closest"]?["entry"]?.stringValue != nil)
        #expect(j["closest"]?["exact"] == .bool(false))
        let notModel = try Tool.run(["zoo", "identify", Tool.fixture("readers/views.pt")])
        #expect(notModel.stdout.contains("not a model DiTKit reads"))
    }

    @Test func identifyOnABundleNamesItsSourceAndAFolderItsWeights() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let b = cache + "/dit.ditkit"
        #expect(try Tool.run(["convert", dit, "-o", b, "--dtype", "f16"]).status == 0)
        let r = try zoo(["identify", b], cache: cache)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!r.stdout.contains("sha256: \n") && !r.stdout.hasSuffix("sha256:"), "no empty hash: \(r.stdout)")
        #expect(r.stdout.contains("a bundle converted from a file with sha256 e16832df6f347677611fde01415a05cb3c1669e6a74433e23ce9dfa06286edfd"), "\(r.stdout)")
        #expect(r.stdout.contains("hash: its source is identical to test-dit/dit_verify.pt (checksums)"), "\(r.stdout)")
        let j = try JSONReader.parse(try zoo(["identify", b, "--json"], cache: cache).stdout)
        #expect(j["sha256"] == .null && j["source_sha256"]?.stringValue == "e16832df6f347677611fde01415a05cb3c1669e6a74433e23ce9dfa06286edfd")
        // A diffusers model folder is hashed by its weights file.
        let folder = Tool.fixture("verify/vae_verify")
        let f = try JSONReader.parse(try zoo(["identify", folder, "--json"], cache: cache).stdout)
        #expect(f["hash_matches"]?.arrayValue?.first?["file"]?.stringValue == "test-vae/diffusion_pytorch_model.safetensors", "\(f)")
    }

    @Test func identifyReadsDiffusersDiTWeights() throws {
        // With config.json beside the weights (as convert reads them) ...
        let withConfig = try Tool.run(["zoo", "identify", "--json", Tool.fixture("convert/dit_diffusers/diffusion_pytorch_model.safetensors")])
        #expect(withConfig.status == 0, "\(withConfig.stderr)")
        let j = try JSONReader.parse(withConfig.stdout)
        #expect(j["structure_error"] == nil, "\(j)")
        #expect(j["naming"]?.stringValue == "dit-diffusers")
        #expect(j["model"]?["config"]?["image_size"] == .int(64))
        #expect(j["model"]?["config"]?["num_heads"] == .int(2))
        // ... and without one, given --image-size (and --heads: this width has no standard head count).
        let bare = Tool.fixture("convert/dit_diffusers_noconfig.safetensors")
        let asked = try Tool.run(["zoo", "identify", bare])
        #expect(asked.stdout.contains("--image-size"), "\(asked.stdout)")
        let given = try Tool.run(["zoo", "identify", "--json", bare, "--image-size", "64", "--heads", "2"])
        #expect(given.status == 0, "\(given.stderr)")
        let g = try JSONReader.parse(given.stdout)
        #expect(g["structure_error"] == nil, "\(g)")
        #expect(g["model"]?["config"] == j["model"]?["config"])
    }

    @Test func listAndShow() throws {
        let list = try Tool.run(["zoo", "list", "--json"])
        #expect(list.status == 0)
        // Every manifest in Manifests/ (all but the schema) is listed.
        let manifests = FileSystem.listDirectory(Tool.root + "/Manifests").filter { $0.hasSuffix(".json") && $0 != "schema.json" }
        #expect(manifests.count >= 30)
        #expect(try JSONReader.parse(list.stdout).arrayValue?.count == manifests.count)
        let show = try Tool.run(["zoo", "show", "sd-vae-ft-mse"])
        #expect(show.stdout.contains("a1d993488569e928462932c8c38a0760b874d166399b14414135bd9c42df5815"))
        #expect(show.stdout.contains("scaling factor: 0.18215"))
        let unknown = try Tool.run(["zoo", "show", "nope"])
        #expect(unknown.status == 2)
    }
}

@Suite struct ManifestSchemaTests {
    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with jsonschema (make test provides it)"))
    func manifestsValidateAgainstTheSchema() throws {
        for folder in [Tool.root + "/Manifests", Tool.fixture("zoo/Manifests")] {
            let out = try runPython([Tool.root + "/Tests/EndToEndTests/python/validate_manifests.py", folder])
            #expect(out.hasPrefix("valid "), "\(out)")
        }
        let schema = try JSONReader.parse(try FileSystem.readFile(Tool.root + "/Manifests/schema.json"))
        #expect(schema["additionalProperties"] == .bool(false))
    }
}

/// Where a `ditkit` outside the checkout finds its zoo: the install folder beside it, else the copy
/// compiled in (the binary is copied out of the build, as a user would, and run from /).
@Suite struct ZooLookupTests {
    func installed(_ prefix: String) throws -> String {
        try FileSystem.makeDirectories(prefix + "/bin")
        let bin = prefix + "/bin/ditkit"
        try FileManager.default.copyItem(atPath: Tool.binary, toPath: bin)
        return bin
    }

    func ids(_ r: ToolResult) throws -> [String] {
        try #require(JSONReader.parse(Array(r.stdout.utf8)).arrayValue).compactMap { $0["id"]?.stringValue }
    }

    @Test func aCopiedBinaryUsesItsCompiledInZoo() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let bin = try installed(dir)
        let repo = FileSystem.listDirectory(Tool.root + "/Manifests").filter { $0.hasSuffix(".json") && $0 != "schema.json" }
            .map { String($0.dropLast(5)) }.sorted()
        let r = try Tool.run([bin, "zoo", "list", "--json"], environment: ["DITKIT_MANIFESTS": ""], cwd: "/", viaShell: true)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try ids(r) == repo)
        // Published hashes come with it.
        let show = try Tool.run([bin, "zoo", "show", "sd-vae-ft-mse", "--cache", dir + "/cache"], environment: ["DITKIT_MANIFESTS": ""], cwd: "/", viaShell: true)
        #expect(show.status == 0, "\(show.stderr)")
        #expect(show.stdout.contains("sd-vae-ft-mse"))
    }

    @Test func theInstallFolderComesBeforeTheCompiledInZoo() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let bin = try installed(dir)
        let share = dir + "/share/ditkit/Manifests"
        try FileSystem.makeDirectories(share)
        for f in ["schema.json", "dit-s-2.json"] { try FileManager.default.copyItem(atPath: Tool.root + "/Manifests/" + f, toPath: share + "/" + f) }
        let r = try Tool.run([bin, "zoo", "list", "--json"], environment: ["DITKIT_MANIFESTS": ""], cwd: "/", viaShell: true)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try ids(r) == ["dit-s-2"])
        // An explicit folder wins, and a wrong one is an error, not a silent fallback.
        let bad = try Tool.run([bin, "zoo", "list", "--manifests", dir + "/nowhere"], cwd: "/", viaShell: true)
        #expect(bad.status == 2, "\(bad.stderr)")
        #expect(bad.stderr.contains(dir + "/nowhere"), "\(bad.stderr)")
    }
}
