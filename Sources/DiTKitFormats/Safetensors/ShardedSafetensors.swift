// Sharded safetensors: an index (`diffusion_pytorch_model.safetensors.index.json`,
// `model.safetensors.index.json`) whose `weight_map` names the shard of every tensor, and the
// shards beside it. Every shard is validated as a safetensors file; the index must agree with the
// shards exactly (each mapped tensor in its shard, each shard tensor mapped, no name twice), and
// shard names must be plain file names in the index's folder.
import DiTKitCore

/// The tensors of several safetensors shards, as one container.
public final class ShardedSafetensors: TensorContainer, @unchecked Sendable {
    /// Largest index file read (the index of a 12 B-parameter model is under 200 kB).
    public static let maxIndexSize = 64 << 20
    /// Most shards accepted.
    public static let maxShards = 4096

    public let path: String
    public var format: ContainerFormat { .safetensors }
    public let tensors: [TensorEntry]
    public var objects: [(name: String, value: String)] { [] }
    /// The index's `metadata` (e.g. `total_size`) as strings, then each shard's `__metadata__`.
    public let metadata: [(key: String, value: String)]
    /// The shards in index order, and where each tensor lives (shard, index in that shard).
    public let shards: [SafetensorsFile]
    private let locations: [(shard: Int, index: Int)]

    /// Whether `path` names a sharded-safetensors index.
    public static func isIndex(_ path: String) -> Bool { path.hasSuffix(".safetensors.index.json") }

    /// Opens the index at `path` and every shard it names. Throws `CheckpointError`, `SafetensorsError`
    /// (wrapped in `FileError` naming the shard).
    public init(index path: String) throws {
        self.path = path
        guard let size = FileSystem.fileSize(path), size <= ShardedSafetensors.maxIndexSize else {
            throw CheckpointError.unrecognised("a safetensors index larger than \(ShardedSafetensors.maxIndexSize) bytes")
        }
        let json: JSONValue
        do { json = try JSONReader.parse(try FileSystem.readFile(path)) } catch let e as JSONError {
            throw CheckpointError.unrecognised("not a safetensors index: \(e.message) at byte \(e.offset)")
        }
        guard case .object(let map)? = json["weight_map"] else {
            throw CheckpointError.unrecognised("not a safetensors index: no \"weight_map\" object")
        }
        var order: [String] = []
        var byShard: [String: [String]] = [:]
        var seen = Set<String>()
        for (name, value) in map {
            guard case .string(let shard) = value else { throw CheckpointError.inconsistent("weight_map entry '\(name)' is not a file name") }
            guard !shard.isEmpty, !shard.contains("/"), shard != ".", shard != "..", shard.hasSuffix(".safetensors") else {
                throw CheckpointError.inconsistent("weight_map entry '\(name)' names '\(shard)', which is not a .safetensors file beside the index")
            }
            guard seen.insert(name).inserted else { throw CheckpointError.inconsistent("weight_map lists '\(name)' twice") }
            if byShard[shard] == nil { order.append(shard) }
            byShard[shard, default: []].append(name)
        }
        guard !order.isEmpty else { throw CheckpointError.inconsistent("the weight_map is empty") }
        guard order.count <= ShardedSafetensors.maxShards else { throw CheckpointError.inconsistent("\(order.count) shards (at most \(ShardedSafetensors.maxShards))") }
        order.sort()
        let dir = FileSystem.parentDirectory(path)
        var files: [SafetensorsFile] = []
        var entries: [TensorEntry] = []
        var where_: [(Int, Int)] = []
        var meta: [(key: String, value: String)] = []
        if case .object(let m)? = json["metadata"] {
            for (k, v) in m { meta.append((k, v.stringValue ?? JSONWriter.string(v, pretty: false))) }
        }
        for (s, shard) in order.enumerated() {
            let shardPath = dir + "/" + shard
            let file = try FileError.wrapping(shardPath) { try SafetensorsFile(file: MappedFile(path: shardPath)) }
            let mapped = Set(byShard[shard] ?? [])
            let inFile = Set(file.tensors.map(\.name))
            if let missing = mapped.subtracting(inFile).sorted().first {
                throw CheckpointError.inconsistent("the index maps '\(missing)' to \(shard), which does not hold it")
            }
            if let extra = inFile.subtracting(mapped).sorted().first {
                throw CheckpointError.inconsistent("\(shard) holds '\(extra)', which the index does not map to it")
            }
            for (i, t) in file.tensors.enumerated() {
                entries.append(t)
                where_.append((s, i))
            }
            meta += file.metadata
            files.append(file)
        }
        shards = files
        tensors = entries
        locations = where_
        metadata = meta
    }

    public func bytes(of index: Int) throws -> RawBytes {
        let l = locations[index]
        return try shards[l.shard].bytes(of: l.index)
    }

    public var mappedFiles: [MappedFile] { shards.flatMap(\.mappedFiles) }

    public func release(_ index: Int) {
        let l = locations[index]
        shards[l.shard].release(l.index)
    }

    public func verbatimRange(of index: Int) -> (file: MappedFile, range: Range<Int>)? {
        let l = locations[index]
        return shards[l.shard].verbatimRange(of: l.index)
    }
}

/// A diffusers model folder (`transformer/`, `vae/`): `config.json` beside its weights.
public enum DiffusersFolder {
    /// The weight files diffusers writes, most specific first.
    static let weightNames = ["diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors",
                              "model.safetensors.index.json", "model.safetensors", "diffusion_pytorch_model.bin"]

    /// The weights file (or shard index) of the model folder `dir`, if it is one.
    public static func weights(in dir: String) -> String? {
        weightNames.map { FileSystem.join(dir, $0) }.first { FileSystem.exists($0) && !FileSystem.isDirectory($0) }
    }

    /// The model folders of a diffusers pipeline folder (`transformer`, `vae`, …: subfolders with weights).
    public static func components(of dir: String) -> [String] {
        FileSystem.listDirectory(dir).sorted().filter { FileSystem.isDirectory(FileSystem.join(dir, $0)) && weights(in: FileSystem.join(dir, $0)) != nil }
    }
}
