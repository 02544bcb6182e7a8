// The structure check that runs before a file is trusted on first use, against the real zoo
// entries. The files are safetensors with the architectures' real names and shapes whose data is a
// sparse hole (zeros that take no disk): a 2.7 GB DiT-XL/2 costs a few kilobytes.
import Testing
import Foundation
import DiTKitCore
import DiTKitModels
@testable import DiTKitZoo

@Suite struct StructureCheckTests {
    let zoo: Zoo
    init() throws { zoo = try Zoo(directory: repository + "/Manifests") }

    /// A safetensors file holding `configuration`'s tensors (F32, zeros) under the canonical names.
    func sparseCheckpoint(_ configuration: ModelConfiguration, in dir: String) throws -> String {
        var offset = 0
        var members: [(String, JSONValue)] = []
        for t in configuration.tensorShapes() {
            let bytes = t.shape.reduce(1, *) * 4
            members.append((t.name, .object([("dtype", .string("F32")), ("shape", .array(t.shape.map { .int($0) })),
                                             ("data_offsets", .array([.int(offset), .int(offset + bytes)]))])))
            offset += bytes
        }
        var header = Array(JSONWriter.string(.object(members), pretty: false).utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var n = UInt64(header.count).littleEndian
        let path = dir + "/weights.safetensors"
        try FileSystem.writeFile(path, withUnsafeBytes(of: &n) { Array($0) } + header)
        let h = try #require(FileHandle(forWritingAtPath: path))
        try h.truncate(atOffset: UInt64(8 + header.count + offset))
        try h.close()
        return path
    }

    func directory() throws -> String {
        let d = NSTemporaryDirectory() + "/ditkit-structure-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try FileSystem.makeDirectories(d)
        return d
    }

    func architecture(_ name: String, _ size: Int) throws -> ModelConfiguration {
        try #require(DiTFamily().configuration(named: name, imageSize: size))
    }

    @Test func aDiTS2IsNotTheDiTXL2Release() throws {
        let dir = try directory()
        defer { FileSystem.removeTree(dir) }
        let entry = try zoo.entry("dit-xl-2-256x256")
        let file = try #require(entry.primaryFile)
        let path = try sparseCheckpoint(try architecture("DiT-S/2", 256), in: dir)
        do {
            _ = try entry.checkStructure(of: file, at: path)
            Issue.record("a DiT-S/2 passed as the DiT-XL/2 release")
        } catch let e as ZooError {
            let text = String(describing: e)
            #expect(text.contains("it holds DiT-S/2: 132 tensors, 32,963,360 parameters"), "\(text)")
            #expect(text.contains("dit-xl-2-256x256 is DiT-XL/2 at 256: 292 tensors, 675,129,632 parameters"), "\(text)")
            #expect(text.contains("depth 12 instead of 28"), "\(text)")
            #expect(e.kind == .mismatch)
        }
    }

    @Test func theRightArchitectureAtTheWrongSizeIsRefused() throws {
        let dir = try directory()
        defer { FileSystem.removeTree(dir) }
        let entry = try zoo.entry("dit-xl-2-256x256")
        let path = try sparseCheckpoint(try architecture("DiT-XL/2", 512), in: dir)
        #expect(throws: ZooError.self) { try entry.checkStructure(of: try #require(entry.primaryFile), at: path) }
    }

    @Test func theReleasedArchitecturePasses() throws {
        let dir = try directory()
        defer { FileSystem.removeTree(dir) }
        let entry = try zoo.entry("dit-xl-2-256x256")
        let path = try sparseCheckpoint(try architecture("DiT-XL/2", 256), in: dir)
        let seen = try entry.checkStructure(of: try #require(entry.primaryFile), at: path)
        #expect(seen == "DiT-XL/2: 292 tensors, 675,129,632 parameters")
    }

    @Test func aDiTIsNotAVAE() throws {
        let dir = try directory()
        defer { FileSystem.removeTree(dir) }
        let entry = try zoo.entry("sd-vae-ft-mse")
        let path = try sparseCheckpoint(try architecture("DiT-S/8", 256), in: dir)
        let file = try #require(entry.primaryFile)
        do {
            _ = try entry.checkStructure(of: file, at: path)
            Issue.record("a DiT passed as a VAE")
        } catch {
            #expect(String(describing: error).contains("not a SD VAE"), "\(error)")
        }
        // The entry's own architecture passes, with or without the config.json beside it.
        let vae = try #require(entry.configuration())
        #expect(try entry.checkStructure(of: file, at: try sparseCheckpoint(vae, in: dir)) == "\(vae.variant): 248 tensors, 83,653,863 parameters")
    }

    @Test func identifyNamesEveryReleaseOfTheArchitecture() throws {
        let dir = try directory()
        defer { FileSystem.removeTree(dir) }
        let vae = try #require(try zoo.entry("sd-vae-ft-mse").configuration())
        let r = try zoo.identify(try sparseCheckpoint(vae, in: dir), checksums: [])
        let c = try #require(r.closest)
        #expect(c.exact)
        // Four releases share the SD VAE's architecture (SDXL's differs in its scaling factor): all
        // are named, not an arbitrary one.
        #expect([c.entry] + r.alsoClosest == ["sd-vae-ft-ema", "sd-vae-ft-mse", "vae-ft-ema-560000-ema-pruned", "vae-ft-mse-840000-ema-pruned"])
        // The architecture entry comes before its releases.
        let xl = try zoo.identify(try sparseCheckpoint(try architecture("DiT-XL/2", 256), in: dir), checksums: [])
        #expect(xl.closest.map { [$0.entry] } .map { $0 + xl.alsoClosest } == ["dit-xl-2", "dit-xl-2-256x256"])
    }

    @Test func modelFilesLeaveOutAlternativeFormats() throws {
        #expect(Fetcher.modelFiles(try zoo.entry("sd-vae-ft-mse")).map(\.name) == ["config.json", "diffusion_pytorch_model.safetensors"])
        #expect(Fetcher.modelFiles(try zoo.entry("sd3-5-large-diffusers")).map(\.name) == [
            "diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model-00002-of-00002.safetensors", "config.json",
            "diffusion_pytorch_model.safetensors.index.json",
        ])
    }
}
