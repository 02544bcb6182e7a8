// `convert --dtype auto --min-sqnr DB [--max-size BYTES]`: precision chosen per tensor by a fidelity
// budget. Every tensor the family's block policy would quantize is quantized into every candidate
// block type and measured (SQNR against its source values); each takes the smallest candidate that
// reaches its target (at first `--min-sqnr`); the whole model is then converted and confirmed with
// `verify --against` at its output; on a miss, the worst quantized tensors move up to their next
// better candidate and the model is confirmed again. The manifest records every candidate measured
// and why each tensor's type won (`dtype_policy.auto`).
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitVerify

/// The fidelity budget of `--dtype auto`.
public struct AutoPrecisionOptions: Sendable {
    /// The output SQNR the converted model must reach against its source (dB).
    public var minSQNR: Double
    /// Largest acceptable weights size (bytes), or nil.
    public var maxSize: Int?
    /// Confirmation rounds before giving up tightening (each round converts and verifies once).
    public var maxRounds = 12
    public init(minSQNR: Double, maxSize: Int? = nil) {
        self.minSQNR = minSQNR
        self.maxSize = maxSize
    }
}

/// One candidate type measured on one tensor.
public struct CandidateMeasure: Sendable, Equatable {
    public var type: DType
    /// nil: the candidate reproduces the tensor exactly.
    public var sqnrDB: Double?
    public var bytes: Int
    var sqnr: Double { sqnrDB ?? .infinity }
}

public enum AutoPrecision {
    /// The candidate block types, smallest first (ties: the better SQNR is chosen by measurement).
    public static let candidates: [DType] = [.q2_K, .q3_K, .q4_0, .q4_K, .q4_1, .q5_0, .q5_K, .q5_1, .q6_K, .q8_0]

    /// One tensor's measurements and current choice.
    struct TensorChoice {
        var name: String
        var measures: [CandidateMeasure]
        /// Bytes when kept in its lossless type.
        var keptBytes: Int
        /// Index into `measures`, or nil: kept.
        var chosen: Int?
        var reason: String
        var sqnr: Double { chosen.map { measures[$0].sqnr } ?? .infinity }
        var bytes: Int { chosen.map { measures[$0].bytes } ?? keptBytes }
    }

