// Atomic outputs: temporaries of dead writers are removed by the next output in their directory,
// and never while their writer holds its lock.
import Testing
import Foundation
import DiTKitCore

@Suite struct OutputTests {
    /// Two process ids no process has right now.
    func deadPIDs() throws -> (Int32, Int32) {
        let free = (20_000..<32_000).reversed().lazy.map(Int32.init).filter { kill($0, 0) != 0 && errno == ESRCH }
        let two = Array(free.prefix(2))
        try #require(two.count == 2)
        return (two[0], two[1])
    }

    @Test func staleTemporariesGoOnlyWhenTheirWriterIsGone() throws {
        let dir = NSTemporaryDirectory() + "ditkit-output-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { FileSystem.removeTree(dir) }
        let kind = OutputKind("a test output", directory: true) { _ in nil }
        let (dead, deadToo) = try deadPIDs()
        // A dead writer's temporaries, for any output name, directory or file.
        try FileManager.default.createDirectory(atPath: dir + "/.a.ditkit.partial-\(dead)", withIntermediateDirectories: false)
        try FileSystem.writeFile(dir + "/.b.gguf.partial-\(dead)", [1])
        // A live writer whose temporary looks like a dead process's (as a writer in another PID
        // namespace sharing the directory would): its lock keeps it.
        let live = try AtomicOutput(finalPath: dir + "/c.ditkit", kind: kind, force: false)
        let disguised = dir + "/.c.ditkit.partial-\(deadToo)"
        #expect(rename(live.temporaryPath, disguised) == 0)
        // A previous output moved aside by a commit that died halfway goes back into place.
        try FileSystem.writeFile(dir + "/.d.h5.partial-\(dead).old", [7])
        // Not DiTKit's: left alone.
        try FileSystem.writeFile(dir + "/.notes.partial-draft", [2])

        let other = try AtomicOutput(finalPath: dir + "/e.ditkit", kind: kind, force: false)
        other.discard()
        #expect(FileSystem.listDirectory(dir).sorted() == [".c.ditkit.partial-\(deadToo)", ".notes.partial-draft", "d.h5"])
        #expect(try FileSystem.readFile(dir + "/d.h5") == [7])
        live.discard()
        let last = try AtomicOutput(finalPath: dir + "/e.ditkit", kind: kind, force: false)
        last.discard()
        #expect(FileSystem.listDirectory(dir).sorted() == [".notes.partial-draft", "d.h5"])
    }
}
