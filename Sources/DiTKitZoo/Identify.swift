// `ditkit zoo identify`: what is this file? By SHA-256 against Checksums/ and the trust-on-first-use
// pins first; otherwise by structure (names and shapes) against every known architecture.
import DiTKitCore
import DiTKitFormats
import DiTKitModels
#if canImport(Glibc)
import Glibc
#endif

/// What identify found.
public struct Identification: Sendable {
    public var path: String
    /// The SHA-256 of the file (of a model folder's weights file); nil for a bundle, which is
    /// identified by the hash of the file it was converted from (`sourceSHA256`).
    public var sha256: String?
    /// A bundle's `provenance.source.sha256`: the file it was converted from.
    public var sourceSHA256: String?
    /// A bundle's `provenance.zoo.id`, when `zoo import` made it.
    public var zooEntry: String?
    /// Zoo files with this exact hash (`<entry id>/<file name>`), from Checksums/ or pins.
    public var hashMatches: [(path: String, source: String)]
    /// The detected model, when the structure is a DiT or VAE DiTKit knows how to read.
    public var detected: ModelConfiguration?
    public var sourceNaming: String?
    public var subtree: String?
    /// The closest architecture entry and how far it is.
    public var closest: (entry: String, exact: Bool, differences: [String])?
    /// Every entry as close as `closest` (same differences): releases of one architecture that
    /// structure alone cannot tell apart. Architecture entries first, then by id.
    public var alsoClosest: [String] = []
    /// Why the structure could not be read as a model.
    public var structureError: String?

    public var json: JSONValue {
        var m: [(String, JSONValue)] = [("path", .string(path)), ("sha256", sha256.map { .string($0) } ?? .null)]
        if let s = sourceSHA256 { m.append(("source_sha256", .string(s))) }
        if let z = zooEntry { m.append(("zoo_entry", .string(z))) }
        m.append(("hash_matches", .array(hashMatches.map { .object([("file", .string($0.path)), ("source", .string($0.source))]) })))
        if let d = detected {
            m.append(("model", .object([("family", .string(d.family.name)), ("variant", .string(d.variant)), ("config", d.json)])))
            m.append(("naming", .string(sourceNaming ?? "")))
            m.append(("subtree", .string(subtree ?? "")))
        }
        if let c = closest {
            m.append(("closest", .object([("entry", .string(c.entry)), ("exact", .bool(c.exact)), ("differences", .array(c.differences.map { .string($0) })),
                                          ("entries", .array(([c.entry] + alsoClosest).map { .string($0) }))])))
        }
        if let e = structureError { m.append(("structure_error", .string(e))) }
        return .object(m)
    }
}

extension Zoo {
    /// Identifies the file (or bundle, or diffusers model folder) at `path`.
    /// `digests` remembers the file's SHA-256 (and answers it for an unchanged file that was
    /// converted, identified or fetched before).
    public func identify(_ path: String, checksums: [ChecksumLine], hints: DetectionHints = DetectionHints(),
                         digests: FileDigests? = nil) throws -> Identification {
        var result = Identification(path: path, hashMatches: [])
        let bundle = FileSystem.isDirectory(path) && FileSystem.exists(path + "/" + BundleManifest.manifestFile)
        if !bundle {
            // A model folder is identified by its weights file.
            let file = FileSystem.isDirectory(path) ? DiffusersFolder.weights(in: path) : path
            if let f = file {
                result.sha256 = try FileError.wrapping(f) {
                    guard let digests else { return try SHA256Hasher.hex(file: f) }
                    return try digests.sha256(path: f) { try SHA256Hasher.hex(file: f) }.sha256
                }
            }
        }
        func matchHash(_ sha: String) {
            for line in checksums where line.sha256 == sha { result.hashMatches.append((line.path, "checksums")) }
            for e in entries {
                for f in e.files where f.sha256 == sha { result.hashMatches.append(("\(e.id)/\(f.name)", "manifest")) }
            }
        }
        if let sha = result.sha256 { matchHash(sha) }
        do {
            let container = try Checkpoint.open(path)
            var h = hints
            // As convert does: a diffusers config.json beside the weights gives image size and heads.
            if h.diffusersConfig == nil { h.diffusersConfig = LoadedModel.diffusersConfig(besides: path) }
            if h.trainArgsModel == nil { h.trainArgsModel = container.objects.first { $0.name == "args.model" }?.value }
            let configuration: ModelConfiguration
            if let b = container as? NativeBundle {
                configuration = try ModelConfiguration(family: b.manifest.family, json: b.manifest.config)
                result.sourceNaming = b.manifest.naming
                result.sourceSHA256 = b.manifest.provenance["source"]?["sha256"]?.stringValue
                result.zooEntry = b.manifest.provenance["zoo"]?["id"]?.stringValue
                if let s = result.sourceSHA256 { matchHash(s) }
            } else {
                let plan = try ModelDetector.plan(container, hints: h)
                configuration = plan.configuration
                result.sourceNaming = plan.sourceNaming
                result.subtree = plan.subtree
            }
            result.detected = configuration
            let all = closestArchitectures(configuration)
            if let first = all.first {
                result.closest = first
                result.alsoClosest = all.dropFirst().map(\.entry)
            }
        } catch {
            result.structureError = String(describing: error)
        }
        return result
    }

    /// The architecture entry closest to `c`, with the hyperparameters that differ. Ties on the number
    /// of differences go to the nearest configuration (`ModelConfiguration.distance`), then to
    /// architecture entries over releases of the same architecture.
    public func closestArchitecture(_ c: ModelConfiguration) -> (entry: String, exact: Bool, differences: [String])? {
        closestArchitectures(c).first
    }

    /// Every entry as close to `c` as the closest one (same number of differences and distance):
    /// structure cannot tell releases of one architecture apart. Architecture entries first, then
    /// releases, each by id.
    public func closestArchitectures(_ c: ModelConfiguration) -> [(entry: String, exact: Bool, differences: [String])] {
        var ranked: [(id: String, diff: [String], rank: (Int, Double), kind: Int)] = []
        let size = c.json["image_size"]?.intValue
        for e in entries where e.family.name == c.family.name {
            // A release is its architecture at the size it was released at; an architecture entry
            // is taken at the model's size.
            guard let ref = e.configuration(imageSize: e.kind == "release" ? (e.imageSize ?? size) : size) else { continue }
            let diff = c.differences(from: ref)
            ranked.append((e.id, diff, (diff.count, c.distance(to: ref)), e.kind == "architecture" ? 0 : 1))
        }
        guard let best = ranked.map(\.rank).min(by: <) else { return [] }
        return ranked.filter { $0.rank == best }.sorted { ($0.kind, $0.id) < ($1.kind, $1.id) }.map { ($0.id, $0.diff.isEmpty, $0.diff) }
    }
}
