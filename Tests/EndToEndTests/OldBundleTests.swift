// Bundles of format version 1 (SHA-256 checksums), written by DiTKit before version 3
// (Tests/Fixtures/bundles/README.md), stay readable: unpacked, checked with their SHA-256s, opened,
// inspected, verified and exported by today's DiTKit.
import Testing
import Foundation
import DiTKitCore

@Suite struct OldBundleTests {
    /// Unpacks the committed version-1 pack (every SHA-256 checked on the way) into a fresh
    /// directory: (dir, bundle path).
    func unpacked() throws -> (String, String) {
        let dir = try Tool.temporaryDirectory()
        let r = try Tool.run(["unpack", Tool.fixture("bundles/dit_tiny_int8_v1.ditkit.zst"), "-o", dir])
        #expect(r.status == 0, "\(r.stderr)")
        return (dir, dir + "/dit_tiny_int8.ditkit")   // the name recorded in the pack
    }

    @Test func versionOneBundlesAreCheckedWithTheirSHA256() throws {
        let (dir, b) = try unpacked()
        defer { FileSystem.removeTree(dir) }
        let manifest = try JSONReader.parse(try FileSystem.readFile(b + "/manifest.json"))
        #expect(manifest["format_version"] == .int(1))
        let first = try #require(manifest["tensors"]?.arrayValue?.first)
        #expect(first["sha256"]?.stringValue == (try Tool.storedSHA256(b, first)))
        #expect(try Tool.run(["check", b]).status == 0)
        // One flipped byte is named as a SHA-256 mismatch: the old checksum is really computed.
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: b + "/weights.bin"))
        try h.seek(toOffset: UInt64(first["offset"]?.intValue ?? 0) + 5)
        h.write(Data([0xA5]))
        try h.close()
        let r = try Tool.run(["check", b])
        #expect(r.status == 1)
        #expect(r.stdout.contains("MISMATCH \(first["name"]?.stringValue ?? "?")"), "\(r.stdout)")
        #expect(r.stdout.contains("SHA-256 of the stored bytes is"), "\(r.stdout)")
    }

    @Test func versionOneBundlesOpenVerifyAndExport() throws {
        let (dir, b) = try unpacked()
        defer { FileSystem.removeTree(dir) }
        let listing = try Tool.run(["inspect", b, "--json", "--sha256"])
        #expect(listing.status == 0, "\(listing.stderr)")
        let manifest = try JSONReader.parse(try FileSystem.readFile(b + "/manifest.json"))
        var recorded: [String: JSONValue] = [:]
        for t in manifest["tensors"]?.arrayValue ?? [] { recorded[t["name"]?.stringValue ?? ""] = t["sha256"] }
        let tensors = try JSONReader.parse(listing.stdout)["tensors"]?.arrayValue ?? []
        // 32 tensors; the 13 I8 ones carry their scale vectors (with the scales' SHA-256s).
        #expect(tensors.count == 32)
        #expect(tensors.filter { $0["scale"]?["sha256"]?.stringValue?.count == 64 }.count == 13)
        for t in tensors where recorded[t["name"]?.stringValue ?? ""] != nil {
            #expect(t["sha256"] == recorded[t["name"]!.stringValue!], "\(t["name"]!)")
        }
        let v = try Tool.run(["verify", b, "--against", Tool.fixture("readers/dit_tiny.pt"), "--heads", "2"])
        #expect(v.status == 0, "\(v.stdout)\(v.stderr)")
        let e = try Tool.run(["export", b, "--to", "safetensors", "--dequantize", "-o", dir + "/m.safetensors"])
        #expect(e.status == 0, "\(e.stderr)")
    }
}
