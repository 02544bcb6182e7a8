// Fuzz harnesses: every parser that reads untrusted bytes, driven from memory.
// Each harness must return (or throw a Swift error) on any input: never crash, hang, or allocate
// without bound. Run with libFuzzer (`make fuzz`) or on files (`ditkit-fuzz TARGET FILE...`).
// The torch, safetensors and pickle harnesses also check what the code produces (issue 18): a tensor's
// bytes are as many as its entry says, and no error message or listing holds a control character or
// a line break from the file. A violation stops the harness like a crash, so libFuzzer reports it.
import DiTKitCore
import DiTKitFormats
#if canImport(Glibc)
import Glibc
#endif

enum Harness: String, CaseIterable {
    case pickle, torchzip, torchpickle, legacy, safetensors, gguf, manifest, hdf5, pack, json

    func run(_ data: UnsafeRawBufferPointer) {
        let bytes = Array(data)
        switch self {
        case .pickle:
            do {
                let tree = try PickleMachine.load(bytes)
                var limits = WalkLimits()
                limits.maxVisits = 200_000
                let contents = try withExtendedLifetime(tree) { try PickleTreeWalker.walk(tree.root, limits: limits) }
                for o in contents.objects where o.value.utf8.count > limits.maxRenderedBytes + 3 {
                    fatalError("object rendered in \(o.value.utf8.count) bytes, beyond the \(limits.maxRenderedBytes)-byte cut")
                }
            } catch { Self.checkMessage(error) }
        case .torchzip:
            readAll { try TorchArchive(file: MappedFile(copying: bytes, path: "fuzz.pt")) }
        case .torchpickle:
            // The input is data.pkl of a valid torch zip with four storages of 64 bytes, so that
            // mutations reach tensor resolution and view checks instead of failing the zip CRC.
            readAll { try TorchArchive(file: MappedFile(copying: StoredZip.torchArchive(pickle: bytes), path: "fuzz.pt")) }
        case .legacy:
            readAll { try TorchLegacyFile(file: MappedFile(copying: bytes, path: "fuzz.pt")) }
        case .safetensors:
            readAll { try SafetensorsFile(file: MappedFile(copying: bytes, path: "fuzz.safetensors")) }
        case .gguf:
            // Every tensor read and hashed, and every one DiTKit can widen dequantized (garbage
            // blocks must give garbage values, never an out-of-bounds access).
            guard let g = try? GGUFFile(file: MappedFile(copying: bytes, path: "fuzz.gguf")) else { return }
            for (i, t) in g.tensors.enumerated() {
                guard let b = try? g.bytes(of: i) else { continue }
                _ = XXH3Hasher.hex(b)
                if t.dtype.isDequantizable, let base = b.buffer.baseAddress {
                    let out = UnsafeMutablePointer<Float>.allocate(capacity: max(1, t.elementCount))
                    ElementConversion.toFloat32(base, dtype: t.dtype, count: t.elementCount, into: out)
                    out.deallocate()
                }
                withExtendedLifetime(b) {}
            }
            _ = g.metadata.count
        case .manifest:
            if let json = try? JSONReader.parse(bytes), let m = try? BundleManifest(json: json) {
                _ = try? m.validateLayout(fileSize: m.weightsBytes)
                _ = JSONWriter.string(m.json)
            }
        case .json:
            if let v = try? JSONReader.parse(bytes) { _ = JSONWriter.string(v) }
        case .hdf5:
            // HDF5 inputs are read by libhdf5 in a child process (libhdf5 1.10.8 overflows buffers on
            // malformed files, FUZZING.md); what the main process parses is the child's frames.
            if let s = try? HDF5Snapshot.decode(bytes) {
                for d in s.datasets(under: "/layers") { _ = try? s.readFloats(d) }
                _ = try? s.readInt64("/inputs/y")
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

    /// Opens a container, reads and hashes every tensor and lists it, as `inspect --hash` would.
    private func readAll(_ open: () throws -> any TensorContainer) {
        let c: any TensorContainer
        do { c = try open() } catch { Self.checkMessage(error); return }
        for (i, t) in c.tensors.enumerated() {
            do {
                let b = try c.bytes(of: i)
                if b.count != t.byteCount { fatalError("tensor \(i) read \(b.count) bytes; its entry says \(t.byteCount)") }
                _ = XXH3Hasher.hex(b)
            } catch { Self.checkMessage(error) }
        }
        let table = ContainerListing.table(c)
        if table.unicodeScalars.contains(where: { TerminalText.isUnsafe($0) && $0 != "\n" }) {
            fatalError("a control character from the file reached the table: \(TerminalText.escaped(table).prefix(500))")
        }
    }

    /// An error message is one line without control characters (names from the file are escaped).
    private static func checkMessage(_ error: any Error) {
        let text = String(describing: error)
        if text.unicodeScalars.contains(where: { TerminalText.isUnsafe($0) }) {
            fatalError("error message holds a control character or a line break: \(TerminalText.escaped(text).prefix(500))")
        }
    }
}

/// A minimal stored (method 0) zip writer for the torchpickle harness.
enum StoredZip {
    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ b: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for x in b { c = crcTable[Int((c ^ UInt32(x)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func le(_ v: UInt32, _ n: Int, _ out: inout [UInt8]) {
        for k in 0..<n { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(k)))) }
    }

    static func archive(_ entries: [(String, [UInt8])]) -> [UInt8] {
        var out: [UInt8] = [], cd: [UInt8] = []
        for (name, data) in entries {
            let offset = UInt32(out.count), crc = crc32(data), n = Array(name.utf8)
            le(0x0403_4B50, 4, &out); le(20, 2, &out); le(0, 2, &out); le(0, 2, &out); le(0, 4, &out)
            le(crc, 4, &out); le(UInt32(data.count), 4, &out); le(UInt32(data.count), 4, &out)
            le(UInt32(n.count), 2, &out); le(0, 2, &out)
            out += n + data
            le(0x0201_4B50, 4, &cd); le(20, 2, &cd); le(20, 2, &cd); le(0, 2, &cd); le(0, 2, &cd); le(0, 4, &cd)
            le(crc, 4, &cd); le(UInt32(data.count), 4, &cd); le(UInt32(data.count), 4, &cd)
            le(UInt32(n.count), 2, &cd); le(0, 2, &cd); le(0, 2, &cd); le(0, 2, &cd); le(0, 2, &cd); le(0, 4, &cd); le(offset, 4, &cd)
            cd += n
        }
        let cdOffset = UInt32(out.count)
        out += cd
        le(0x0605_4B50, 4, &out); le(0, 2, &out); le(0, 2, &out)
        le(UInt32(entries.count), 2, &out); le(UInt32(entries.count), 2, &out)
        le(UInt32(cd.count), 4, &out); le(cdOffset, 4, &out); le(0, 2, &out)
        return out
    }

    static func torchArchive(pickle: [UInt8]) -> [UInt8] {
        var entries: [(String, [UInt8])] = [("archive/data.pkl", pickle), ("archive/byteorder", Array("little".utf8))]
        for k in 0..<4 { entries.append(("archive/data/\(k)", (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ k) })) }
        entries.append(("archive/version", Array("3\n".utf8)))
        return archive(entries)
    }
}
