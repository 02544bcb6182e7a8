// `ditkit inspect`: list what a checkpoint holds, without reading tensor data unless asked.
import ArgumentParser
import DiTKitCore
import DiTKitFormats

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the tensors, objects and metadata of a checkpoint or bundle.",
        discussion: """
        Reads .pt/.pth/.bin/.ckpt (torch zip or legacy stream), .safetensors and .ditkit bundles, \
        detected by content. Without --hash or --sha256 no tensor data is read. --hash prints the \
        checksum bundle manifests record for every source tensor (XXH3-128 since format version 3).
        """
    )

    @Argument(help: "The checkpoint file or .ditkit bundle.")
    var path: String

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    @Flag(help: "Add the XXH3-128 of every tensor's C-contiguous little-endian bytes (what bundle manifests record).")
    var hash = false

    @Flag(help: "Add the SHA-256 of every tensor's C-contiguous little-endian bytes.")
    var sha256 = false

    func run() throws {
        try reportingErrors {
            let c = try Checkpoint.open(path)
            var hashes: [(ChecksumAlgorithm, [String])] = []
            for (wanted, algorithm) in [(hash, ChecksumAlgorithm.xxh3_128), (sha256, .sha256)] where wanted {
                hashes.append((algorithm, try FileError.wrapping(path) { try TensorHashing.hashAll(c, algorithm) }))
            }
            if json {
                writeOut(JSONWriter.string(ContainerListing.json(c, hashes: hashes)))
            } else {
                writeOut(ContainerListing.table(c, hashes: hashes))
            }
        }
    }
}
