import Testing
import Foundation
import DiTKitCore

@Suite struct InspectCommandTests {
    @Test func jsonListingMatchesTorch() throws {
        let r = try Tool.run(["inspect", "--json", "--hash", Tool.fixture("readers/train_checkpoint.pt")])
        #expect(r.status == 0, "\(r.stderr)")
        let got = try JSONReader.parse(r.stdout)
        let expected = try JSONReader.parse(try FileSystem.readFile(Tool.fixture("readers/train_checkpoint.pt.expected.json")))
        #expect(got == expected)
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
