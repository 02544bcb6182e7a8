// The `ditkit` command line. It parses arguments and prints; all work happens in the libraries.
import ArgumentParser
import DiTKitCore
#if canImport(Glibc)
import Glibc
#endif

@main
struct Ditkit: ParsableCommand {
    /// A full disk or a file-size limit makes write() fail with a clear error instead of killing
    /// the process with SIGXFSZ; a closed output pipe makes writes fail instead of SIGPIPE.
    static func main() {
        signal(SIGXFSZ, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        isolateHDF5()
        main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "ditkit",
        abstract: "Bring DiT and SD-VAE checkpoints out of PyTorch into a verified, memory-mapped native format.",
        discussion: """
        Exit status: 0 success, 1 a check found a mismatch, 2 input refused (unsafe, corrupt or \
        unsupported), 64 usage error, 74 output could not be written.
        """,
        version: DiTKitVersion.string,
        subcommands: [Inspect.self, Show.self, Convert.self, Check.self, Verify.self, Sample.self, Export.self, Pack.self, Unpack.self, ZooCommand.self, HDF5SnapshotCommand.self]
    )
}
