// `ditkit zoo import`: fetch (or use the cache), convert with the entry's recipe, verify the bundle
// against the source, and report the verdict. The bundle's provenance names the zoo entry.
import DiTKitConvert
import DiTKitCore
import DiTKitModels
import DiTKitVerify

/// What import did.
public struct ImportResult: Sendable {
    /// The primary weights file.
    public var fetch: FetchResult
    /// The other files fetched to read it (config.json, shards), in fetch order.
    public var companions: [FetchResult]
    public var conversion: ConversionSummary
    public var verification: VerificationResult

    /// `ditkit zoo import --json`.
    public var json: JSONValue {
        .object([("passed", .bool(verification.passed)), ("fetch", fetch.json), ("companions", .array(companions.map(\.json))), ("conversion", conversion.json), ("verification", verification.json)])
    }
}

public enum ZooImport {
    /// Imports `entry` into `output` with `dtype` (default: the entry's first recipe). `progress`
    /// sees every phase: `downloading` (when the cache misses), `converting`, `verifying`.
    public static func run(_ entry: ZooEntry, zoo: Zoo, output: String, dtype: String?, cache: String, mirror: String?, force: Bool,
                           progress: ProgressReporter? = nil) throws -> ImportResult {
        let files = try Fetcher.fetchModel(entry, cache: cache, mirror: mirror, progress: progress)
        guard let fetched = files.last else { throw ZooError.noFiles(entry.id) }
        let wanted = dtype.flatMap { StorageType(spelling: $0) }
        let recipe = entry.recipes.first { StorageType(spelling: $0.dtype) == wanted } ?? entry.recipes.first ?? ZooRecipe(dtype: dtype ?? "f32")
        var o = ConversionOptions()
        guard let storage = wanted ?? StorageType(spelling: recipe.dtype) else { throw ZooError.manifest(entry.manifestPath, "bad dtype") }
        o.dtype = storage
        o.force = force
        o.hints.select = recipe.select
        o.hints.model = recipe.model ?? entry.architecture
        o.hints.imageSize = recipe.imageSize ?? entry.imageSize
        o.zooEntry = entry.id
        o.digests = FileDigests(cache: cache)
        let summary = try Converter.convert(source: fetched.path, output: output, options: o, progress: progress)
        var hints = DetectionHints()
        hints.select = recipe.select
        hints.imageSize = o.hints.imageSize
        let verification = try Verifier.verify(try LoadedModel.open(output), against: try LoadedModel.open(fetched.path, hints: hints),
                                               progress: progress)
        return ImportResult(fetch: fetched, companions: Array(files.dropLast()), conversion: summary, verification: verification)
    }
}
