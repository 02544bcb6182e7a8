// `--force` replaces only what DiTKit itself wrote, of the same kind; anything else at the output
// path is refused (exit 64) and left exactly as it was.
import Testing
import Foundation
import DiTKitCore

@Suite struct OverwriteTests {
    /// Every file under `path` (relative) with its bytes, so "untouched" can be checked exactly.
    func snapshot(_ path: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        if !FileSystem.isDirectory(path) { return ["": try FileSystem.readFile(path)] }
        for name in FileSystem.listDirectory(path) {
            for (k, v) in try snapshot(path + "/" + name) { out[name + (k.isEmpty ? "" : "/" + k)] = v }
        }
        return out
    }

    /// A user's folder: notes and an unrelated file.
    func userFolder(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try FileSystem.writeFile(path + "/notes.txt", Array("my notes\n".utf8))
        try FileSystem.writeFile(path + "/data.bin", [1, 2, 3])
    }

    @Test func forceRefusesToReplaceWhatDiTKitDidNotWrite() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let source = Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors")
        let bundle = dir + "/m.ditkit"
        #expect(try Tool.run(["convert", source, "-o", bundle]).status == 0)
        let pack = dir + "/m.ditkit.zst"
        #expect(try Tool.run(["pack", bundle, "-o", pack]).status == 0)

        // Things a user owns: a folder, a plain file, a foreign safetensors / HDF5 file, a bundle
        // with a user's file inside, a DiTKit output of another kind.
        let folder = dir + "/mymodels"
        try userFolder(folder)
        let plain = dir + "/afile"
        try FileSystem.writeFile(plain, Array("not a model\n".utf8))
        let foreignSafetensors = dir + "/theirs.safetensors"
        try FileSystem.writeFile(foreignSafetensors, try FileSystem.readFile(source))
        let foreignH5 = dir + "/theirs.h5"
        try FileSystem.writeFile(foreignH5, try FileSystem.readFile(Tool.fixture("verify/dit_reference.h5")))
        let bundleWithNotes = dir + "/notes.ditkit"
        #expect(try Tool.run(["convert", source, "-o", bundleWithNotes]).status == 0)
        try FileSystem.writeFile(bundleWithNotes + "/README.txt", Array("mine\n".utf8))
        let gguf = dir + "/m.gguf"
        #expect(try Tool.run(["export", bundle, "--to", "gguf", "-o", gguf]).status == 0)
        let restoreInto = dir + "/restore"
        try userFolder(restoreInto + "/m.ditkit")

