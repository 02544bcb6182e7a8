// The block quantizers against ggml's own output (committed by tools/make_quant_vectors.py), and the
// dequantizers against gguf-py's `dequantize` (run at test time through DITKIT_PYTHON).
import Testing
import Foundation
import DiTKitCore

/// Committed fixtures, relative to this file.
private let fixtures: String = {
    var p = #filePath
    for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
    return p + "/Tests/Fixtures/quants/"
}()

private let python = ProcessInfo.processInfo.environment["DITKIT_PYTHON"]

/// The 2048 x 256 sweep of tools/make_quant_vectors.py, regenerated bit for bit (no libm).
func quantSweep() -> [Float] {
    var out: [Float] = []
    out.reserveCapacity(2048 * 256)
    for r in 0..<2048 {
        let kind = r % 6
        let scale = Float(sign: .plus, exponent: (7 * r) % 41 - 30, significand: 1)
        var rng = SeededRandom(seed: UInt64(r))
        for i in 0..<256 {
            let b = rng.next()
            let u = Float(Int(b >> 40) - (1 << 23)) * 0x1p-23
            let v: Float
            switch kind {
            case 0: v = u
            case 1: v = u / (Float((rng.next() >> 41) + 1) * 0x1p-23)
            case 2: v = (b & 15) >= 14 ? u : 0
            case 3: v = abs(u)
            case 4: v = Float(Int(b >> 60) - 8) * 0.125
            default: v = i == r % 256 ? u * 64 : u
            }
            out.append(v * scale)
        }
    }
    return out
}

private func quantize(_ type: DType, _ x: [Float], threads: Int = 1) -> [UInt8] {
    let b = type.block!
    var out = [UInt8](repeating: 0, count: x.count / b.elements * b.bytes)
    x.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBytes { BlockQuantizer.quantize(type, src.baseAddress!, count: x.count, into: $0.baseAddress!, threads: threads) }
    }
    return out
}

private func dequantize(_ type: DType, _ bytes: [UInt8]) -> [Float] {
    let b = type.block!
    let n = bytes.count / b.bytes * b.elements
    var out = [Float](repeating: 0, count: n)
    bytes.withUnsafeBytes { src in out.withUnsafeMutableBufferPointer { BlockQuantizer.dequantize(type, src.baseAddress!, count: n, into: $0.baseAddress!) } }
    return out
}

