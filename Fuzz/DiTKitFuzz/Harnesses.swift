// Fuzz harnesses: every parser that reads untrusted bytes, driven from memory.
// Each harness must return (or throw a Swift error) on any input: never crash, hang, or allocate
// without bound. Run with libFuzzer (`make fuzz`) or on files (`ditkit-fuzz TARGET FILE...`).
import DiTKitCore
import DiTKitFormats
#if canImport(Glibc)
import Glibc
#endif

enum Harness: String, CaseIterable {
    case pickle, torchzip, legacy, safetensors, manifest, hdf5, pack, json

    func run(_ data: UnsafeRawBufferPointer) {
        let bytes = Array(data)
        switch self {
        case .pickle:
            if let tree = try? PickleMachine.load(bytes) {
                var limits = WalkLimits()
                limits.maxVisits = 200_000
                _ = try? PickleTreeWalker.walk(tree.root, limits: limits)
            }
        case .torchzip:
            readAll { try TorchArchive(file: MappedFile(copying: bytes, path: "fuzz.pt")) }
        case .legacy:
            readAll { try TorchLegacyFile(file: MappedFile(copying: bytes, path: "fuzz.pt")) }
        case .safetensors:
            readAll { try SafetensorsFile(file: MappedFile(copying: bytes, path: "fuzz.safetensors")) }
        case .manifest:
            if let json = try? JSONReader.parse(bytes), let m = try? BundleManifest(json: json) {
                _ = try? m.validateLayout(fileSize: m.weightsBytes)
                _ = JSONWriter.string(m.json)
            }
        case .json:
            if let v = try? JSONReader.parse(bytes) { _ = JSONWriter.string(v) }
        case .hdf5:
            // libhdf5 opens files by name: the input goes through a file in /dev/shm.
            let path = "/dev/shm/ditkit-fuzz-\(getpid()).h5"
            guard (try? FileSystem.writeFile(path, bytes)) != nil else { return }
            defer { unlink(path) }
            if let f = try? HDF5File.open(path) {
                for d in f.datasets(under: "/layers").prefix(64) { _ = try? f.readFloats(d) }
                for p in ["/inputs/x", "/inputs/t", "/inputs/z", "/inputs/image", "/output", "/noise"] { _ = try? f.readFloats(p) }
                _ = try? f.readInt64("/inputs/y")
                _ = f.stringAttribute("model")
            }
        case .pack:
            let dir = "/dev/shm/ditkit-fuzz-pack-\(getpid())"
            let path = dir + ".zst"
            FileSystem.removeTree(dir)
            guard (try? FileSystem.writeFile(path, bytes)) != nil else { return }
            defer { unlink(path); FileSystem.removeTree(dir) }
            _ = try? BundlePack.unpack(pack: path, into: dir, force: true)
        }
    }

    /// Opens a container and reads and hashes every tensor, as `inspect --hash` would.
    private func readAll(_ open: () throws -> any TensorContainer) {
        guard let c = try? open() else { return }
        for i in c.tensors.indices {
            if let b = try? c.bytes(of: i) { _ = SHA256Hasher.hex(b) }
        }
    }
}
