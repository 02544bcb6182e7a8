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
            // CPU time capped at 10 s (load-independent): a file that makes the reader spin is killed.
            let r = try Tool.run(["sh", "-c", "ulimit -v 2000000; ulimit -t 10; exec \"$0\" inspect --hash \"$1\"", Tool.binary, path], viaShell: true)
            #expect(r.status == 2, "\(name): status \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(expected.stringValue ?? "?"), "\(name): \(r.stderr)")
            #expect(r.stderr.contains(path), "\(name): the error names the file")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(name): one line")
            #expect(!holdsRawControl(r.stderr), "\(name): a control character from the file reached stderr")
        }
    }

    @Test func everyCommandRefusesTheRound2FilesInOneLine() throws {
        // The issue-18 round ran each file through inspect, inspect --json --hash and convert.
        let cases = try #require(try JSONReader.parse(try FileSystem.readFile(Tool.fixture("hostile/cases.json"))).objectValue)
        let round2 = Set(["stride0_bomb.pt", "memo_bomb_tensor.pt", "dict_tree_memo.pt", "rank65.pt", "long_name.pt", "stride_2p63.pt",
                          "safetensors_offsets_overflow.safetensors", "self_containing_list.pt", "legacy_pid5_in_zip.pt", "eocd_comment_overrun.pt",
                          "escape_global.pt", "escape_pid_kind.pt", "escape_byteorder.pt", "escape_version.pt", "escape_member.pt",
                          "escape_safetensors_dtype.safetensors"])
        #expect(round2.isSubset(of: Set(cases.map(\.0))))
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        for (name, expected) in cases where round2.contains(name) {
            let path = Tool.fixture("hostile/" + name)
            for args in [["inspect", "--json", "--hash", path], ["convert", path, "-o", dir + "/x.ditkit"]] {
                let (r, _) = try runBounded(args, megabytes: 2000, seconds: 60, cpuSeconds: 10)
                #expect(r.status == 2, "\(name) \(args[0]): status \(r.status) \(r.stderr)")
                #expect(r.stderr.contains(expected.stringValue ?? "?"), "\(name): \(r.stderr)")
                #expect(r.stderr.split(separator: "\n").count == 1 && !holdsRawControl(r.stderr), "\(name): \(r.stderr)")
                #expect(r.stdout.isEmpty)
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        }
    }

    @Test func hostileFilesThatAreReadPrintNoControlCharacters() throws {
        // Names, values and metadata full of ESC, CR, LF and bidi overrides; a self-referencing list;
        // a memo bomb without tensors. They are read (torch reads them too) and printed escaped.
        let accepted = try #require(try JSONReader.parse(try FileSystem.readFile(Tool.fixture("hostile/accepted.json"))).objectValue)
        #expect(accepted.count >= 4)
        for (name, _) in accepted {
            let path = Tool.fixture("hostile/" + name)
            let (table, _) = try runBounded(["inspect", "--hash", path], megabytes: 2000, seconds: 60, cpuSeconds: 10)
            #expect(table.status == 0, "\(name): \(table.stderr)")
            #expect(!holdsRawControl(table.stdout), "\(name): a control character from the file reached the table")
            #expect(table.stderr.isEmpty)
            let (json, _) = try runBounded(["inspect", "--json", "--hash", path], megabytes: 2000, seconds: 30)
            #expect(json.status == 0, "\(name): \(json.stderr)")
            #expect(!holdsRawControl(json.stdout), "\(name): JSON escapes every control character")
            #expect((try? JSONReader.parse(json.stdout)) != nil, "\(name): stdout is JSON")
        }
        // The escaped names are still the file's names: JSON carries them exactly.
        let esc = "\u{1B}]0;pwned\u{07}\u{1B}[2J\r\nall checks passed\u{1B}[0m"
        let names = try runBounded(["inspect", "--json", Tool.fixture("hostile/escape_names.pt")]).0
        let listing = try JSONReader.parse(names.stdout)
        #expect(listing["tensors"]?.arrayValue?.first?["name"]?.stringValue == esc)
        #expect(listing["objects"]?["args.note"]?.stringValue == esc)
        let table = try runBounded(["inspect", Tool.fixture("hostile/escape_names.pt")]).0
        #expect(table.stdout.contains("\\x1b]0;pwned\\x07\\x1b[2J\\r\\nall checks passed\\x1b[0m"), "\(table.stdout)")
        let st = try runBounded(["inspect", Tool.fixture("hostile/escape_metadata.safetensors")]).0
        #expect(st.stdout.contains("\\u{202e}txt.exe"), "\(st.stdout)")
        let loop = try runBounded(["inspect", "--json", Tool.fixture("hostile/self_containing_object.pt")]).0
        #expect((try JSONReader.parse(loop.stdout))["objects"]?["loop"]?.stringValue == "[[...]]", "printed as Python prints it")
    }

    @Test func convertAndZooIdentifyRefuseThemToo() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        for name in ["literal_os_system.pt", "memo_bomb_tensor.pt", "zip_bomb.pt", "protocol0_no_header.pt", "in_legacy_stream.pt"] {
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
        let targets = try FileManager.default.contentsOfDirectory(atPath: root)
        let runner = Tool.product("ditkit-fuzz")
        // The runner is there and knows every target that has reproducers (its usage lists them).
        let usage = try Tool.run([runner], viaShell: true)
        #expect(usage.status == 64, "\(runner): \(usage.stdout) \(usage.stderr)")
        for t in targets where t != "hdf5-isolated" { #expect(usage.stdout.contains(t), "unknown fuzz target \(t)") }
        for t in targets.sorted() where t != "hdf5-isolated" {
            let files = try FileManager.default.contentsOfDirectory(atPath: root + "/" + t).sorted().map { root + "/" + t + "/" + $0 }
            guard !files.isEmpty else { continue }
            let r = try Tool.run([runner, t] + files, viaShell: true)
            #expect(r.status == 0, "\(t): \(r.stdout) \(r.stderr)")
        }
    }
}
