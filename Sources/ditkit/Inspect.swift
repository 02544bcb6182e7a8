// `ditkit inspect`: list what a checkpoint holds, without reading tensor data unless asked.
import ArgumentParser
import DiTKitCore
import DiTKitFormats

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the tensors, objects and metadata of a checkpoint or bundle.",
        discussion: """
        Reads .pt/.pth/.bin/.ckpt (torch zip or legacy stream), .safetensors and .ditkit bundles, \
        detected by content. Without --hash no tensor data is read.
        """
    )

    @Argument(help: "The checkpoint file or .ditkit bundle.")
    var path: String

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    @Flag(help: "Add the SHA-256 of every tensor's C-contiguous little-endian bytes.")
    var hash = false

    func run() throws {
        try reportingErrors {
            let c = try Checkpoint.open(path)
            var hashes: [String] = []
            if hash {
                hashes = try FileError.wrapping(path) { try TensorHashing.hashAll(c) }
            }
            if json {
                writeOut(JSONWriter.string(ContainerListing.json(c, hashes: hash ? hashes : nil)))
            } else {
                writeOut(ContainerListing.table(c, hashes: hash ? hashes : nil))
            }
        }
    }
}
