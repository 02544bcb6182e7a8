// `ditkit hdf5-snapshot FILE` (hidden): reads an HDF5 file with libhdf5 in this separate process and
// writes its datasets to standard output as frames (see DiTKitFormats/HDF5/HDF5Snapshot.swift), so
// that a libhdf5 crash on a malformed file cannot take the main process with it.
import ArgumentParser
import DiTKitCore
import DiTKitFormats
#if canImport(Glibc)
import Glibc
#endif

struct HDF5SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hdf5-snapshot", shouldDisplay: false)

    @Flag var attributesOnly = false
    @Argument var path: String

    func run() throws {
        do {
            let frames = try HDF5Snapshot.encode(path, datasets: !attributesOnly)
            try frames.withUnsafeBytes { try FileSystem.writeAll(fd: 1, $0, path: "standard output") }
        } catch {
            // The parent reads the reason from the frames (it discards this process's stderr).
            _ = try? HDF5Snapshot.refusal("\(error)").withUnsafeBytes { try FileSystem.writeAll(fd: 1, $0, path: "standard output") }
            printError("ditkit: error: \(path): \(error)")
            throw Exit.refused
        }
    }
}

/// Makes every HDF5 input go through a child process running `hdf5-snapshot`.
func isolateHDF5() {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, 4095)
    guard n > 0 else { return }
    HDF5Snapshot.helper = [String(cString: buf), "hdf5-snapshot"]
}