private func readFloats(_ path: String) throws -> [Float] {
    let bytes = try FileSystem.readFile(path)
    return bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

@Suite struct BlockQuantizationTests {
    /// 22 named rows of 512 values (zeros, -0.0, tiny, constant, outliers, heavy tails, ...), every
    /// type, byte for byte against ggml; a mismatch names the row and the first differing byte.
    @Test(arguments: DType.blockTypes)
    func namedRowsMatchGGML(_ type: DType) throws {
        let meta = try JSONReader.parse(try FileSystem.readFile(fixtures + "cases.json"))
        let names = meta["rows"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let rowLength = meta["row_length"]?.intValue ?? 0
        let rows = try readFloats(fixtures + "rows.f32")
        let want = try FileSystem.readFile(fixtures + type.name + ".bin")
        #expect(names.count == 22 && rows.count == names.count * rowLength)
        let got = quantize(type, rows)
        #expect(got.count == want.count)
        let perRow = want.count / names.count
        for (k, name) in names.enumerated() {
            let a = got[(k * perRow)..<((k + 1) * perRow)], b = want[(k * perRow)..<((k + 1) * perRow)]
            if let i = Array(zip(a, b)).firstIndex(where: { $0 != $1 }) {
                Issue.record("\(type.name) row '\(name)': byte \(i) is \(a[a.startIndex + i]), ggml wrote \(b[b.startIndex + i])")
            }
        }
    }

    /// 2048 rows of 256 values over 41 binary scales and six shapes, against the SHA-256 of ggml's bytes.
    @Test func sweepMatchesGGML() throws {
        let meta = try JSONReader.parse(try FileSystem.readFile(fixtures + "cases.json"))
        let x = quantSweep()
        for type in DType.blockTypes {
            let digest = quantize(type, x).withUnsafeBytes { SHA256Hasher.hex($0) }
            #expect(digest == meta["sweep"]?["sha256"]?[type.name]?.stringValue, "\(type.name)")
        }
    }

    /// The AVX2 scale searches (eight groups per vector) and the portable C give the same bytes.
    @Test func portableAndVectorPathsAgree() throws {
        let meta = try JSONReader.parse(try FileSystem.readFile(fixtures + "cases.json"))
        let x = quantSweep()
        Narrow.forcePortable(true)
        defer { Narrow.forcePortable(false) }
        for type in [DType.q2_K, .q3_K, .q4_K, .q5_K, .q6_K] {
            let digest = quantize(type, x).withUnsafeBytes { SHA256Hasher.hex($0) }
            #expect(digest == meta["sweep"]?["sha256"]?[type.name]?.stringValue, "portable \(type.name)")
        }
    }

    @Test func threadsDoNotChangeTheBytes() {
        let x = quantSweep()
        for type in [DType.q8_0, .q4_1, .q4_K] {
            #expect(quantize(type, x, threads: 1) == quantize(type, x, threads: 3), "\(type.name)")
        }
    }

    /// On Gaussian weights, more bits give less error, and each type lands near the SQNR its
    /// bit budget predicts (6 dB per bit; bounds are loose: they catch a broken round trip, not tuning).
    @Test func moreBitsLessError() {
        var rng = SeededRandom(seed: 7)
        let x = rng.normals(256 * 256).map { $0 * 0.02 }
        func sqnr(_ type: DType) -> Double {
            let y = dequantize(type, quantize(type, x))
            var e = 0.0, s = 0.0
            for (a, b) in zip(x, y) { e += Double(a - b) * Double(a - b); s += Double(a) * Double(a) }
            return 10 * log10(s / e)
        }
        let order: [DType] = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_0]
        let figures = order.map(sqnr)
        for k in figures.indices.dropFirst() { #expect(figures[k] > figures[k - 1] + 3, "\(order[k].name) \(figures[k]) dB vs \(order[k - 1].name) \(figures[k - 1]) dB") }
        let floor: [DType: Double] = [.q2_K: 6, .q3_K: 12, .q4_K: 18, .q5_K: 24, .q6_K: 30, .q8_0: 40]
        for (t, f) in zip(order, figures) { #expect(f > floor[t]!, "\(t.name): \(f) dB") }
        #expect(sqnr(.q4_1) > sqnr(.q4_0) - 1 && sqnr(.q5_1) > sqnr(.q4_1) + 3 && sqnr(.q5_0) > sqnr(.q4_0) + 3)
    }

    @Test func layoutsAndByteCounts() throws {
        let expected: [(DType, Int, Int, UInt32)] = [(.q4_0, 32, 18, 2), (.q4_1, 32, 20, 3), (.q5_0, 32, 22, 6), (.q5_1, 32, 24, 7),
                                                    (.q8_0, 32, 34, 8), (.q2_K, 256, 84, 10), (.q3_K, 256, 110, 11),
                                                    (.q4_K, 256, 144, 12), (.q5_K, 256, 176, 13), (.q6_K, 256, 210, 14)]
        for (d, values, bytes, code) in expected {
            #expect(d.block?.elements == values && d.block?.bytes == bytes)
            #expect(d.ggmlType == code && DType(ggmlType: code) == d)
            #expect(d.itemSize == 0 && d.isDequantizable && !d.isConvertibleFloat)
            #expect(DType(safetensorsName: d.name) == nil, "safetensors has no \(d.name)")
            #expect(try d.byteCount(shape: [3, 2 * values]) == 6 * bytes)
            #expect(throws: BlockQuantizationError.rowNotMultiple(d, rowLength: values + 1, blockElements: values)) {
                try d.byteCount(shape: [values, values + 1])
            }
            #expect(throws: BlockQuantizationError.scalar(d)) { try d.byteCount(shape: []) }
        }
        #expect(try DType.q4_K.byteCount(shape: [0, 256]) == 0)
        #expect(DType(ggmlType: 16) == nil && DType.ggmlTypeName(16) == "IQ2_XXS")
        #expect(DType(ggmlType: 0) == .f32 && DType(ggmlType: 30) == .bf16 && DType(ggmlType: 28) == .f64)
        #expect(throws: ArithmeticOverflow.self) { try DType.q8_0.byteCount(shape: [Int.max / 2, 64]) }
    }

    /// gguf-py's `dequantize` of our blocks (ggml's quantizer output, the sweep's, and random bytes
    /// that include NaN and infinite scales) gives the same float32 bits; gguf-py's `quantize` of
    /// the sweep gives our bytes for the five types it has a quantizer for.
    @Test(.enabled(if: python != nil, "needs DITKIT_PYTHON with numpy and gguf (make test provides it)"))
    func gguFPyAgrees() throws {
        let dir = NSTemporaryDirectory() + "ditkit-quants-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { FileSystem.removeTree(dir) }
        let sweep = quantSweep()
        try sweep.withUnsafeBytes { try FileSystem.writeFile(dir + "/input.f32", Array($0)) }
        var rng = SeededRandom(seed: 99)
        var ours: [DType: [UInt8]] = [:]
        for type in DType.blockTypes {
            var blocks = quantize(type, sweep) + (try FileSystem.readFile(fixtures + type.name + ".bin"))
            blocks += (0..<(64 * type.block!.bytes)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            ours[type] = blocks
            try FileSystem.writeFile(dir + "/\(type.name).bin", blocks)
        }
        let script = """
        import sys, numpy as np, gguf
        from gguf import quants
        d = sys.argv[1]
        for name in sys.argv[2:]:
            t = gguf.GGMLQuantizationType[name]
            values, size = gguf.GGML_QUANT_SIZES[t]
            raw = np.fromfile(d + "/" + name + ".bin", np.uint8).reshape(-1, size)
            with np.errstate(all="ignore"):
                quants.dequantize(raw, t).astype("<f4").tofile(d + "/" + name + ".deq")
            if name in ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"):
                x = np.fromfile(d + "/input.f32", "<f4").reshape(-1, 256)
                with np.errstate(all="ignore"):
                    quants.quantize(x, t).tofile(d + "/" + name + ".q")
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python!)
        p.arguments = ["-c", script, dir] + DType.blockTypes.map(\.name)
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        for type in DType.blockTypes {
            let theirs = try readFloats(dir + "/\(type.name).deq")
            let mine = dequantize(type, ours[type]!)
            #expect(theirs.count == mine.count, "\(type.name)")
            let differing = zip(mine, theirs).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(differing == 0, "\(type.name): \(differing) values differ from gguf-py's dequantize")
            if type.block!.elements == 32 {
                let q = try FileSystem.readFile(dir + "/\(type.name).q")
                #expect(q == quantize(type, sweep), "\(type.name): gguf-py's quantize")
            }
        }
    }
}