        let cases: [(String, [String])] = [
            (folder, ["convert", source, "-o", folder]),
            (plain, ["convert", source, "-o", plain]),
            (bundleWithNotes, ["convert", source, "-o", bundleWithNotes]),
            (folder, ["export", bundle, "--to", "safetensors", "-o", folder]),
            (foreignSafetensors, ["export", bundle, "--to", "safetensors", "-o", foreignSafetensors]),
            (gguf, ["export", bundle, "--to", "safetensors", "-o", gguf]),
            (folder, ["export", bundle, "--to", "diffusers", "-o", folder]),
            (plain, ["export", bundle, "--to", "diffusers", "-o", plain]),
            (plain, ["export", bundle, "--to", "gguf", "-o", plain]),
            (foreignH5, ["export", bundle, "--to", "hdf5", "-o", foreignH5]),
            (plain, ["pack", bundle, "-o", plain]),
            (folder, ["pack", bundle, "-o", folder]),
            (restoreInto + "/m.ditkit", ["unpack", pack, "-o", restoreInto]),
        ]
        for (target, args) in cases {
            let before = try snapshot(target)
            let listing = FileSystem.listDirectory(dir)
            let r = try Tool.run(args + ["--force"])
            #expect(r.status == 64, "\(args): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains("\(target):") && r.stderr.contains("--force replaces only what DiTKit wrote"), "\(args): \(r.stderr)")
            #expect(!r.stderr.contains(", not "), "says what is there and what --force replaces, without repeating itself: \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
            #expect(try snapshot(target) == before, "\(args) changed \(target)")
            #expect(FileSystem.listDirectory(dir) == listing, "\(args) left something behind")
        }
    }

    @Test func forceReplacesDiTKitsOwnOutputsOfTheSameKind() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let bundle = dir + "/m.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"), "-o", bundle]).status == 0)
        let outputs: [(String, [String])] = [
            (bundle, ["convert", Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"), "--dtype", "f16"]),
            (dir + "/m.safetensors", ["export", bundle, "--to", "safetensors"]),
            (dir + "/diffusers", ["export", bundle, "--to", "diffusers"]),
            (dir + "/m.gguf", ["export", bundle, "--to", "gguf"]),
            (dir + "/m.h5", ["export", bundle, "--to", "hdf5"]),
            (dir + "/m.ditkit.zst", ["pack", bundle]),
        ]
        for (path, args) in outputs {
            if !FileSystem.exists(path) { #expect(try Tool.run(args + ["-o", path]).status == 0, "\(args)") }
            let again = try Tool.run(args + ["-o", path])
            #expect(again.status == 64 && again.stderr.contains("already exists (use --force"), "\(args): \(again.stderr)")
            let forced = try Tool.run(args + ["-o", path, "--force"])
            #expect(forced.status == 0, "\(args): \(forced.stderr)")
        }
        #expect(try Tool.run(["unpack", dir + "/m.ditkit.zst", "-o", dir + "/restore"]).status == 0)
        #expect(try Tool.run(["unpack", dir + "/m.ditkit.zst", "-o", dir + "/restore", "--force"]).status == 0)
    }

    @Test func sampleAndVerifyOutputsFollowTheSamePolicy() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let dit = Tool.fixture("verify/dit_verify.pt")
        let vae = Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors")
        let sample = ["sample", dit, "--vae", vae, "--class", "1,2", "--steps", "2", "-o", dir + "/grid.png",
                      "--save-latents", dir + "/latents.h5", "--each", dir + "/each"]
        #expect(try Tool.run(sample).status == 0)
        #expect(FileSystem.listDirectory(dir + "/each") == ["0-class1.png", "1-class2.png"])
        let report = ["verify", dit, "--against", dit, "--report", dir + "/r.html"]
        #expect(try Tool.run(report).status == 0)
        // Each output, taken, is refused without --force, before any work; nothing changes.
        for (path, args) in [(dir + "/latents.h5", sample.map { $0 == dir + "/grid.png" ? dir + "/new.png" : $0 }),
                             (dir + "/each/0-class1.png", sample.map { $0 == dir + "/grid.png" ? dir + "/new.png" : $0 }.filter { $0 != "--save-latents" && $0 != dir + "/latents.h5" }),
                             (dir + "/r.html", report)] {
            let before = try FileSystem.readFile(path)
            let r = try Tool.run(args)
            #expect(r.status == 64 && r.stderr.contains("\(path): already exists (use --force"), "\(args): \(r.stderr)")
            #expect(try FileSystem.readFile(path) == before)
            #expect(!FileSystem.exists(dir + "/new.png"))
        }
        // With --force DiTKit's own outputs are replaced ...
        #expect(try Tool.run(sample + ["--force"]).status == 0)
        #expect(try Tool.run(report + ["--force"]).status == 0)
        // ... and nothing else is.
        // A PNG that is not DiTKit's (no Software chunk) and a page of the user's.
        try FileSystem.writeFile(dir + "/each/0-class1.png", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0])
        try FileSystem.writeFile(dir + "/r.html", Array("<html>my page</html>".utf8))
        for (path, args) in [(dir + "/each/0-class1.png", sample), (dir + "/r.html", report)] {
            let r = try Tool.run(args + ["--force"])
            #expect(r.status == 64 && r.stderr.contains("\(path):") && r.stderr.contains("--force replaces only what DiTKit wrote"), "\(r.stderr)")
        }
    }
}
