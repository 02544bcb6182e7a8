// Faults: interrupted writers, a full disk, bit flips, and readers racing a replacement.
import Testing
import Foundation
import DiTKitCore

@Suite(.serialized) struct FaultTests {
    /// Starts `ditkit args` with its output discarded.
    func launch(_ args: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Tool.binary)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// Starts `ditkit args`, kills it with `signal` after `delay` microseconds, and waits.
    func interrupt(_ args: [String], after delay: useconds_t, signal: Int32) throws {
        let p = try launch(args)
        usleep(delay)
        kill(p.processIdentifier, signal)
        p.waitUntilExit()
    }

    @Test func interruptedExportsAndPacksNeverLeaveAPartialFile() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let b = dir + "/m.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("verify/vae_verify/diffusion_pytorch_model.safetensors"), "-o", b]).status == 0)
        // The complete outputs (exports are deterministic, so any complete file equals these).
        var expected: [String: [UInt8]] = [:]
        let jobs: [(String, [String])] = [
            ("m.gguf", ["export", b, "--to", "gguf", "--gguf-type", "f16"]),
            ("m.h5", ["export", b, "--to", "hdf5"]),
            ("m.safetensors", ["export", b, "--to", "safetensors"]),
            ("m.ditkit.zst", ["pack", b, "--level", "19"]),
        ]
        for (name, args) in jobs {
            #expect(try Tool.run(args + ["-o", dir + "/ref-" + name]).status == 0)
            expected[name] = try FileSystem.readFile(dir + "/ref-" + name)
        }
        for (name, args) in jobs {
            for k in 0..<8 {
                try interrupt(args + ["-o", dir + "/" + name, "--force"], after: useconds_t(3_000 * k), signal: k % 2 == 0 ? SIGKILL : SIGTERM)
                if FileSystem.exists(dir + "/" + name) {
                    #expect(try FileSystem.readFile(dir + "/" + name) == expected[name], "\(name) after a kill at step \(k) is complete")
                }
            }
        }
        // Unpack: the restored bundle is either absent or complete and verified.
        for k in 0..<8 {
            try interrupt(["unpack", dir + "/ref-m.ditkit.zst", "-o", dir + "/restore", "--force"], after: useconds_t(4_000 * k), signal: SIGKILL)
            let restored = dir + "/restore/m.ditkit"   // the name it was packed under
            if FileSystem.exists(restored) {
                #expect(try Tool.run(["check", restored]).status == 0)
            }
        }
    }

    /// Starts `ditkit args` and stops it (SIGSTOP) as soon as a temporary appears in `dir`; returns the
    /// stopped process and the temporary's name, or nil when the run finished first.
    func stopMidWrite(_ args: [String], in dir: String) throws -> (Process, String)? {
        let before = Set(FileSystem.listDirectory(dir))
        let p = try launch(args)
        while p.isRunning {
            if let t = FileSystem.listDirectory(dir).first(where: { !before.contains($0) && $0.contains(".partial-") }) {
                kill(p.processIdentifier, SIGSTOP)
                // Still a temporary while stopped: the run is caught in the middle.
                if FileSystem.exists(dir + "/" + t) { return (p, t) }
                kill(p.processIdentifier, SIGCONT)
            }
        }
        p.waitUntilExit()
        return nil
    }

    @Test func anyRunThatWritesIntoADirectoryRemovesTheTemporariesOfKilledRuns() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let source = Tool.fixture("convert/vae_ldm.ckpt")
        // A conversion killed with SIGKILL in the middle leaves its temporary.
        var caught: (Process, String)?
        for _ in 0..<50 where caught == nil {
            FileSystem.removeTree(dir + "/killed.ditkit")
            caught = try stopMidWrite(["convert", source, "-o", dir + "/killed.ditkit", "--dtype", "int8"], in: dir)
        }
        let (killed, partial) = try #require(caught, "never caught a conversion in the middle")
        #expect(partial.hasPrefix(".killed.ditkit.partial-"))
        kill(killed.processIdentifier, SIGKILL)
        killed.waitUntilExit()
        #expect(FileSystem.exists(dir + "/" + partial))
        // A run that is alive (stopped, here) keeps its temporary whatever else runs beside it.
        var stopped: (Process, String)?
        for _ in 0..<50 where stopped == nil {
            FileSystem.removeTree(dir + "/alive.ditkit")
            stopped = try stopMidWrite(["convert", source, "-o", dir + "/alive.ditkit"], in: dir)
        }
        let (alive, livePartial) = try #require(stopped, "never caught a conversion in the middle")
        defer { if alive.isRunning { kill(alive.processIdentifier, SIGKILL) } }
        // Another command writing another output into the same directory cleans up the dead run's
        // temporary, and only that.
        let other = try Tool.run(["convert", Tool.fixture("verify/dit_verify.pt"), "-o", dir + "/other.ditkit"])
        #expect(other.status == 0, "\(other.stderr)")
        #expect(!FileSystem.exists(dir + "/" + partial), "the killed run's temporary is removed")
        #expect(FileSystem.exists(dir + "/" + livePartial), "a live run's temporary is left alone")
        kill(alive.processIdentifier, SIGCONT)
        alive.waitUntilExit()
        #expect(alive.terminationStatus == 0)
        #expect(try Tool.run(["check", dir + "/alive.ditkit"]).status == 0)
        #expect(FileSystem.listDirectory(dir) == ["alive.ditkit", "other.ditkit"])
        // The same for an export into a directory holding a killed run's temporary file.
        let exports = dir + "/exports"
        try FileManager.default.createDirectory(atPath: exports, withIntermediateDirectories: true)
        var file: (Process, String)?
        for _ in 0..<50 where file == nil {
            FileSystem.removeTree(exports + "/m.h5")
            file = try stopMidWrite(["export", dir + "/other.ditkit", "--to", "hdf5", "-o", exports + "/m.h5"], in: exports)
        }
        if let (p, t) = file {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            #expect(FileSystem.exists(exports + "/" + t))
            #expect(try Tool.run(["export", dir + "/other.ditkit", "--to", "safetensors", "-o", exports + "/m.safetensors"]).status == 0)
            #expect(FileSystem.listDirectory(exports) == ["m.safetensors"])
        }
    }

    @Test func interruptedFetchNeverLeavesAFileUnderTheFinalName() throws {
        let cache = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(cache) }
        let s = try LoopbackServer(files: ["dit_verify.pt": Tool.fixture("verify/dit_verify.pt")])
        defer { s.stop() }
        let args = ["zoo", "fetch", "test-dit", "--url", s.url("range", "dit_verify.pt"), "--manifests", Tool.fixture("zoo/Manifests"), "--cache", cache]
        let final = cache + "/zoo/test-dit/dit_verify.pt"
        for k in 0..<10 {
            FileSystem.removeTree(final)
            try interrupt(args, after: useconds_t(2_000 * k), signal: SIGKILL)
            if FileSystem.exists(final) {
                #expect(try FileSystem.readFile(final) == FileSystem.readFile(Tool.fixture("verify/dit_verify.pt")))
            }
        }
        #expect(try Tool.run(args).status == 0)
    }

    @Test func fullDiskGivesAClearErrorAndLeavesNothing() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        // A size-limited file system, by RLIMIT_FSIZE (no privileges needed): writes past 256 KiB fail.
        let cases: [[String]] = [
            ["convert", Tool.fixture("verify/dit_verify.pt"), "-o", dir + "/full.ditkit"],
            ["convert", Tool.fixture("verify/dit_verify.pt"), "-o", dir + "/full16.ditkit", "--dtype", "f16"],
        ]
        for args in cases {
            let r = try Tool.run(["sh", "-c", "ulimit -f 512; exec \"$@\"", "sh", Tool.binary] + args, viaShell: true)
            #expect(r.status == 74, "\(args): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains("File too large") || r.stderr.contains("No space"), "\(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1)
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty, "nothing left behind")
        }
        // A real small tmpfs where the test may mount one (root with CAP_SYS_ADMIN).
        let mnt = dir + "/tmpfs"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        if (try? Tool.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", mnt], viaShell: true))?.status == 0 {
            defer { _ = try? Tool.run(["umount", mnt], viaShell: true) }
            let r = try Tool.run(["convert", Tool.fixture("verify/dit_verify.pt"), "-o", mnt + "/x.ditkit"])
            #expect(r.status == 74, "\(r.stderr)")
            #expect(r.stderr.contains("No space left on device"), "\(r.stderr)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: mnt).isEmpty)
        }
    }

    @Test func aBitFlipAnywhereIsCaughtByCheck() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let b = dir + "/m.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("verify/dit_verify.pt"), "-o", b, "--dtype", "int8"]).status == 0)
        let path = b + "/weights.bin"
        let size = try #require(FileSystem.fileSize(path))
        var rng = SeededRandom(seed: 99)
        for _ in 0..<40 {
            let offset = Int(rng.next() % UInt64(size))
            let h = try FileHandle(forUpdating: URL(fileURLWithPath: path))
            try h.seek(toOffset: UInt64(offset))
            let original = try #require(try h.read(upToCount: 1))[0]
            try h.seek(toOffset: UInt64(offset))
            h.write(Data([original ^ (1 << UInt8(offset % 8))]))
            try h.close()
            let r = try Tool.run(["check", b])
            #expect(r.status == 1, "flip at \(offset) not caught")
            #expect(r.stdout.contains("MISMATCH"), "\(r.stdout)")
            let h2 = try FileHandle(forUpdating: URL(fileURLWithPath: path))
            try h2.seek(toOffset: UInt64(offset))
            h2.write(Data([original]))
            try h2.close()
        }
        #expect(try Tool.run(["check", b]).status == 0)
    }

    @Test func readersRacingAReplacementSeeOldOrNewNeverAMix() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let b = dir + "/m.ditkit"
        #expect(try Tool.run(["convert", Tool.fixture("verify/dit_verify.pt"), "-o", b]).status == 0)
        // A writer replaces the bundle again and again, alternating dtypes, while a reader checks it.
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/bin/sh")
        writer.arguments = ["-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do for d in f16 int8 bf16; do \"$0\" convert \"$1\" -o \"$2\" --dtype $d --force >/dev/null || exit 1; done; done",
                            Tool.binary, Tool.fixture("verify/dit_verify.pt"), b]
        try writer.run()
        var checks = 0
        while writer.isRunning {
            let r = try Tool.run(["check", b])
            #expect(r.status == 0, "check during a replacement: \(r.stdout) \(r.stderr)")
            checks += 1
        }
        writer.waitUntilExit()
        #expect(writer.terminationStatus == 0)
        #expect(checks > 3)
    }
}
