// The whole-file SHA-256 fed with the bytes converters read: the same digest as reading the file,
// whatever the order and pace of the converters, with and without the bytes they lend it.
import Testing
import Foundation
import Dispatch
import DiTKitCore
@testable import DiTKitConvert
#if canImport(Glibc)
import Glibc
#endif

@Suite struct HashFeedTests {
    /// A file of `size` bytes of a fixed pattern; its path and descriptor.
    private func file(_ dir: String, size: Int) throws -> (String, Int32) {
        var bytes = [UInt8](repeating: 0, count: size)
        var x: UInt32 = 2463534242
        for i in bytes.indices { x ^= x << 13; x ^= x >> 17; x ^= x << 5; bytes[i] = UInt8(truncatingIfNeeded: x) }
        let path = dir + "/f.bin"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return (path, open(path, O_RDONLY))
    }

    /// Converters read `pieces` (offset, count) of the file, in the order given, spread over
    /// `converters` threads, lending each to the feed as conversion does; returns the feed's
    /// digest and the bytes it took from the converters.
    private func hash(_ path: String, _ fd: Int32, size: Int, pieces: [(Int, Int)], converters: Int, slotBytes: Int) throws -> (String, Int) {
        let feed = HashFeed(files: [0], slots: 3, slotBytes: slotBytes)
        let next = AtomicCounter()
        let errors = ErrorBox()
        let digest = Locked<String?>(nil)
        // Threads of their own: the hash and the converters run at the same time, whatever else runs.
        let largest = pieces.map(\.1).max() ?? 0
        let finished = DispatchSemaphore(value: 0)
        for _ in 0..<converters {
            Thread {
                defer { finished.signal() }
                let own = UnsafeMutableRawPointer.allocate(byteCount: max(1, largest), alignment: 64)
                defer { own.deallocate() }
                while true {
                    let k = next.increment()
                    guard k < pieces.count else { return }
                    let (offset, count) = pieces[k]
                    let lent = feed.borrow(file: 0, offset: offset, count: count, cancelled: { errors.hasError })
                    do {
                        try RegularFile.read(fd, into: lent?.pointer ?? own, count: count, at: offset, path: path)
                        usleep(UInt32(k % 3) * 200)   // converting
                        if let lent { feed.publish(lent.slot, count: count) }
                    } catch {
                        if let lent { feed.withdraw(lent.slot) }
                        errors.set(error)
                    }
                }
            }.start()
        }
        do {
            defer { feed.close() }
            // The hash is the slower side, as in a conversion (SHA-256 against a copy).
            let d = try feed.sha256(file: 0, descriptor: fd, count: size, path: path, stride: 1 << 16,
                                    pace: { _ in usleep(300) }, cancelled: { errors.hasError })
            digest.withLock { $0 = d }
        } catch { errors.set(error) }
        for _ in 0..<converters { finished.wait() }
        if let e = errors.error { throw e }
        return (try #require(digest.withLock { $0 }), feed.fedBytes)
    }

    @Test(arguments: [1, 2, 3])
    func theDigestIsTheFilesWhateverTheConvertersRead(_ converters: Int) throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let size = 3_000_017
        let (path, fd) = try file(dir, size: size)
        defer { close(fd) }
        let truth = try SHA256Hasher.hex(file: path)
        // Tensors of a container: a header, tensors in steps, gaps between them.
        var inOrder: [(Int, Int)] = []
        var at = 1234
        while at < size - 100_000 {
            let n = min(at % 3 == 0 ? 250_000 : 90_001, size - at)
            inOrder.append((at, n))
            at += n + (at % 5 == 0 ? 777 : 0)
        }
        var shuffled = inOrder
        var r = SeededRandom(seed: 7)
        for i in shuffled.indices.reversed() where i > 0 { shuffled.swapAt(i, Int(r.next() % UInt64(i + 1))) }
        let (ordered, fedOrdered) = try hash(path, fd, size: size, pieces: inOrder, converters: converters, slotBytes: 1 << 18)
        #expect(ordered == truth)
        #expect(fedOrdered > 0)   // the hash took bytes from the converters
        #expect(try hash(path, fd, size: size, pieces: shuffled, converters: converters, slotBytes: 1 << 18).0 == truth)
        // Pieces larger than a slot are not lent; overlapping and repeated pieces change nothing.
        #expect(try hash(path, fd, size: size, pieces: inOrder, converters: converters, slotBytes: 1 << 16) == (truth, 0))
        #expect(try hash(path, fd, size: size, pieces: inOrder + inOrder.map { ($0.0 + 11, $0.1 / 2) }, converters: converters, slotBytes: 1 << 18).0 == truth)
    }
}
