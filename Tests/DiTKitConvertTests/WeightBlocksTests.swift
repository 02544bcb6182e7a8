// Quantized weights are widened a block of rows at a time into a reused buffer: the blocks cover
// the tensor in order and hold exactly the values the whole-tensor paths give, and a linear layer
// computed block by block equals the one computed from the whole weight.
import Testing
import Foundation
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitNumerics
@testable import DiTKitConvert

@Suite struct WeightBlocksTests {
    /// The test DiT as f16, int8 and (requantized from f32) Q8_0.
    func bundles() throws -> (dir: String, paths: [String]) {
        let dir = try temporaryDirectory()
        var paths: [String] = []
        for dtype in [StorageType.f16, .int8, .f32] {
            var o = ConversionOptions()
            o.dtype = dtype
            o.hints.numHeads = 2
            _ = try Converter.convert(source: Fixtures.path("verify/dit_verify.pt"), output: dir + "/\(dtype).ditkit", options: o)
            paths.append(dir + "/\(dtype).ditkit")
        }
        try requantize(dir + "/f32.ditkit", to: dir + "/q8_0.ditkit") { t in
            t.stored.shape.count == 2 && t.stored.shape[1] % 32 == 0 ? .q8_0 : nil
        }
        paths.append(dir + "/q8_0.ditkit")
        return (dir, paths)
    }

    @Test func rowBlocksCoverTheTensorWithTheWholeTensorsValues() throws {
        let (dir, paths) = try bundles()
        defer { FileSystem.removeTree(dir) }
        for path in paths {
            let b = try NativeBundle(path: path)
            let w = BundleWeights(b)
            for t in b.manifest.tensors {
                let view = try #require(b.view(t.name))
                let whole = view.floats()
                // The int8 kernel against the scalar definition, q × scale[row].
                if t.stored.dtype == .i8 {
                    let q = view.bytes.withElements(of: Int8.self) { Array($0) }, s = view.scale!.withElements(of: Float.self) { Array($0) }
                    let cols = q.count / s.count
                    #expect(whole == q.indices.map { Float(q[$0]) * s[$0 / cols] }, "\(t.name)")
                }
                #expect(try w.withFloats(t.name) { Array($0) } == whole, "\(path): \(t.name)")
                var joined: [Float] = []
                var firsts: [Int] = []
                try w.withRowBlocks(t.name) { first, values in
                    firsts.append(first)
                    joined += values
                }
                #expect(joined == whole, "\(path): \(t.name)")
                #expect(firsts.first == 0)
                // Rows of threaded dequantization of any range equal the whole tensor's.
                let rows = view.rowCount, cols = whole.count / max(rows, 1)
                if rows >= 3 {
                    var part = [Float](repeating: .nan, count: (rows - 2) * cols)
                    part.withUnsafeMutableBufferPointer { view.dequantize(rows: 1..<(rows - 1), into: $0.baseAddress!, threads: 3) }
                    #expect(part == Array(whole[cols..<((rows - 1) * cols)]), "\(path): \(t.name) rows")
                }
            }
        }
    }

