// Every reader fixture, made by torch.save / safetensors, against the listing and hashes torch computed.
import Testing
import DiTKitCore
import DiTKitFormats

@Suite struct ReaderFixtureTests {
    static let valid = [
        "dit_tiny.pt", "dit_tiny_p4.pt", "dit_tiny_legacy.pt", "dit_tiny_f16.pt", "dit_tiny_bf16.pt",
        "dit_tiny.safetensors", "dit_tiny_big_endian.pt", "train_checkpoint.pt", "views.pt", "views_legacy.pt",
    ]

    @Test(arguments: valid)
    func listingAndHashesMatchTorch(_ name: String) throws {
        let c = try Checkpoint.open(Fixtures.path("readers/" + name))
        let hashes = try TensorHashing.hashAll(c, .sha256)
        let got = ContainerListing.json(c, hashes: [(.sha256, hashes)])
        let expected = try Fixtures.json("readers/\(name).expected.json")
        #expect(got["format"] == expected["format"])
        let gotTensors = got["tensors"]?.arrayValue ?? []
        let expectedTensors = expected["tensors"]?.arrayValue ?? []
        #expect(gotTensors.count == expectedTensors.count)
        for (g, e) in zip(gotTensors, expectedTensors) {
            #expect(g == e, "tensor \(e["name"]?.stringValue ?? "?")")
        }
        #expect(got["objects"] == expected["objects"])
        #expect(got["metadata"] == expected["metadata"])
    }

    @Test func formatsAreDetectedByContentNotExtension() throws {
        // random_bytes.bin is refused; a safetensors file is found whatever its name.
        #expect(try Checkpoint.open(Fixtures.path("readers/dit_tiny.safetensors")).format == .safetensors)
        #expect(try Checkpoint.open(Fixtures.path("readers/dit_tiny_legacy.pt")).format == .torchLegacy)
        #expect(try Checkpoint.open(Fixtures.path("readers/dit_tiny.pt")).format == .torchZip)
    }

    @Test func trainCheckpointKeepsEverySubtreeAndObject() throws {
        let c = try Checkpoint.open(Fixtures.path("readers/train_checkpoint.pt"))
        let names = Set(c.tensors.map(\.name))
        #expect(names.contains("ema.blocks.0.attn.qkv.weight"))
        #expect(names.contains("model.pos_embed"))
        // pos_embed has requires_grad=False, so optimizer state starts at parameter 1.
        #expect(names.contains("opt.state.1.exp_avg"))
        #expect(names.contains("opt.state.1.step"))
        #expect(!names.contains("opt.state.0.exp_avg"))
        let objects = Dictionary(uniqueKeysWithValues: c.objects.map { ($0.name, $0.value) })
        #expect(objects["args.lr"] == "0.0001")
        #expect(objects["args.model"] == "DiT-S/2")
        #expect(objects["args.betas"] == "(0.9, 0.999)")
        // A list with no tensor inside is one object, printed as Python prints it.
        #expect(objects["opt.param_groups"]?.hasPrefix("[{'lr': 0.0001, 'betas': (0.9, 0.999), 'eps': 1e-08,") == true)
    }

    @Test func viewsAreReadAsContiguousTensors() throws {
        let c = try Checkpoint.open(Fixtures.path("readers/views.pt"))
        func floats(_ name: String) throws -> [Float] {
            let i = try #require(c.index(of: name))
            return try c.bytes(of: i).withElements(of: Float.self) { Array($0) }
        }
        #expect(try floats("transposed") == [0, 6, 12, 18, 1, 7, 13, 19, 2, 8, 14, 20, 3, 9, 15, 21, 4, 10, 16, 22, 5, 11, 17, 23])
        #expect(try floats("sliced") == [8, 9, 10, 14, 15, 16])
        #expect(try floats("row") == [12, 13, 14, 15, 16, 17])
        #expect(try floats("expanded") == [1.5, -2.5, 1.5, -2.5, 1.5, -2.5])
        #expect(try floats("scalar") == [3.25])
        #expect(try floats("empty") == [])
        let shape = c.tensors[try #require(c.index(of: "scalar"))].shape
        #expect(shape == [])
    }

    @Test func bigEndianStoragesAreSwapped() throws {
        let le = try Checkpoint.open(Fixtures.path("readers/dit_tiny.pt"))
        let be = try Checkpoint.open(Fixtures.path("readers/dit_tiny_big_endian.pt"))
        #expect(le.tensors == be.tensors)
        for i in le.tensors.indices {
            #expect(try le.bytes(of: i).array == be.bytes(of: i).array)
        }
    }

    @Test func refusedFixturesFailWithTheExpectedMessage() throws {
        let refused = try Fixtures.json("readers/refused.json")
        let cases = try #require(refused.objectValue)
        #expect(cases.count >= 12)
        for (name, message) in cases {
            let expected = try #require(message.stringValue)
            do {
                let c = try Checkpoint.open(Fixtures.path("readers/" + name))
                Issue.record("\(name) was accepted with \(c.tensors.count) tensors")
            } catch {
                let text = String(describing: error)
                #expect(text.contains(expected), "\(name): \(text)")
                #expect(text.hasPrefix(Fixtures.path("readers/" + name) + ":"), "error names the file: \(text)")
                #expect(!text.contains("\n"), "one line: \(text)")
            }
        }
    }
}
