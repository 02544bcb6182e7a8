// The independent check on every reader: the corpus of tools/make_torch_corpus.py (torch.save,
// safetensors and hand-assembled files in every layout torch loads), against the values the real
// loaders read (torch.load(weights_only=True), safetensors.torch.load_file). `verify --against`
// reads both sides through DiTKit and cannot catch a reader bug; this can.
import Testing
import DiTKitCore
import DiTKitFormats

@Suite struct TorchCorpusTests {
    static let entries: [(String, JSONValue)] = {
        (try? Fixtures.json("corpus/expected.json").objectValue) ?? []
    }()
    static let names = entries.map(\.0)

    @Test func theCorpusIsThere() {
        #expect(Self.entries.count >= 40)
        let refused = Self.entries.filter { $0.1["refused"] != nil }.count
        #expect(refused >= 6, "the corpus also holds files torch refuses")
    }

    /// Every file torch loads is read to the same tensors (names, dtypes, shapes, bytes); every
    /// file torch refuses is refused. A deliberate difference is listed in the corpus with the text
    /// of DiTKit's refusal.
    @Test(arguments: names)
    func readsWhatTorchReads(_ name: String) throws {
        let expected = try #require(Self.entries.first { $0.0 == name }?.1)
        let path = Fixtures.path("corpus/" + name)
        if let torchError = expected["refused"]?.stringValue {
            #expect(throws: (any Error).self, "torch refuses \(name) (\(torchError)); so must DiTKit") {
                let c = try Checkpoint.open(path)
                _ = try TensorHashing.hashAll(c, .sha256)
            }
            return
        }
        if let ours = expected["ditkit_refuses"]?.stringValue {
            do {
                let c = try Checkpoint.open(path)
                Issue.record("\(name): accepted with \(c.tensors.count) tensors; DiTKit refuses it on purpose (\(ours))")
            } catch {
                #expect(String(describing: error).contains(ours), "\(name): \(error)")
            }
            return
        }
        let c = try Checkpoint.open(path)
        #expect(c.format.rawValue == expected["format"]?.stringValue)
        let tensors = try #require(expected["tensors"]?.arrayValue)
        #expect(c.tensors.map(\.name) == tensors.map { $0["name"]?.stringValue ?? "?" }, "\(name): names in file order")
        let hashes = try TensorHashing.hashAll(c, .sha256)
        for (k, t) in c.tensors.enumerated() {
            guard let e = tensors.first(where: { $0["name"]?.stringValue == t.name }) else { continue }
            #expect(t.dtype.name == e["dtype"]?.stringValue, "\(name): \(t.name) dtype")
            #expect(t.shape == e["shape"]?.arrayValue?.compactMap(\.intValue), "\(name): \(t.name) shape")
            let want = e["sha256"]?.stringValue
            #expect(hashes[k] == want, "\(name): \(t.name) holds other values than torch reads")
            // The materialised bytes and the in-kernel copy range (what convert uses) agree too.
            #expect(SHA256Hasher.hex(try c.bytes(of: k)) == want, "\(name): \(t.name) bytes(of:)")
            if let v = c.verbatimRange(of: k) {
                #expect(SHA256Hasher.hex(v.file.slice(v.range)) == want, "\(name): \(t.name) verbatim range")
            }
        }
    }
}