    /// A weight larger than one block (32 MB of float32) comes in several even blocks, and the
    /// linear layer computed block by block (many rows of input) or by the direct kernel (a few)
    /// equals the product with the whole weight.
    @Test func aLinearLayerByBlocksEqualsTheWholeProduct() throws {
        let dir = try temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let rows = 8000, cols = 1152   // 37 MB as float32: two blocks of 4000 rows
        var rng = SeededRandom(seed: 7)
        let values = rng.normals(rows * cols).map { $0 * 0.02 }
        let writer = try BundleWriter(path: dir + "/w.ditkit", force: false)
        let q = UnsafeMutablePointer<Int8>.allocate(capacity: rows * cols)
        var scales = [Float](repeating: 0, count: rows)
        defer { q.deallocate() }
        for r in 0..<rows {
            var st = NarrowingStats.zero
            scales[r] = values.withUnsafeBufferPointer { Narrow.int8Row($0.baseAddress! + r * cols, q + r * cols, count: cols, stats: &st) }
        }
        let (offsets, total) = try writer.layout([rows * cols, rows * 4])
        let qb = UnsafeRawBufferPointer(start: q, count: rows * cols)
        try writer.write(qb, at: offsets[0])
        try scales.withUnsafeBytes { try writer.write($0, at: offsets[1]) }
        let scaleRecord = scales.withUnsafeBytes { StoredRecord(dtype: .f32, shape: [rows], offset: offsets[1], bytes: rows * 4, checksum: XXH3Hasher.hex($0)) }
        let t = BundleTensor(name: "w", stored: StoredRecord(dtype: .i8, shape: [rows, cols], offset: offsets[0], bytes: rows * cols, checksum: XXH3Hasher.hex(qb)),
                             sources: [], transform: "copy", scale: scaleRecord)
        try writer.finish(BundleManifest(alignment: BundleManifest.defaultAlignment, family: "dit", variant: "test", config: .object([]), naming: "n",
                                         provenance: .object([]), dtypePolicy: .object([]), weightsBytes: total, tensors: [t]))
        let store = BundleWeights(try NativeBundle(path: dir + "/w.ditkit"))
        var blocks: [Int] = []
        try store.withRowBlocks("w") { first, w in blocks.append(w.count / cols) }
        #expect(blocks == [4000, 4000])
        let bias = rng.normals(rows)
        for m in [3, 16] {
            let x = rng.normals(m * cols)
            var byBlocks = [Float](repeating: 0, count: m * rows), whole = byBlocks
            try x.withUnsafeBufferPointer { xp in
                try bias.withUnsafeBufferPointer { bp in
                    try byBlocks.withUnsafeMutableBufferPointer { yp in
                        try Layers.linear(xp.baseAddress!, rows: m, inFeatures: cols, outFeatures: rows, weight: "w", in: store, bias: bp.baseAddress!, into: yp.baseAddress!)
                    }
                    try store.withFloats("w") { w in
                        whole.withUnsafeMutableBufferPointer { yp in
                            Ops.linear(xp.baseAddress!, rows: m, inFeatures: cols, weight: w.baseAddress!, bias: bp.baseAddress!, outFeatures: rows, into: yp.baseAddress!)
                        }
                    }
                }
            }
            if m <= DirectProduct.maxRows {
                // A few rows are multiplied on the stored int8 values, not widened.
                var direct = [Float](repeating: 0, count: m * rows)
                let took = try x.withUnsafeBufferPointer { xp in
                    try direct.withUnsafeMutableBufferPointer { yp in
                        try store.directProduct("w", x: xp.baseAddress!, rows: m, inFeatures: cols, outFeatures: rows, ldx: cols,
                                                into: yp.baseAddress!, ldy: rows)
                    }
                }
                #expect(took)
                // Layers.linear took that path: its output is this product plus the bias, bit for bit.
                #expect((0..<(m * rows)).allSatisfy { direct[$0] + bias[$0 % rows] == byBlocks[$0] })
            }
            var err = 0.0, ref = 0.0
            for (a, b) in zip(byBlocks, whole) { err += Double(a - b) * Double(a - b); ref += Double(b) * Double(b) }
            // The same dot products: equal up to the BLAS kernel's blocking of the sums (relative L2 1e-6).
            #expect((err / ref).squareRoot() < 1e-6, "\(m) rows")
            // A wrong row count is refused, not read past.
            #expect(throws: ModelError.self) {
                try x.withUnsafeBufferPointer { xp in
                    try byBlocks.withUnsafeMutableBufferPointer { yp in
                        try Layers.linear(xp.baseAddress!, rows: m, inFeatures: cols, outFeatures: rows - 1, weight: "w", in: store, bias: nil, into: yp.baseAddress!)
                    }
                }
            }
        }
    }
}
