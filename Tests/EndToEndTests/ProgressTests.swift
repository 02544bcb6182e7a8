// Progress bars on stderr, forced on with DITKIT_PROGRESS=1 (stderr is a pipe here, not a terminal).
import Testing
import Foundation
import DiTKitCore

@Suite(.serialized) struct ProgressTests {
    let dit = Tool.fixture("verify/dit_verify.pt")
    let shown = ["DITKIT_PROGRESS": "1"]

    func zoo(_ args: [String], cache: String, environment: [String: String] = [:]) throws -> ToolResult {
        try Tool.run(["zoo"] + args + ["--manifests", Tool.fixture("zoo/Manifests"), "--checksums", Tool.fixture("zoo/Checksums"), "--cache", cache],
                     environment: environment)
    }

    /// The frames a bar drew (each begins with a carriage return and a line erase), in order.
    func frames(_ stderr: String) -> [String] {
        stderr.components(separatedBy: "\r").dropFirst().map { $0.replacingOccurrences(of: "\u{1B}[2K", with: "") }
    }

    @Test func nothingIsDrawnUnlessAsked() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try LoopbackServer(files: ["dit_verify.pt": dit])
        defer { s.stop() }
        let r = try zoo(["fetch", "test-dit", "--url", s.url("range", "dit_verify.pt")], cache: cache, environment: ["DITKIT_PROGRESS": "0"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!r.stderr.contains("\r") && !r.stderr.contains("downloading"), "\(r.stderr)")
    }

    @Test func fetchEndsAtOneHundredPercentOnALineOfItsOwn() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try LoopbackServer(files: ["dit_verify.pt": dit])
        defer { s.stop() }
        // An unpinned file: the trust-on-first-use warning follows the bar on stderr.
        let r = try zoo(["fetch", "test-dit-unpinned", "--url", s.url("range", "dit_verify.pt")], cache: cache, environment: shown)
        #expect(r.status == 0, "\(r.stderr)")
        let f = frames(r.stderr)
        let last = try #require(f.last)
        #expect(last.hasPrefix("downloading "), "\(f)")
        let size = try #require(FileSystem.fileSize(dit))
        #expect(last.contains(" 100% \(NumberFormat.bytes(size))/\(NumberFormat.bytes(size)) "), "the last frame shows all of it: \(last)")
        // The bar's line is ended before the warning is printed.
        #expect(last.contains("\nditkit: WARNING"), "\(last)")
        #expect(!r.stderr.contains("sditkit:"), "\(r.stderr)")
    }

    @Test func resumedDownloadStartsFromTheBytesOnDisk() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try LoopbackServer(files: ["dit_verify.pt": dit])
        defer { s.stop() }
        let cut = try zoo(["fetch", "test-dit", "--url", s.url("cut", "dit_verify.pt")], cache: cache, environment: shown)
        #expect(cut.status != 0)
        // The failed download's bar is ended before the error.
        #expect(cut.stderr.contains("\nditkit: error:"), "\(cut.stderr)")
        let partial = try #require(FileSystem.fileSize(cache + "/zoo/test-dit/.dit_verify.pt.part"))
        let size = try #require(FileSystem.fileSize(dit))
        let r = try zoo(["fetch", "test-dit", "--url", s.url("range", "dit_verify.pt")], cache: cache, environment: shown)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("resumed"))
        let f = frames(r.stderr)
        // The first frame is drawn when the server answers: the bytes already on disk, none received yet
        // (so the rate, which counts only bytes received now, is zero).
        let first = try #require(f.first)
        #expect(first.contains(" \(Int(Double(partial) / Double(size) * 100))% \(NumberFormat.bytes(partial))/\(NumberFormat.bytes(size)) 0 B/s "), "\(first)")
        #expect(f.last?.contains(" 100% ") == true, "\(f)")
    }

    @Test func rateCountsOnlyWhatWasDoneInThisRun() {
        // 150 of 200 bytes, 100 of them on disk before: 50 bytes in 1 s.
        let line = ProgressLine(label: "downloading", total: 200, unit: .bytes, base: 100)
        let text = line.render(done: 150, elapsed: 1, width: 4)
        #expect(text == "downloading ███░ 75% 150 B/200 B 50 B/s ETA 1s", "\(text)")
        #expect(ProgressLine(label: "x", total: 10, unit: .steps).render(done: 10, elapsed: 2, width: 2) == "x ██ 100% 10/10 steps 5.00 steps/s ETA 0s")
    }

    @Test func importShowsItsConversionAndVerification() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try LoopbackServer(files: ["dit_verify.pt": dit])
        defer { s.stop() }
        let r = try zoo(["import", "test-dit", "-o", cache + "/dit.ditkit", "--url", s.url("range", "dit_verify.pt")], cache: cache, environment: shown)
        #expect(r.status == 0, "\(r.stderr)")
        let labels = frames(r.stderr).map { String($0.prefix { $0 != " " }) }
        for phase in ["downloading", "converting", "verifying"] { #expect(labels.contains(phase), "\(phase): \(labels)") }
    }

    @Test func verifySampleLabelsWhoseBarItIs() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let bundle = dir + "/dit.ditkit", vae = dir + "/vae.ditkit"
        #expect(try Tool.run(["convert", dit, "-o", bundle, "--dtype", "f16"]).status == 0)
        #expect(try Tool.run(["convert", Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"), "-o", vae]).status == 0)
        let r = try Tool.run(["verify", bundle, "--against", dit, "--sample", "--vae", vae, "--steps", "2", "--classes", "1"], environment: shown)
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        var phases: [String] = []
        for f in frames(r.stderr) {
            guard let bar = f.range(of: " █") ?? f.range(of: " ░") else { continue }
            let label = String(f[..<bar.lowerBound])
            if phases.last != label { phases.append(label) }
        }
        #expect(phases == ["verifying", "source: sampling", "source: decoding", "converted: sampling", "converted: decoding"], "\(phases)")
    }
}
