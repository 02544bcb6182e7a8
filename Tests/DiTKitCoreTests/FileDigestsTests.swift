// Remembered SHA-256s of whole files: answered only for the very version of the file that was
// hashed, never for a file that changed since, or while, it was hashed.
import Testing
import Foundation
import DiTKitCore

@Suite struct FileDigestsTests {
    private func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "ditkit-digests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    private let a = String(repeating: "a", count: 64), b = String(repeating: "b", count: 64)

    @Test func answersOnlyTheVersionThatWasHashed() throws {
        let dir = try scratch()
        defer { FileSystem.removeTree(dir) }
        let file = dir + "/model.bin"
        try FileSystem.writeFile(file, [1, 2, 3])
        let digests = FileDigests(cache: dir + "/cache")
        let v1 = try #require(FileIdentity(path: file))
        let later = FileDigests.now() + 10 * FileDigests.settle   // the file has long settled by then
        #expect(digests.sha256(v1) == nil)
        #expect(digests.remember(a, before: v1, after: FileIdentity(path: file), started: later, path: file))
        #expect(digests.sha256(v1) == a)
        #expect(digests.sha256(try #require(FileIdentity(path: file))) == a)

        // Any write changes the identity (here the size; a same-size write changes the times).
        let h = try #require(FileHandle(forWritingAtPath: file))
        try h.seekToEnd()
        h.write(Data([4]))
        try h.close()
        let v2 = try #require(FileIdentity(path: file))
        #expect(v2 != v1)
        #expect(digests.sha256(v2) == nil)
        // Remembering the new version forgets the old one.
        #expect(digests.remember(b, before: v2, after: v2, started: later, path: file))
        #expect(digests.sha256(v2) == b && digests.sha256(v1) == nil)
        #expect(FileSystem.listDirectory(digests.directory).count == 1)

        // A file replaced by another (a new inode) is another file.
        try FileSystem.writeFile(dir + "/other.bin", [1, 2, 3, 4])
        #expect(rename(dir + "/other.bin", file) == 0)
        #expect(digests.sha256(try #require(FileIdentity(path: file))) == nil)
    }

    @Test func neverRemembersAFileThatChangedWhileOrJustBeforeItWasHashed() throws {
        let dir = try scratch()
        defer { FileSystem.removeTree(dir) }
        let file = dir + "/model.bin"
        try FileSystem.writeFile(file, [1, 2, 3])
        let digests = FileDigests(cache: dir + "/cache")
        let before = try #require(FileIdentity(path: file))
        try FileSystem.writeFile(file, [1, 2, 3, 4])
        let after = FileIdentity(path: file)
        let later = FileDigests.now() + 10 * FileDigests.settle
        #expect(!digests.remember(a, before: before, after: after, started: later, path: file))
        #expect(!digests.remember(a, before: before, after: nil, started: later, path: file))
        // Changed less than `settle` before the hash started: a write in the same tick could hide.
        let v = try #require(after)
        #expect(!digests.remember(a, before: v, after: v, started: v.changed + FileDigests.settle - 1, path: file))
        #expect(digests.remember(a, before: v, after: v, started: v.changed + FileDigests.settle, path: file))

        // A fresh file goes through `sha256(path:)` hashed every time, and is not remembered.
        var calls = 0
        for _ in 0..<2 {
            let r = try digests.sha256(path: dir + "/fresh.bin") { calls += 1; return b }
            #expect(r.sha256 == b && !r.remembered)
            try FileSystem.writeFile(dir + "/fresh.bin", [9])
        }
        #expect(calls == 2)
    }

    @Test func aDamagedEntryIsAMiss() throws {
        let dir = try scratch()
        defer { FileSystem.removeTree(dir) }
        let file = dir + "/model.bin"
        try FileSystem.writeFile(file, [1])
        let digests = FileDigests(cache: dir + "/cache")
        let v = try #require(FileIdentity(path: file))
        #expect(digests.remember(a, before: v, after: v, started: v.changed + FileDigests.settle, path: file))
        let entry = try #require(FileSystem.listDirectory(digests.directory).first)
        for damaged in ["", "abc", String(repeating: "A", count: 64), String(repeating: "g", count: 64)] {
            try FileSystem.writeFile(FileSystem.join(digests.directory, entry), Array(damaged.utf8))
            #expect(digests.sha256(v) == nil, "\(damaged)")
        }
    }
}
