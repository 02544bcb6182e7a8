// `ditkit inspect` on GGUF files: what gguf-py wrote is listed as gguf-py reads it; hostile files
// exit 2 with one line naming the file, the tensor and the byte offset.
import Testing
import Foundation
import DiTKitCore

@Suite struct GGUFCommandTests {
    @Test func inspectListsWhatGGUFPyReads() throws {
        let path = Tool.fixture("gguf/types.gguf")
        let r = try Tool.run(["inspect", "--json", "--hash", path])
        #expect(r.status == 0, "\(r.stderr)")
        let got = try JSONReader.parse(r.stdout)
        let want = try JSONReader.parse(try FileSystem.readFile(path + ".expected.json"))
        #expect(got["format"]?.stringValue == "gguf")
        let tensors = got["tensors"]?.arrayValue ?? []
        let expected = want["tensors"]?.arrayValue ?? []
        #expect(tensors.count == expected.count && tensors.count == 19)
        for (g, w) in zip(tensors, expected) {
            #expect(g["name"] == w["name"])
            #expect(g["dtype"] == w["type"])
            #expect(g["shape"] == w["shape"])
            #expect(g["sha256"] == w["bytes_sha256"], "\(w["name"]!)")
        }
        #expect(got["metadata"]?["general.architecture"]?.stringValue == "flux")
        #expect(got["metadata"]?["test.strings"]?.stringValue == "[\"a\", \"bc\", \"\"]")
        let table = try Tool.run(["inspect", path])
        #expect(table.stdout.contains("q4_k.weight  Q4_K   [3, 256]"))
        #expect(table.stdout.contains("19 tensors"))
    }

    @Test func hostileFilesExitTwoWithOneLine() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        var good = try FileSystem.readFile(Tool.fixture("gguf/aligned64.gguf"))
        // Tensor 'b' (Q8_0) info: its type field follows its name and two dimensions.
        let name = Array("\u{01}\0\0\0\0\0\0\0b".utf8)
        let at = try #require((0..<(good.count - name.count)).first { Array(good[$0..<($0 + name.count)]) == name })
        let typeAt = at + name.count + 4 + 16
        #expect(good[typeAt] == 8, "the Q8_0 type code")
        var cases: [(String, [UInt8], String)] = []
        var iq = good
        iq[typeAt] = 19
        cases.append(("iq.gguf", iq, "tensor 'b' (info at byte \(at)): ggml type 19 (IQ1_S) is not supported"))
        var past = good
        past[typeAt + 4 + 1] = 0x10      // offset += 4096
        cases.append(("past.gguf", past, "runs past the end of the 320-byte file"))
        var count = good
        count[8 + 5] = 0x01              // tensor count + 2^40
        cases.append(("count.gguf", count, "tensor count 1099511627778 at byte 8 exceeds the limit of 1048576"))
        cases.append(("cut.gguf", Array(good.prefix(60)), "tensor count 2 cannot fit in the 36 bytes that follow at byte 8"))
        cases.append(("cut2.gguf", Array(good.prefix(150)), "truncated GGUF: a dimension of 'b' at byte 146 needs 8 bytes, 4 remain"))
        good[4] = 1
        cases.append(("v1.gguf", good, "GGUF version 1 is not supported"))
        for (file, bytes, message) in cases {
            try FileSystem.writeFile(dir + "/" + file, bytes)
            let r = try Tool.run(["inspect", dir + "/" + file])
            #expect(r.status == 2, "\(file): \(r.stderr)")
            #expect(r.stdout.isEmpty)
            #expect(r.stderr.split(separator: "\n").count == 1, "\(file): \(r.stderr)")
            #expect(r.stderr.hasPrefix("ditkit: error: " + dir + "/" + file + ": "), "\(file): \(r.stderr)")
            #expect(r.stderr.contains(message), "\(file): \(r.stderr)")
        }
    }
}
