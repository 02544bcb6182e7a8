// Comparing one layer's activations against a reference, and the tolerance each dtype gets.
import DiTKitCore
import DiTKitNumerics

/// Error metrics of `a` (the model under test) against `b` (the reference).
///
/// - max_abs = max|a−b|, mean_abs = mean|a−b|
/// - rel_l2 = ‖a−b‖₂ / ‖b‖₂
/// - cosine = a·b / (‖a‖₂‖b‖₂)
/// - sqnr_db = 20·log10(‖b‖₂ / ‖a−b‖₂) (infinite when equal)
/// A layer passes when every value of `a` is finite and rel_l2 ≤ threshold.
public struct LayerComparison: Sendable, Equatable {
    public var name: String
    public var maxAbs: Double
    public var meanAbs: Double
    public var relL2: Double
    public var cosine: Double
    public var sqnrDB: Double
    public var threshold: Double
    public var nonFinite: Int
    public var passed: Bool
    public var shape: [Int]

    /// Compares `a` with `b`. Shapes must hold the same number of values.
    public static func compare(_ name: String, _ a: [Float], _ b: [Float], shape: [Int], threshold: Double) -> LayerComparison {
        var diff2 = 0.0, ref2 = 0.0, ours2 = 0.0, dot = 0.0, maxAbs = 0.0, sumAbs = 0.0
        var nonFinite = 0
        for i in 0..<min(a.count, b.count) {
            let x = Double(a[i]), y = Double(b[i])
            if !x.isFinite { nonFinite += 1; continue }
            let d = x - y
            diff2 += d * d
            ref2 += y * y
            ours2 += x * x
            dot += x * y
            maxAbs = max(maxAbs, abs(d))
            sumAbs += abs(d)
        }
        let err = diff2.squareRoot(), ref = ref2.squareRoot()
        let rel = ref > 0 ? err / ref : (err > 0 ? .infinity : 0)
        let cosine = ours2 > 0 && ref2 > 0 ? dot / (ours2.squareRoot() * ref) : (ours2 == ref2 ? 1 : 0)
        let sqnr = err > 0 ? 20 * log10(ref / err) : .infinity
        let passed = nonFinite == 0 && a.count == b.count && rel <= threshold
        return LayerComparison(name: name, maxAbs: maxAbs, meanAbs: a.isEmpty ? 0 : sumAbs / Double(a.count), relL2: rel, cosine: cosine,
                               sqnrDB: sqnr, threshold: threshold, nonFinite: nonFinite, passed: passed, shape: shape)
    }

    /// JSON row: `{"name", "max_abs", "mean_abs", "rel_l2", "cosine", "sqnr_db", "threshold", "passed"}`
    /// (`sqnr_db` is null when the values are identical; `non_finite` counts NaN/inf values).
    public var json: JSONValue {
        .object([
            ("name", .string(name)), ("max_abs", .double(maxAbs)), ("mean_abs", .double(meanAbs)), ("rel_l2", .double(relL2)),
            ("cosine", .double(cosine)), ("sqnr_db", sqnrDB.isFinite ? .double(sqnrDB) : .null), ("threshold", .double(threshold)),
            ("passed", .bool(passed)), ("non_finite", .int(nonFinite)), ("shape", .array(shape.map { .int($0) })),
        ])
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// The tolerance a layer must meet, chosen by the stored dtype of the model under test.
///
/// The metric is the relative L2 error of each layer's output against the reference. Values are
/// measured (BENCHMARKS.md and README "Verification thresholds"): f32 must agree with PyTorch f32
/// to 1e-4 at every layer; the lossy profiles sit about 3× above the worst layer measured on
/// DiT-XL/2 and SD-VAE stand-ins, so that a correct conversion passes and a wrong one fails.
public struct TolerancePolicy: Sendable, Equatable {
    public var name: String
    public var maxRelL2: Double

    public static let f32 = TolerancePolicy(name: "f32", maxRelL2: 1e-4)
    public static let f16 = TolerancePolicy(name: "f16", maxRelL2: 5e-3)
    public static let bf16 = TolerancePolicy(name: "bf16", maxRelL2: 3e-2)
    public static let int8 = TolerancePolicy(name: "int8", maxRelL2: 1e-1)

    /// The ggml block types: about 3× the worst layer measured on random weights (256-wide models of
    /// every family and DiT-XL/2: README "Verification thresholds"), capped at 1 for Q2_K (an error
    /// as large as the signal). At Q3_K and Q2_K a damaged layer (rel L2 ≈ 0.7) no longer stands out
    /// from quantization noise.
    public static let blockTypes: [TolerancePolicy] = [
        TolerancePolicy(name: "q8_0", maxRelL2: 3e-2),
        TolerancePolicy(name: "q6_k", maxRelL2: 1e-1),
        TolerancePolicy(name: "q5_1", maxRelL2: 2e-1),
        TolerancePolicy(name: "q5_k", maxRelL2: 2e-1),
        TolerancePolicy(name: "q5_0", maxRelL2: 2.5e-1),
        TolerancePolicy(name: "q4_1", maxRelL2: 5e-1),
        TolerancePolicy(name: "q4_k", maxRelL2: 4e-1),
        TolerancePolicy(name: "q4_0", maxRelL2: 5e-1),
        TolerancePolicy(name: "q3_k", maxRelL2: 8e-1),
        TolerancePolicy(name: "q2_k", maxRelL2: 1),
    ]

    /// The profile of a storage type name (`f32`, `f16`, `bf16`, `int8`, `q4_k`, …).
    public static func forStorage(_ s: String) -> TolerancePolicy {
        switch s {
        case "f16": return .f16
        case "bf16": return .bf16
        case "int8": return .int8
        default: return blockTypes.first { $0.name == s } ?? .f32
        }
    }

    public var json: JSONValue {
        .object([("name", .string(name)), ("metric", .string("rel_l2")), ("max_rel_l2", .double(maxRelL2)),
                 ("formula", .string("rel_l2 = ||a - b||_2 / ||b||_2, b = reference; a layer passes when all values are finite and rel_l2 <= max_rel_l2"))])
    }
}
