// Hostile inputs too large to commit, generated at test time (issue 18): memo references that
// multiply a large string, huge names, huge safetensors headers, stride-0 views, FIFOs and devices.
// Each runs the real executable under an address-space limit of 1 GB and a time limit.
import Testing
import Foundation
import DiTKitCore
@testable import ditkit_fuzz

@Suite struct HostileGeneratedInputTests {
    func write(_ bytes: [UInt8], _ name: String, in dir: String) throws -> String {
        let path = dir + "/" + name
        try FileSystem.writeFile(path, bytes)
        return path
    }

    /// A dict of `count` entries whose values are all the same memoised `value` (pushed once).
    func memoisedDict(count: Int, push: (inout PickleWriter) -> Void) -> [UInt8] {
        var p = PickleWriter()
        p.emptyDict()
        p.mark()
        p.string("first")
        push(&p)
        p.put(0)
        for k in 1..<count {
            p.string("ref\(k)")
            p.get(0)
        }
        p.setItems()
        p.stop()
        return StoredZip.torch(pickle: p.bytes)
    }

    @Test func aLargeStringReferencedThousandsOfTimesIsRenderedTruncated() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let text = String(repeating: "0123456789abcdef", count: 1 << 16)   // 1 MiB
        let path = try write(memoisedDict(count: 3000) { $0.string(text) }, "strings.pt", in: dir)
        let (r, _) = try runBounded(["inspect", path])
        #expect(r.status == 0, "\(r.stderr)")
        let longest = r.stdout.split(separator: "\n").map(\.utf8.count).max() ?? 0
        #expect(longest < 5000, "an object's rendering is cut (longest line \(longest) bytes)")
        #expect(r.stdout.utf8.count < 20 << 20)
        let (j, _) = try runBounded(["inspect", "--json", "--hash", path])
        #expect(j.status == 0, "\(j.stderr)")
        let c = try runBounded(["convert", path, "-o", dir + "/x.ditkit"]).0
        #expect(c.status == 2, "not a model: refused, without blowing up (\(c.stderr))")
        #expect(!FileSystem.exists(dir + "/x.ditkit"))
    }

    @Test func largeBytesBehindMemoReferencesAreRenderedTruncated() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        var blob = [UInt8](repeating: 0, count: 32 << 20)
        for k in stride(from: 0, to: blob.count, by: 7) { blob[k] = UInt8(truncatingIfNeeded: k) }
        let path = try write(memoisedDict(count: 40) { $0.binBytes(blob) }, "bytes.pt", in: dir)
        let (r, _) = try runBounded(["inspect", path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.utf8.count < 1 << 20, "\(r.stdout.utf8.count) bytes of listing")
    }

    @Test func longNamesAreElidedInTablesAndRefusedBeyondTheLimit() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        func tensors(_ names: [String]) -> [UInt8] {
            var p = PickleWriter()
            p.emptyDict()
            p.mark()
            for n in names {
                p.string(n)
                p.floatTensor(key: "0", count: 1, size: [1], stride: [1])
            }
            p.setItems()
            p.stop()
            return StoredZip.torch(pickle: p.bytes, storages: [("0", [0, 0, 0x80, 0x3F])])
        }
        let long = String(repeating: "x", count: 4000)
        let wide = try write(tensors([long] + (0..<3000).map { "t\($0)" }), "wide.pt", in: dir)
        let (r, _) = try runBounded(["inspect", wide])
        #expect(r.status == 0, "\(r.stderr)")
        let longest = r.stdout.split(separator: "\n").map { (line: Substring) in line.count }.max() ?? 0
        #expect(longest < 300, "rows are not padded to the widest name (longest line \(longest))")
        #expect(r.stdout.contains("…"), "the long name is elided")
        let json = try runBounded(["inspect", "--json", wide]).0
        #expect(json.stdout.contains(long), "JSON keeps the whole name")

        let huge = try write(tensors([String(repeating: "n", count: 4 << 20), "b"]), "huge.pt", in: dir)
        let (h, _) = try runBounded(["inspect", huge])
        #expect(h.status == 2, "\(h.stderr.prefix(300))")
        #expect(h.stderr.contains("longer than 4096 bytes"))
        #expect(h.stderr.split(separator: "\n").count == 1 && h.stderr.utf8.count < 1000, "one short line")
    }

    @Test func safetensorsHeadersAreBoundedInTensorsAndDimensions() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        var header = "{"
        header.reserveCapacity(12 << 20)
        for k in 0...200_000 {
            if k > 0 { header += "," }
            header += "\"t\(k)\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}"
        }
        header += "}"
        let many = try write(safetensorsFile(header: header), "many.safetensors", in: dir)
        let (r, _) = try runBounded(["inspect", "--json", "--hash", many])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.contains("more than 200000 tensors"), "\(r.stderr)")

        let rank = try write(safetensorsFile(header: "{\"x\":{\"dtype\":\"F32\",\"shape\":[" + Array(repeating: "1", count: 65).joined(separator: ",")
                                                  + "],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0]), "rank.safetensors", in: dir)
        let k = try runBounded(["inspect", rank]).0
        #expect(k.status == 2 && k.stderr.contains("65 dimensions (at most 64)"), "\(k.stderr)")

        let values = try write(safetensorsFile(header: "{\"x\":{\"dtype\":\"F32\",\"shape\":[" + Array(repeating: "1", count: 500_000).joined(separator: ",")
                                                    + "],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0]), "values.safetensors", in: dir)
        let v = try runBounded(["inspect", values]).0
        #expect(v.status == 2 && v.stderr.contains("more than 131072 values"), "\(v.stderr)")
    }

    @Test func strideZeroViewsAreHashedWithinTheLimitAndRefusedBeyondIt() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        func expanded(_ n: Int) -> [UInt8] {
            var p = PickleWriter()
            p.emptyDict()
            p.string("t")
            p.floatTensor(key: "0", count: 1, size: [n, n], stride: [0, 0])
            p.bytes.append(0x73)   // SETITEM
            p.stop()
            return StoredZip.torch(pickle: p.bytes, storages: [("0", [0, 0, 0xC0, 0x3F])])   // 1.5
        }
        // 4096 x 4096 floats (64 MiB) from 4 bytes: within the limit; the hash is of every repeated element.
        let ok = try write(expanded(4096), "expand.pt", in: dir)
        let (r, _) = try runBounded(["inspect", "--json", "--sha256", ok])
        #expect(r.status == 0, "\(r.stderr)")
        var h = SHA256Hasher()
        let row = [UInt8]([0, 0, 0xC0, 0x3F]).repeated(4096)
        for _ in 0..<4096 { h.update(row) }
        let want = h.finalizeHex()
        #expect(r.stdout.contains(want), "the expanded tensor hashes like torch's .contiguous()")
        // 32768 x 32768 (4 GiB): refused.
        let bomb = try write(expanded(32768), "bomb.pt", in: dir)
        let (b, _) = try runBounded(["inspect", "--hash", bomb])
        #expect(b.status == 2 && b.stderr.contains("add up to more than"), "\(b.stderr)")
    }

    @Test func fifosAndDevicesAreRefusedWithoutBlocking() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let fifo = dir + "/checkpoint.pt"
        #expect(mkfifo(fifo, 0o600) == 0)
        for args in [["inspect", fifo], ["inspect", "--json", "--hash", fifo], ["convert", fifo, "-o", dir + "/out.ditkit"]] {
            let (r, seconds) = try runBounded(args, seconds: 20)
            #expect(r.status == 2, "\(args): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains("not a regular file (a FIFO)"), "\(r.stderr)")
            #expect(seconds < 15, "\(args) blocked for \(seconds) s")
        }
        let zero = try runBounded(["inspect", "/dev/zero"], seconds: 20).0
        #expect(zero.status == 2 && zero.stderr.contains("/dev/zero: not a regular file (a character device)"), "\(zero.stderr)")
        #expect(!zero.stderr.contains("Is a directory"))
    }
}

extension Array {
    func repeated(_ n: Int) -> [Element] { Array([[Element]](repeating: self, count: n).joined()) }
}