    /// Converts `source` into `output` with per-tensor types chosen for `auto`. Throws what
    /// `Converter.convert` throws, and `ConvertError.autoTooLarge` when no choice meets both budgets.
    /// `confirm` (tests only) replaces the confirmation: the output SQNR of the bundle at a path.
    static func convert(source: String, output: String, options: ConversionOptions, auto: AutoPrecisionOptions,
                        progress: ProgressReporter?, confirm: ((String) throws -> Double)? = nil) throws -> ConversionSummary {
        let (resolved, container, plan, hints) = try Converter.open(source, options: options)
        let policy = options.blockPolicy(plan.configuration)
        let index = Dictionary(container.tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        let weights = PlannedWeights(container: container, plan: plan)

        // 1. Measure every candidate on every tensor the policy would quantize.
        progress?.begin("measuring candidates", total: plan.tensors.count, unit: .steps)
        let measured: [TensorChoice] = try FileError.wrapping(resolved) {
            try parallelMap(plan.tensors.count, workers: max(1, options.threads)) { i -> TensorChoice in
                let t = plan.tensors[i]
                defer { progress?.advance(1) }
                let sources = t.recipe.sources.compactMap { index[$0] }.map { container.tensors[$0] }
                let keptBytes = try StoragePlan.keptType(sources: sources, shape: t.shape, dtype: .auto, options: options).byteCount(shape: t.shape)
                if let why = policy.keepReason(t.name, shape: t.shape) {
                    return TensorChoice(name: t.name, measures: [], keptBytes: keptBytes, chosen: nil, reason: "kept: \(why)")
                }
                if let p = options.keep.first(where: { globMatch($0, t.name) }) {
                    return TensorChoice(name: t.name, measures: [], keptBytes: keptBytes, chosen: nil, reason: "kept: --keep '\(p)'")
                }
                let row = t.shape.last ?? 0
                let types = candidates.filter { row % ($0.block?.elements ?? 1) == 0 }
                let measures: [CandidateMeasure] = try weights.withFloats(t.name) { values in
                    guard BlockQuantizer.countNonFinite(values.baseAddress!, count: values.count) == 0 else { return [] }
                    return try types.map { type in
                        let q = try BlockConversion.quantize(values, shape: t.shape, to: type)
                        return CandidateMeasure(type: type, sqnrDB: q.error.sqnrDB, bytes: try type.byteCount(shape: t.shape))
                    }
                }
                let reason = measures.isEmpty ? (types.isEmpty ? "kept: rows of \(row) values divide into no candidate's blocks" : "kept: NaN or infinite values")
                                              : ""
                return TensorChoice(name: t.name, measures: measures, keptBytes: keptBytes, chosen: nil, reason: reason)
            }
        }
        progress?.finish()

        // 2. The cheapest candidate reaching each tensor's target.
        var choices = measured
        for k in choices.indices where !choices[k].measures.isEmpty {
            choose(&choices[k], target: auto.minSQNR, why: "smallest candidate with SQNR ≥ \(fixed(auto.minSQNR)) dB")
        }
        if let max = auto.maxSize, total(choices) > max {
            throw FileError(path: resolved, ConvertError.autoTooLarge(bytes: total(choices), max: max, minSQNR: auto.minSQNR))
        }

        // 3. Confirm at the output; tighten the worst tensors on a miss.
        let temporary = FileSystem.parentDirectory(output) + "/." + FileSystem.baseName(output) + ".auto"
        defer { FileSystem.removeTree(temporary) }
        let reference = try LoadedModel.open(resolved, hints: hints)
        let outputs = Set(plan.configuration.family.passes(plan.configuration).map(\.name))
        var rounds: [JSONValue] = []
        var confirmed = false
        for round in 1...max(1, auto.maxRounds) {
            var o = options
            o.force = true
            o.autoChoices = types(choices)
            o.autoRecord = .null
            progress?.begin("confirming (round \(round))", total: 1, unit: .steps)
            _ = try Converter.convert(source: source, output: temporary, options: o)
            let sqnr = try confirm?(temporary)
                ?? Verifier.verify(try LoadedModel.open(temporary), against: reference).layers.filter { outputs.contains($0.name) }.map(\.sqnrDB).min()
                ?? .infinity
            progress?.finish()
            let passed = sqnr >= auto.minSQNR
            var entry: [(String, JSONValue)] = [("round", .int(round)), ("output_sqnr_db", sqnr.isFinite ? .double(sqnr) : .null),
                                                ("bytes", .int(total(choices))), ("passed", .bool(passed))]
            if passed {
                rounds.append(.object(entry))
                confirmed = true
                break
            }
            // The worst quarter of the quantized tensors (at least one) moves to its next better candidate.
            let quantized = choices.indices.filter { choices[$0].chosen != nil }.sorted { choices[$0].sqnr < choices[$1].sqnr }
            let worst = quantized.prefix(max(1, quantized.count / 4))
            let why = "tightened in round \(round): output SQNR \(fixed(sqnr)) dB < \(fixed(auto.minSQNR)) dB"
            for k in worst { choose(&choices[k], target: nextAfter(choices[k].sqnr), why: why) }
            entry.append(("tightened", .array(worst.map { .string(choices[$0].name) })))
            rounds.append(.object(entry))
            if let max = auto.maxSize, total(choices) > max {
                throw FileError(path: resolved, ConvertError.autoTooLarge(bytes: total(choices), max: max, minSQNR: auto.minSQNR))
            }
            if quantized.isEmpty { break }
        }
        guard confirmed else { throw FileError(path: resolved, ConvertError.autoUnconfirmed(minSQNR: auto.minSQNR, rounds: auto.maxRounds)) }

        // 4. The bundle, with the record of what was measured and why each type won.
        var o = options
        o.autoChoices = types(choices)
        o.autoRecord = record(choices, auto: auto, rounds: rounds, keepDType: options.keepDType)
        return try Converter.convert(source: source, output: output, options: o, progress: progress)
    }

    /// The cheapest candidate with SQNR ≥ `target` (bytes, then the better SQNR), else kept.
    static func choose(_ c: inout TensorChoice, target: Double, why: String) {
        let ok = c.measures.indices.filter { c.measures[$0].sqnr >= target }
        if let best = ok.min(by: { (c.measures[$0].bytes, -c.measures[$0].sqnr) < (c.measures[$1].bytes, -c.measures[$1].sqnr) }),
           c.measures[best].bytes < c.keptBytes {
            c.chosen = best
            c.reason = why
        } else {
            c.chosen = nil
            c.reason = ok.isEmpty ? "kept: no candidate reaches the target (\(why))" : "kept: no candidate is smaller than the source type"
        }
    }

    /// A target just above `sqnr` (the next better candidate).
    static func nextAfter(_ sqnr: Double) -> Double { sqnr.isFinite ? sqnr + 1e-9 : .infinity }

    static func total(_ choices: [TensorChoice]) -> Int { choices.reduce(0) { $0 + $1.bytes } }

    static func types(_ choices: [TensorChoice]) -> [String: DType] {
        var m: [String: DType] = [:]
        for c in choices { if let k = c.chosen { m[c.name] = c.measures[k].type } }
        return m
    }

    static func record(_ choices: [TensorChoice], auto: AutoPrecisionOptions, rounds: [JSONValue], keepDType: DType?) -> JSONValue {
        .object([
            ("min_sqnr_db", .double(auto.minSQNR)),
            ("max_size", auto.maxSize.map { .int($0) } ?? .null),
            ("kept_dtype", .string(keepDType?.name ?? "source")),
            ("candidates", .array(candidates.map { .string($0.name) })),
            ("rule", .string("each tensor the family's block policy would quantize is quantized into every candidate whose blocks divide its rows and measured against its source values; it takes the smallest candidate whose SQNR reaches its target (min_sqnr_db at first), else keeps its source type losslessly; the model is then confirmed with verify --against at its output, and on a miss the worst quarter of the quantized tensors move to their next better candidate")),
            ("confirmation", .array(rounds)),
            ("tensors", .array(choices.map { c in
                .object([
                    ("name", .string(c.name)),
                    ("dtype", .string(c.chosen.map { c.measures[$0].type.name } ?? "kept")),
                    ("reason", .string(c.reason)),
                    ("candidates", .array(c.measures.map { m in
                        .object([("type", .string(m.type.name)), ("sqnr_db", m.sqnrDB.map { .double($0) } ?? .null), ("bytes", .int(m.bytes))])
                    })),
                ])
            })),
        ])
    }

    static func fixed(_ x: Double) -> String {
        guard x.isFinite else { return x > 0 ? "inf" : "-inf" }
        return NumberFormat.fixed(x, 2)
    }
}
