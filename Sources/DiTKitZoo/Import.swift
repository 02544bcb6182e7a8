// `ditkit zoo import`: fetch (or use the cache), convert with the entry's recipe, verify the bundle
// against the source, and report the verdict. The bundle's provenance names the zoo entry.
import DiTKitConvert
import DiTKitCore
import DiTKitModels
import DiTKitVerify

/// What import did.
public struct ImportResult: Sendable {
    public var fetch: FetchResult
    public var conversion: ConversionSummary
    public var verification: VerificationResult

    /// `ditkit zoo import --json`.
    public var json: JSONValue {
        .object([("passed", .bool(verification.passed)), ("fetch", fetch.json), ("conversion", conversion.json), ("verification", verification.json)])
    }
}

public enum ZooImport {
    /// Imports `entry` into `output` with `dtype` (default: the entry's first recipe). `progress`
    /// sees every phase: `downloading` (when the cache misses), `converting`, `verifying`.
    public static func run(_ entry: ZooEntry, zoo: Zoo, output: String, dtype: String?, cache: String, mirror: String?, force: Bool,
                           progress: ProgressReporter? = nil) throws -> ImportResult {
        let fetched = try Fetcher.fetch(entry, cache: cache, mirror: mirror, progress: progress)
        // Companion files (a diffusers config.json) sit beside the weights.
        for f in entry.files where !f.primary {
            // With a mirror, companions are looked up beside the mirrored weights.
            _ = try Fetcher.fetch(entry, fileName: f.name, cache: cache, mirror: mirror.map { m in
                guard let slash = m.lastIndex(of: "/") else { return m }
                return String(m[..<slash]) + "/" + f.name
            }, progress: progress)
        }
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
        let summary = try Converter.convert(source: fetched.path, output: output, options: o, progress: progress)
        var hints = DetectionHints()
        hints.select = recipe.select
        hints.imageSize = o.hints.imageSize
        let verification = try Verifier.verify(try LoadedModel.open(output), against: try LoadedModel.open(fetched.path, hints: hints),
                                               progress: progress)
        return ImportResult(fetch: fetched, conversion: summary, verification: verification)
    }
}
