// Sharded safetensors and diffusers model folders: the shards diffusers' save_pretrained wrote
// read as one container, and every disagreement between the index and its shards refused.
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats

@Suite struct ShardedSafetensorsTests {
    static let sharded = Fixtures.path("pixart/sigma_sharded")
    static let single = Fixtures.path("pixart/sigma/transformer/diffusion_pytorch_model.safetensors")

    @Test func shardsReadAsTheSingleFileDoes() throws {
        let s = try Checkpoint.open(Self.sharded + "/diffusion_pytorch_model.safetensors.index.json")
        let one = try Checkpoint.open(Self.single)
        #expect(s.tensors.count == one.tensors.count)
        #expect((s as? ShardedSafetensors)?.shards.count == 3)
        for (i, t) in one.tensors.enumerated() {
            let j = try #require(s.index(of: t.name))
            #expect(s.tensors[j] == t)
            #expect(try s.sha256(of: j) == one.sha256(of: i), "\(t.name)")
        }
        // The model folder opens its index; the file's own folder opens its single file.
        #expect(try Checkpoint.open(Self.sharded).tensors.count == one.tensors.count)
        #expect(try Checkpoint.open(FileSystem.parentDirectory(Self.single)).path == Self.single)
    }

    /// Copies the shards into a fresh folder with `index` as the index text.
    func withIndex(_ edit: (JSONValue) -> String) throws -> String {
        let dir = NSTemporaryDirectory() + "ditkit-shards-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in FileSystem.listDirectory(Self.sharded) where f.hasSuffix(".safetensors") {
            try FileManager.default.copyItem(atPath: Self.sharded + "/" + f, toPath: dir + "/" + f)
        }
        let index = try JSONReader.parse(try FileSystem.readFile(Self.sharded + "/diffusion_pytorch_model.safetensors.index.json"))
        try FileSystem.writeFile(dir + "/diffusion_pytorch_model.safetensors.index.json", Array(edit(index).utf8))
        return dir
    }

    @Test func indexAndShardsMustAgree() throws {
        let index = try JSONReader.parse(try FileSystem.readFile(Self.sharded + "/diffusion_pytorch_model.safetensors.index.json"))
        guard case .object(let map)? = index["weight_map"] else { Issue.record("no weight_map"); return }
        let (first, shard) = (map[0].0, map[0].1.stringValue ?? "")
        func indexText(_ entries: [(String, JSONValue)]) -> String {
            JSONWriter.string(.object([("metadata", .object([])), ("weight_map", .object(entries))]))
        }
        let otherShard = map.first { $0.1.stringValue != shard }?.1 ?? .null
        let cases: [(String, String)] = [
            (indexText(Array(map.dropFirst())), "does not map"),                                  // a shard tensor the index forgets
            (indexText(map + [("ghost.weight", .string(shard))]), "does not hold it"),            // a mapped tensor the shard lacks
            (indexText([(first, otherShard)] + map.dropFirst()), "does not hold it"),             // mapped to the wrong shard
            (indexText([(first, .string("../" + shard))] + map.dropFirst()), "not a .safetensors file beside the index"),
            (indexText([(first, .string("/etc/passwd"))] + map.dropFirst()), "not a .safetensors file beside the index"),
            (indexText([(first, .int(3))] + map.dropFirst()), "not a file name"),
            (indexText([]), "empty"),
            ("{\"metadata\": {}}", "no \"weight_map\""),
            ("not json", "not a safetensors index"),
        ]
        for (text, message) in cases {
            let dir = try withIndex { _ in text }
            defer { FileSystem.removeTree(dir) }
            do {
                _ = try Checkpoint.open(dir + "/diffusion_pytorch_model.safetensors.index.json")
                Issue.record("accepted: \(message)")
            } catch {
                let s = String(describing: error)
                #expect(s.contains(message) && s.contains("index.json"), "\(s)")
                #expect(!s.contains("\n"))
            }
        }
        // JSON refuses duplicate names itself.
        let dir = try withIndex { _ in "{\"weight_map\": {\"\(first)\": \"\(shard)\", \"\(first)\": \"\(shard)\"}}" }
        defer { FileSystem.removeTree(dir) }
        #expect(throws: (any Error).self) { _ = try Checkpoint.open(dir + "/diffusion_pytorch_model.safetensors.index.json") }
    }

    @Test func aPipelineFolderNamesItsModels() throws {
        do {
            _ = try Checkpoint.open(Fixtures.path("pixart/sigma"))
            Issue.record("a pipeline folder opened as one checkpoint")
        } catch {
            #expect(String(describing: error).contains("pixart/sigma/transformer"))
        }
    }
}
