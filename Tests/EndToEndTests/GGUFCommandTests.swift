// `ditkit inspect` on GGUF files: what gguf-py wrote is listed as gguf-py reads it; hostile files
// exit 2 with one line naming the file, the tensor and the byte offset.
import Testing
import Foundation
import DiTKitCore

@Suite struct GGUFCommandTests {
    @Test func inspectListsWhatGGUFPyReads() throws {
        let path = Tool.fixture("gguf/types.gguf")
        let r = try Tool.run(["inspect", "--json", "--sha256", path])
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

    /// GGUF files as people download them (ComfyUI-GGUF's convert.py, then its llama-quantize, here
    /// followed by gguf-py: Tests/EndToEndTests/python/write_comfy_gguf.py) convert with their blocks
    /// verbatim, run, and export back to the same names and values.
    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with gguf and safetensors (make test provides it)"))
    func ggufsMadeLikeComfyUIGGUFsConvertAndRun() throws {
        // (Stability's names record neither the head count of the width-16 SD3 fixture nor its image size.)
        let cases = [("flux/dev_bfl_fp8.safetensors", "flux", "Q8_0", [String]()), ("flux/schnell_comfy_fp8.safetensors", "flux", "Q5_1", []),
                     ("sd3/mmdit/transformer/diffusion_pytorch_model.safetensors", "sd3", "Q4_0", ["--heads", "2", "--image-size", "64"])]
        for (source, arch, qtype, hints) in cases {
            let dir = try Tool.temporaryDirectory()
            defer { FileSystem.removeTree(dir) }
            #expect(try Tool.run(["convert", Tool.fixture(source), "-o", dir + "/h.ditkit", "--dtype", "f16"]).status == 0)
            #expect(try Tool.run(["export", dir + "/h.ditkit", "--to", "safetensors", "--naming", "original", "-o", dir + "/orig.safetensors"]).status == 0)
            _ = try runPython([Tool.root + "/Tests/EndToEndTests/python/write_comfy_gguf.py", dir + "/orig.safetensors", dir + "/m.gguf", arch, qtype])
            let listing = try JSONReader.parse(try Tool.run(["inspect", dir + "/m.gguf", "--json"]).stdout)
            #expect(listing["metadata"]?["general.architecture"]?.stringValue == arch)
            let types = Set((listing["tensors"]?.arrayValue ?? []).compactMap { $0["dtype"]?.stringValue })
            if arch == "flux" { #expect(types.contains(qtype), "\(source): \(types)") }
            let c = try Tool.run(["convert", dir + "/m.gguf", "-o", dir + "/g.ditkit", "--json"] + hints)
            #expect(c.status == 0, "\(source): \(c.stderr)")
            let summary = try JSONReader.parse(c.stdout).arrayValue?.first
            #expect(summary?["dtype"]?.stringValue == "source")
            #expect(summary?["source"]?["naming"]?.stringValue == "\(arch)-original")
            let m = try JSONReader.parse(try FileSystem.readFile(dir + "/g.ditkit/manifest.json"))
            #expect(m["provenance"]?["source"]?["gguf"]?["architecture"]?.stringValue == arch)
            // The bundle's values are gguf-py's dequantization of the file, under the same names.
            #expect(try Tool.run(["export", dir + "/g.ditkit", "--to", "safetensors", "--naming", "original", "--dequantize", "-o", dir + "/back.safetensors"]).status == 0)
            let got = try JSONReader.parse(try runPython([Tool.root + "/Tests/EndToEndTests/python/read_exports.py", "gguf", dir + "/m.gguf", dir + "/back.safetensors"]))
            #expect(got["reference"]?["not_in_reference"]?.arrayValue == [] && got["reference"]?["not_in_gguf"]?.arrayValue == [], "\(source): \(String(describing: got["reference"]))")
            #expect(got["reference"]?["value_mismatch"]?.arrayValue == [] && got["q8_0_checked"] == .int(0), "\(source)")
            // It runs: within the block type's tolerance of the float16 model it was made from.
            let v = try Tool.run(["verify", dir + "/g.ditkit", "--against", dir + "/h.ditkit"])
            #expect(v.status == 0, "\(source): \(v.stdout) \(v.stderr)")
            #expect(v.stdout.contains("profile \(arch == "flux" ? qtype.lowercased() : "f16")"), "\(v.stdout)")
        }
    }

    /// A hostile GGUF given to convert: exit 2, one line naming the file, nothing written.
    @Test func hostileGGUFsAreRefusedByConvertWithoutOutput() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        var bytes = try FileSystem.readFile(Tool.fixture("gguf/aligned64.gguf"))
        bytes[8 + 5] = 0x01          // tensor count + 2^40
        try FileSystem.writeFile(dir + "/count.gguf", bytes)
        let r = try Tool.run(["convert", dir + "/count.gguf", "-o", dir + "/x.ditkit"])
        #expect(r.status == 2 && r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(dir + "/count.gguf: "), "\(r.stderr)")
        #expect(!FileSystem.exists(dir + "/x.ditkit"))
        // A valid GGUF that holds no model DiTKit knows is refused the same way.
        let other = try Tool.run(["convert", Tool.fixture("gguf/types.gguf"), "-o", dir + "/y.ditkit"])
        #expect(other.status == 2 && other.stderr.split(separator: "\n").count == 1, "\(other.stderr)")
        #expect(!FileSystem.exists(dir + "/y.ditkit"))
    }
}
