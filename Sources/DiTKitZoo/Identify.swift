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
    public var sha256: String
    /// Zoo files with this exact hash (`<entry id>/<file name>`), from Checksums/ or pins.
    public var hashMatches: [(path: String, source: String)]
    /// The detected model, when the structure is a DiT or VAE DiTKit knows how to read.
    public var detected: ModelConfiguration?
    public var sourceNaming: String?
    public var subtree: String?
    /// The closest architecture entry and how far it is.
    public var closest: (entry: String, exact: Bool, differences: [String])?
    /// Why the structure could not be read as a model.
    public var structureError: String?

    public var json: JSONValue {
        var m: [(String, JSONValue)] = [("path", .string(path)), ("sha256", .string(sha256)),
                                        ("hash_matches", .array(hashMatches.map { .object([("file", .string($0.path)), ("source", .string($0.source))]) }))]
        if let d = detected {
            m.append(("model", .object([("family", .string(d.family.name)), ("variant", .string(d.variant)), ("config", d.json)])))
            m.append(("naming", .string(sourceNaming ?? "")))
            m.append(("subtree", .string(subtree ?? "")))
        }
        if let c = closest {
            m.append(("closest", .object([("entry", .string(c.entry)), ("exact", .bool(c.exact)), ("differences", .array(c.differences.map { .string($0) }))])))
        }
        if let e = structureError { m.append(("structure_error", .string(e))) }
        return .object(m)
    }
}

extension Zoo {
    /// Identifies the file (or bundle) at `path`.
    public func identify(_ path: String, checksums: [ChecksumLine], hints: DetectionHints = DetectionHints()) throws -> Identification {
        let sha = FileSystem.isDirectory(path) ? "" : try FileError.wrapping(path) { try SHA256Hasher.hex(file: path) }
        var result = Identification(path: path, sha256: sha, hashMatches: [])
        for line in checksums where line.sha256 == sha {
            result.hashMatches.append((line.path, "checksums"))
        }
        for e in entries {
            for f in e.files where f.sha256 == sha { result.hashMatches.append(("\(e.id)/\(f.name)", "manifest")) }
        }
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
            } else {
                let plan = try ModelDetector.plan(container, hints: h)
                configuration = plan.configuration
                result.sourceNaming = plan.sourceNaming
                result.subtree = plan.subtree
            }
            result.detected = configuration
            result.closest = closestArchitecture(configuration)
        } catch {
            result.structureError = String(describing: error)
        }
        return result
    }

    /// The architecture entry closest to `c`, with the hyperparameters that differ. Ties on the number
    /// of differences go to the nearest configuration (`ModelConfiguration.distance`), then to
    /// architecture entries over releases of the same architecture.
    public func closestArchitecture(_ c: ModelConfiguration) -> (entry: String, exact: Bool, differences: [String])? {
        var best: (id: String, diff: [String], rank: (Int, Double, Int))?
        let size = c.json["image_size"]?.intValue
        for e in entries where e.family.name == c.family.name {
            guard let ref = e.configuration(imageSize: size) else { continue }
            let diff = c.differences(from: ref)
            let rank = (diff.count, c.distance(to: ref), e.kind == "architecture" ? 0 : 1)
            if best == nil || rank < best!.rank { best = (e.id, diff, rank) }
        }
        return best.map { ($0.id, $0.diff.isEmpty, $0.diff) }
    }
}
