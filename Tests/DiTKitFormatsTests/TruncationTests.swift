// A file truncated by another process while DiTKit has it mapped (issue 18): touching a page past
// the new end raised SIGBUS and killed the process. Now the page reads as zeros, the reader
// refuses what it read, and no output is committed. Each case runs in its own process (an exit
// test), so a regression shows as a crash of that process and not of the test runner.
import Testing
import DiTKitCore
import DiTKitFormats
#if canImport(Glibc)
import Glibc
#endif

/// A safetensors file of one U8 tensor of `bytes` bytes, for truncation.
func largeSafetensors(at path: String, bytes: Int) throws {
    let header = Array("{\"big\":{\"dtype\":\"U8\",\"shape\":[\(bytes)],\"data_offsets\":[0,\(bytes)]}}".utf8)
    var out: [UInt8] = []
    for k in 0..<8 { out.append(UInt8(truncatingIfNeeded: header.count >> (8 * k))) }
    out += header
    out += (0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    try FileSystem.writeFile(path, out)
}

@Suite struct TruncationTests {
    @Test func aFileThatShrinksWhileMappedIsRefusedNotACrash() async {
        await #expect(processExitsWith: .success) {
            let path = "/tmp/ditkit-truncation-\(getpid()).safetensors"
            defer { unlink(path) }
            try largeSafetensors(at: path, bytes: 8 << 20)
            let c = try SafetensorsFile(file: MappedFile(path: path))
            let whole = try c.sha256(of: 0)
            guard truncate(path, 4096) == 0 else { exit(10) }
            // Hashing reads every page past the new end: zeros, counted, and refused.
            do {
                let h = try c.sha256(of: 0)
                print("hashed \(h) after truncation (was \(whole))")
                exit(11)
            } catch let e as FileChangedWhileReading {
                guard e.description.contains(path), e.description.contains("shrank while it was being read") else { exit(12) }
            }
            // Nothing built from it would be committed.
            do { try MappedFile.checkMappedFilesUnchanged(); exit(13) } catch is FileChangedWhileReading {}
            guard MappedFile.pagesLostInProcess > 0 else { exit(14) }
            exit(0)
        }
    }

    @Test func aSIGBUSOutsideDiTKitsMappingsStillStopsTheProcess() async {
        // The guard answers only for registered mappings; any other SIGBUS keeps its old meaning.
        await #expect(processExitsWith: .failure) {
            let path = "/tmp/ditkit-unguarded-\(getpid()).bin"
            defer { unlink(path) }
            try FileSystem.writeFile(path, [UInt8](repeating: 1, count: 1 << 16))
            _ = try MappedFile(path: path)   // installs the guard
            let fd = open(path, O_RDONLY)
            guard let p = mmap(nil, 1 << 16, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else { exit(0) }
            _ = truncate(path, 0)
            let v = p.load(fromByteOffset: 40_000, as: UInt8.self)
            print("read \(v) from a vanished page")
            exit(0)
        }
    }
}
