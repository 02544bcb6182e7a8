// With --json, standard output holds nothing but one JSON document, for every command that has
// --json (messages go to standard error).
import Testing
import Foundation
import DiTKitCore

@Suite struct JSONOutputTests {
    @Test func everyJSONCommandPrintsOnlyJSON() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let dit = Tool.fixture("verify/dit_verify.pt")
        let vae = Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors")
        let bundle = dir + "/dit.ditkit", vaeBundle = dir + "/vae.ditkit"
        #expect(try Tool.run(["convert", dit, "-o", bundle, "--dtype", "f16"]).status == 0)
        #expect(try Tool.run(["convert", vae, "-o", vaeBundle]).status == 0)
        let server = try LoopbackServer(files: ["dit_verify.pt": dit])
        defer { server.stop() }
        let zoo = ["--manifests", Tool.fixture("zoo/Manifests"), "--cache", dir + "/cache"]
        let commands: [[String]] = [
            ["inspect", dit, "--json"],
            ["inspect", bundle, "--json", "--hash"],
            ["convert", dit, "-o", dir + "/c.ditkit", "--dtype", "int8", "--json"],
            ["convert", dit, vae, "-o", dir + "/many", "--json"],
            ["check", bundle, "--json"],
            ["show", bundle, "--json"],
            ["export", bundle, "--to", "gguf", "-o", dir + "/m.gguf", "--json"],
            ["pack", bundle, "-o", dir + "/m.ditkit.zst", "--json"],
            ["unpack", dir + "/m.ditkit.zst", "-o", dir + "/restored", "--json"],
            ["sample", bundle, "--vae", vaeBundle, "--class", "1", "--steps", "2", "-o", dir + "/s.png", "--json"],
            ["verify", bundle, "--against", dit, "--json"],
            ["verify", bundle, "--against", dit, "--json", "--report", dir + "/report.html"],
            ["verify", bundle, "--against", dit, "--json", "--sample", "--vae", vaeBundle, "--steps", "2", "--classes", "1",
             "--report", dir + "/report2.html"],
            ["verify", bundle, bundle, "--against", dit, "--json"],
            ["zoo", "list", "--json"] + zoo,
            ["zoo", "show", "test-dit", "--json"] + zoo,
            ["zoo", "identify", dit, "--json"] + zoo,
            ["zoo", "fetch", "test-dit", "--url", server.url("range", "dit_verify.pt"), "--json"] + zoo,
            ["zoo", "import", "test-dit", "-o", dir + "/z.ditkit", "--url", server.url("range", "dit_verify.pt"), "--json"] + zoo,
        ]
        for args in commands {
            let r = try Tool.run(args)
            #expect(r.status == 0, "\(args): \(r.stderr)")
            #expect(throws: Never.self, "\(args): stdout is not one JSON document: \(r.stdout)") { try JSONReader.parse(Array(r.stdout.utf8)) }
        }
        // Whatever --report writes, it says so on stderr.
        let r = try Tool.run(["verify", bundle, "--against", dit, "--json", "--report", dir + "/report3.html"])
        #expect(r.stderr.contains("report: \(dir)/report3.html"), "\(r.stderr)")
    }

    @Test func verifyAndConvertKeepOneShapeForOneInputAndForSeveral() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let dit = Tool.fixture("verify/dit_verify.pt")
        let bundle = dir + "/dit.ditkit"
        let one = try JSONReader.parse(try Tool.run(["convert", dit, "-o", bundle, "--json"]).stdout)
        let two = try JSONReader.parse(try Tool.run(["convert", dit, Tool.fixture("convert/vae_ldm.ckpt"), "-o", dir + "/many", "--json"]).stdout)
        for list in [one, two] {
            let items = try #require(list.arrayValue)
            for item in items {
                #expect(item["source"]?["file"]?.stringValue != nil && item["output"]?.stringValue != nil, "\(item)")
                #expect(Set(item.objectValue?.map(\.0) ?? []) == Set(items[0].objectValue?.map(\.0) ?? []))
            }
        }
        #expect(one.arrayValue?.count == 1 && two.arrayValue?.count == 2)
        let v1 = try JSONReader.parse(try Tool.run(["verify", bundle, "--against", dit, "--json"]).stdout)
        let v2 = try JSONReader.parse(try Tool.run(["verify", bundle, bundle, "--against", dit, "--json"]).stdout)
        #expect(v1.arrayValue?.count == 1 && v2.arrayValue?.count == 2)
        for item in (v1.arrayValue ?? []) + (v2.arrayValue ?? []) {
            #expect(item["path"]?.stringValue == bundle && item["against"]?.stringValue == dit && item["passed"] == .bool(true))
            #expect(Set(item.objectValue?.map(\.0) ?? []) == Set(v1.arrayValue?.first?.objectValue?.map(\.0) ?? []))
        }
        // A refused source is an element with its error, and the run fails.
        let bad = try Tool.run(["convert", Tool.fixture("hostile/literal_os_system.pt"), "-o", dir + "/bad.ditkit", "--json"])
        #expect(bad.status == 2)
        #expect(try JSONReader.parse(bad.stdout).arrayValue?.first?["error"]?.stringValue?.contains("os.system") == true, "\(bad.stdout)")
    }
}
