// `convert --dtype auto --min-sqnr DB [--max-size BYTES]`: per-tensor types from measured candidates,
// confirmed at the output with verify --against, the worst tensors tightened on a miss, and the
// manifest recording every candidate and the reason each type won.
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats
import DiTKitModels
@testable import DiTKitConvert
import DiTKitVerify

@Suite struct AutoPrecisionTests {
    func auto(_ folder: String, _ out: String, _ db: Double, maxSize: Int? = nil) throws -> NativeBundle {
        var o = ConversionOptions()
        o.dtype = .auto
        o.auto = AutoPrecisionOptions(minSQNR: db, maxSize: maxSize)
        _ = try Converter.convert(source: folder, output: out, options: o)
        return try NativeBundle(path: out)
    }

    @Test func choicesMeetTheBudgetAndAreRecorded() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let folder = try WideModels.folder("flux", in: dir)
        let source = try LoadedModel.open(folder)
        for db in [20.0, 32.0] {
            let b = try auto(folder, dir + "/a\(Int(db)).ditkit", db)
            let record = try #require(b.manifest.dtypePolicy["auto"])
            #expect(b.manifest.dtypePolicy["dtype"]?.stringValue == "auto")
            #expect(record["min_sqnr_db"] == .double(db))
            // Confirmed: the last round passed, and an independent verify agrees.
            let rounds = record["confirmation"]?.arrayValue ?? []
            #expect(rounds.last?["passed"] == .bool(true))
            let r = try Verifier.verify(try LoadedModel.open(dir + "/a\(Int(db)).ditkit"), against: source)
            let out = try #require(r.layers.first { $0.name == "output" })
            #expect(out.sqnrDB >= db, "\(db): \(out.sqnrDB)")
            #expect(rounds.last?["output_sqnr_db"]?.doubleValue == out.sqnrDB)
            // Every quantizable tensor: its candidates measured as BlockConversion measures them, the
            // chosen one the smallest reaching the target (min_sqnr_db, unless tightened), in the bundle.
            let policy = try ModelConfiguration(family: "flux", json: b.manifest.config).blockPolicy
            let weights = try LoadedModel.open(folder).weights
            var tightened = 0
            for t in record["tensors"]?.arrayValue ?? [] {
                let name = try #require(t["name"]?.stringValue)
                let stored = try #require(b.record(name)).stored
                let reason = t["reason"]?.stringValue ?? ""
                if let why = policy.keepReason(name, shape: stored.shape) {
                    #expect(reason == "kept: \(why)" && t["dtype"]?.stringValue == "kept", "\(name)")
                    continue
                }
                let candidates = t["candidates"]?.arrayValue ?? []
                #expect(candidates.map { $0["type"]?.stringValue ?? "" } == AutoPrecision.candidates.map(\.name), "\(name)")
                let values = try weights.floats(name)
                for c in candidates.prefix(3) {
                    let type = try #require(DType(rawValue: c["type"]?.stringValue ?? ""))
                    let q = try values.withUnsafeBufferPointer { try BlockConversion.quantize($0, shape: stored.shape, to: type) }
                    #expect(c["sqnr_db"]?.doubleValue == q.error.sqnrDB, "\(name) \(type.name)")
                }
                #expect(t["dtype"]?.stringValue == stored.dtype.name || (t["dtype"]?.stringValue == "kept" && stored.dtype.block == nil))
                if reason.hasPrefix("tightened") { tightened += 1; continue }
                #expect(reason == "smallest candidate with SQNR ≥ \(NumberFormat.fixed(db, 2)) dB", "\(name): \(reason)")
                let ok = candidates.filter { ($0["sqnr_db"]?.doubleValue ?? .infinity) >= db }
                let cheapest = ok.map { $0["bytes"]?.intValue ?? 0 }.min()
                #expect(stored.bytes == cheapest, "\(name)")
            }
            // On these weights the output sits about 3 dB above the quantized tensors: confirmed at once.
            #expect(rounds.count == 1 && tightened == 0, "\(db): \(rounds)")
        }
    }

    /// On a miss, the worst quarter of the quantized tensors move to their next better candidate and the
    /// model is confirmed again, until it passes. Trained models (and some random ones: a 256-wide FLUX
    /// made with diffusers lost 0.1 to 4 dB at the output, README) sit below their tensors; here the
    /// confirmation is told the output is 3 dB under the worst chosen tensor, to make every round count.
    @Test func aMissTightensTheWorstTensorsUntilConfirmed() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let folder = try WideModels.folder("flux", in: dir)
        var o = ConversionOptions()
        o.dtype = .auto
        let budget = AutoPrecisionOptions(minSQNR: 26)
        var seen: [(Double, Int)] = []
        _ = try AutoPrecision.convert(source: folder, output: dir + "/t.ditkit", options: o, auto: budget, progress: nil) { path in
            let b = try NativeBundle(path: path)
            let worst = b.manifest.tensors.compactMap { $0.stored.dtype.block != nil ? $0.error?.sqnrDB : nil }.min() ?? .infinity
            seen.append((worst - 3, b.manifest.weightsBytes))
            return worst - 3
        }
        let b = try NativeBundle(path: dir + "/t.ditkit")
        let rounds = b.manifest.dtypePolicy["auto"]?["confirmation"]?.arrayValue ?? []
        #expect(rounds.count == seen.count && rounds.count >= 2, "\(rounds)")
        #expect(rounds.last?["passed"] == .bool(true) && rounds.dropLast().allSatisfy { $0["passed"] == .bool(false) })
        // Each miss tightened a quarter of the quantized tensors; sizes only grow; the last round met the budget.
        for (k, r) in rounds.dropLast().enumerated() {
            #expect((r["tightened"]?.arrayValue?.count ?? 0) >= 1, "round \(k + 1)")
            #expect(r["output_sqnr_db"]?.doubleValue == seen[k].0)
        }
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.1 <= $1.1 })
        #expect((seen.last?.0 ?? 0) >= 26)
        let tensors = b.manifest.dtypePolicy["auto"]?["tensors"]?.arrayValue ?? []
        #expect(tensors.contains { $0["reason"]?.stringValue?.hasPrefix("tightened in round 1: output SQNR") == true })
    }

    @Test func aSizeBudgetThatCannotBeMetIsRefusedWithoutOutput() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let folder = try WideModels.folder("flux", in: dir)
        #expect { _ = try auto(folder, dir + "/small.ditkit", 30, maxSize: 1_000_000) } throws: {
            "\($0)".contains("fits in 1000000 bytes") && (($0 as? FileError)?.underlying as? ConvertError).map { $0.kind == .mismatch } == true
        }
        #expect(!FileSystem.exists(dir + "/small.ditkit"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).allSatisfy { !$0.hasSuffix(".auto") })
        // Without a budget the choice is the same twice, byte for byte.
        _ = try auto(folder, dir + "/x.ditkit", 24)
        _ = try auto(folder, dir + "/y.ditkit", 24)
        #expect(try FileSystem.readFile(dir + "/x.ditkit/manifest.json") == FileSystem.readFile(dir + "/y.ditkit/manifest.json"))
    }
}
