// The hostile corpus (tools/make_fixtures.py hostile, built with the real pickle module and
// torch.save): every file is refused with exit 2, quickly, within bounded memory, naming the problem.
import Testing
import Foundation
import DiTKitCore

@Suite struct HostileInputTests {
    @Test func everyHostileFileIsRefused() throws {
        let cases = try JSONReader.parse(try FileSystem.readFile(Tool.fixture("hostile/cases.json")))
        let list = try #require(cases.objectValue)
        #expect(list.count >= 50)
        for (name, expected) in list {
            let path = Tool.fixture("hostile/" + name)
            // Address space capped at 2 GB: any unbounded allocation would crash instead of exit 2.
            let start = Date()
            let r = try Tool.run(["sh", "-c", "ulimit -v 2000000; exec \"$0\" inspect --hash \"$1\"", Tool.binary, path], viaShell: true)
            let seconds = Date().timeIntervalSince(start)
            #expect(r.status == 2, "\(name): status \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(expected.stringValue ?? "?"), "\(name): \(r.stderr)")
            #expect(r.stderr.contains(path), "\(name): the error names the file")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(name): one line")
            #expect(seconds < 10, "\(name) took \(seconds) s")
        }
    }

    @Test func convertAndZooIdentifyRefuseThemToo() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        for name in ["literal_os_system.pt", "memo_bomb.pt", "zip_bomb.pt", "protocol0_no_header.pt", "in_legacy_stream.pt"] {
            let c = try Tool.run(["convert", Tool.fixture("hostile/" + name), "-o", dir + "/x.ditkit"])
            #expect(c.status == 2, "\(name): \(c.stderr)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
            let v = try Tool.run(["verify", Tool.fixture("hostile/" + name), "--against", Tool.fixture("verify/dit_verify.pt")])
            #expect(v.status == 2, "\(name): \(v.stderr)")
        }
    }

    @Test func malformedHDF5IsRefusedByTheIsolatedReader() throws {
        // A file on which libhdf5 1.10.8 overflows a heap buffer (found by fuzzing).
        let path = Tool.fixture("fuzz/hdf5-isolated/libhdf5-heap-overflow-attr-exists.h5")
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        #expect(try Tool.run(["convert", Tool.fixture("verify/dit_verify.pt"), "-o", dir + "/m.ditkit"]).status == 0)
        let r = try Tool.run(["verify", dir + "/m.ditkit", "--reference", path])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.contains(path))
        #expect(r.stderr.split(separator: "\n").count == 1)
        let s = try Tool.run(["sample", dir + "/m.ditkit", "--vae", Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"),
                              "--noise", path, "-o", dir + "/x.png"])
        #expect(s.status == 2, "\(s.stderr)")
        #expect(!FileSystem.exists(dir + "/x.png"))
        // A file libhdf5 refuses: the child's reason, in the parent's one line.
        let garbage = dir + "/garbage.h5"
        try FileSystem.writeFile(garbage, Array("not hdf5 at all".utf8))
        let g = try Tool.run(["verify", dir + "/m.ditkit", "--reference", garbage])
        #expect(g.status == 2, "\(g.stderr)")
        #expect(g.stderr.split(separator: "\n").count == 1, "\(g.stderr)")
        #expect(g.stderr.contains(garbage) && g.stderr.contains("not an HDF5 file"), "\(g.stderr)")
    }

    @Test func fuzzFindingsStayFixed() throws {
        // Every input that once crashed a fuzz harness is replayed here (Tests/Fixtures/fuzz/TARGET/).
        let root = Tool.fixture("fuzz")
        guard let targets = try? FileManager.default.contentsOfDirectory(atPath: root) else { return }
        let runner = Tool.binary.replacingOccurrences(of: "/ditkit", with: "/ditkit-fuzz")
        for t in targets.sorted() where t != "hdf5-isolated" {
            let files = try FileManager.default.contentsOfDirectory(atPath: root + "/" + t).sorted().map { root + "/" + t + "/" + $0 }
            guard !files.isEmpty else { continue }
            let r = try Tool.run([runner, t] + files, viaShell: true)
            #expect(r.status == 0, "\(t): \(r.stdout) \(r.stderr)")
        }
    }
}
