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
        let zoo = ["--manifests", Tool.fixture("zoo/Manifests"), "--cache", dir + "/cache"]
        let commands: [[String]] = [
            ["inspect", dit, "--json"],
            ["inspect", bundle, "--json", "--hash"],
            ["verify", bundle, "--against", dit, "--json"],
            ["verify", bundle, "--against", dit, "--json", "--report", dir + "/report.html"],
            ["verify", bundle, "--against", dit, "--json", "--sample", "--vae", vaeBundle, "--steps", "2", "--classes", "1",
             "--report", dir + "/report2.html"],
            ["verify", bundle, bundle, "--against", dit, "--json"],
            ["zoo", "list", "--json"] + zoo,
            ["zoo", "identify", dit, "--json"] + zoo,
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
}
