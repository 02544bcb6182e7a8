// Writing a bundle: records are written with pwrite at precomputed aligned offsets (so workers
// can write in any order), gaps stay zero, and the directory appears under its final name only
// when the manifest and its checksum are complete.
#if canImport(Glibc)
import Glibc
#endif
import DiTKitCore
import CDiTKitSupport

public final class BundleWriter: @unchecked Sendable {
    public let output: AtomicOutput
    public let alignment: Int
    private let fd: Int32
    private var closed = false
    private let weightsPath: String
    /// Whether `finish` waits for the bundle to reach stable storage before moving it into place.
    public let durable: Bool
    /// Writes to one file serialise on its inode lock in the kernel, where a second writer spins;
    /// here it sleeps instead.
    private let writing = Locked<Void>(())

    /// Prepares `path` (a directory) for writing. Throws `OutputError.exists` without `force`, and
    /// `OutputError.notReplaceable` when `path` holds something that is not a DiTKit bundle.
    /// With `durable` false the bundle is moved into place without waiting for the disk (no `fsync`,
    /// no early writeback), as `cp` and `safetensors.save_file` do: faster, but an operating system
    /// crash or power loss before the kernel writes it back can leave a bundle whose weights do not
    /// match their checksums (`ditkit check` finds them).
    public init(path: String, force: Bool, alignment: Int = BundleManifest.defaultAlignment, durable: Bool = true) throws {
        output = try AtomicOutput(finalPath: path, kind: .bundle, force: force)
        self.alignment = alignment
        self.durable = durable
        weightsPath = output.temporaryPath + "/" + BundleManifest.weightsFile
        fd = open(weightsPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw OutputError.system(SystemError("open", path: weightsPath)) }
    }

    /// Aligned offsets for records of the given byte sizes, in order, and the total size.
    public func layout(_ sizes: [Int]) throws -> (offsets: [Int], total: Int) {
        var offsets: [Int] = []
        var position = 0
        for s in sizes {
            position = try Checked.alignUp(position, alignment)
            offsets.append(position)
            position = try Checked.add(position, s)
        }
        return (offsets, position)
    }

    /// Writes `bytes` at `offset` of `weights.bin`. Safe to call from several threads.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        try writing.withLock { _ in try writeLocked(bytes, at: offset) }
    }

    private func writeLocked(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw OutputError.system(SystemError("write", path: output.finalPath + "/" + BundleManifest.weightsFile))
            }
            if n == 0 { throw OutputError.shortWrite(path: weightsPath, expected: bytes.count, written: done) }
            done += n
        }
    }

    /// Starts writing `range` of `weights.bin` back to the disk now (sync_file_range), so that the
    /// final `fsync` in `finish` does not wait for the whole file. A hint; failures are ignored.
    /// Nothing when the bundle is not `durable`.
    public func writeBehind(_ range: Range<Int>) {
        if durable && range.count > 0 { _ = ditkit_write_behind(fd, Int64(range.lowerBound), Int64(range.count)) }
    }

    /// Sets the final size, writes the manifest and its checksum, syncs (when `durable`), and moves the
    /// bundle into place.
    public func finish(_ manifest: BundleManifest) throws {
        guard ftruncate(fd, off_t(manifest.weightsBytes)) == 0 else {
            throw OutputError.system(SystemError("ftruncate", path: weightsPath))
        }
        guard !durable || FileSystem.sync(fd, path: weightsPath) else { throw OutputError.system(SystemError("fsync", path: weightsPath)) }
        closed = true
        guard close(fd) == 0 else { throw OutputError.system(SystemError("close", path: weightsPath)) }
        let text = JSONWriter.bytes(manifest.json)
        try FileSystem.writeFile(output.temporaryPath + "/" + BundleManifest.manifestFile, text, sync: durable)
        let digest = text.withUnsafeBytes { SHA256Hasher.hex($0) }
        try FileSystem.writeFile(output.temporaryPath + "/" + BundleManifest.checksumFile, Array("\(digest)  \(BundleManifest.manifestFile)\n".utf8), sync: durable)
        try output.commit(sync: durable)
    }

    /// Abandons the bundle: nothing is left under the final path.
    public func discard() {
        if !closed { closed = true; close(fd) }
        output.discard()
    }

    deinit { discard() }
}
