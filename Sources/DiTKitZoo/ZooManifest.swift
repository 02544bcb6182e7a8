// Zoo manifests (Manifests/*.json): one human-readable JSON file per known model, validated
// here as strictly as Manifests/schema.json states it.
import DiTKitCore
import DiTKitModels

/// Why a zoo manifest or the zoo itself cannot be used.
public enum ZooError: Error, CustomStringConvertible, Sendable {
    case manifest(String, String)
    case unknownEntry(String, [String])
    case noManifests(String)
    case noFiles(String)
    case download(String)
    case checksum(file: String, expected: String, got: String)
    case pinMismatch(file: String, pinned: String, got: String)
    /// A file with no published hash that does not hold what its entry describes (checked before pinning).
    case structure(file: String, why: String)
    /// A file name an entry does not have (`zoo unpin ID/FILE`).
    case unknownFile(entry: String, name: String, known: [String])

    public var description: String {
        switch self {
        case let .manifest(file, why): return "\(file): invalid zoo manifest: \(why)"
        case let .unknownEntry(id, known): return "no zoo entry '\(id)' (known: \(known.joined(separator: ", ")))"
        case .noManifests(let s): return "no zoo manifests found (\(s)); set DITKIT_MANIFESTS or pass --manifests DIR"
        case .noFiles(let id): return "zoo entry '\(id)' describes an architecture and has no released weights to fetch"
        case .download(let s): return "download failed: \(s)"
        case let .checksum(f, e, g): return "\(f): SHA-256 mismatch: expected \(e), got \(g); the download was discarded"
        case let .pinMismatch(f, p, g): return "\(f): SHA-256 \(g) differs from the hash recorded on first download (\(p)); the download was discarded"
        case let .structure(f, why): return "\(f): not what the zoo entry describes: \(why); the file was discarded and no hash was pinned"
        case let .unknownFile(e, n, known): return "zoo entry '\(e)' has no file '\(n)' (its files: \(known.joined(separator: ", ")))"
        }
    }
}

extension ZooError: ClassifiedError {
    public var kind: ErrorKind {
        switch self {
        case .checksum, .pinMismatch, .structure: return .mismatch
        case .download: return .environment
        default: return .refusedInput
        }
    }
}

/// A file that makes up a zoo entry.
public struct ZooFile: Sendable, Equatable {
    public var name: String
    public var url: String
    /// Size in bytes, when known.
    public var bytes: Int?
    /// Published SHA-256, when known; `nil` means unpinned (trust on first use).
    public var sha256: String?
    /// `torch-zip`, `torch-legacy`, `safetensors`, `json`.
    public var container: String
    /// Whether this is the weights file to convert (the others are companions, e.g. config.json).
    public var primary: Bool
}

/// How an entry converts by default.
public struct ZooRecipe: Sendable, Equatable {
    public var dtype: String
    public var select: String?
    public var model: String?
    public var imageSize: Int?
}

/// One zoo entry.
public struct ZooEntry: Sendable {
    public var id: String
    /// `release` (weights exist) or `architecture` (hyperparameters only).
    public var kind: String
    public var family: any ModelFamily
    public var title: String
    public var description: String
    /// `DiT-XL/2`, `sd-vae-kl-f8`.
    public var architecture: String
    public var imageSize: Int?
    /// Tensor and parameter counts by image size (`"256"`, `"512"`), or under `"any"` for the VAE.
    public var counts: [(size: String, tensors: Int, parameters: Int)]
    public var files: [ZooFile]
    public var recipes: [ZooRecipe]
    public var pairsWith: [String]
    public var license: String
    public var source: JSONValue
    public var metrics: JSONValue
    public var scalingFactor: Double?
    /// The file the manifest was read from.
    public var manifestPath: String
    public var json: JSONValue

    /// The configuration this entry's architecture has at `imageSize` (for families whose
    /// architecture is defined at several sizes), else at its own image size.
    public func configuration(imageSize size: Int? = nil) -> ModelConfiguration? {
        family.configuration(named: architecture, imageSize: size ?? imageSize)
    }

    public var primaryFile: ZooFile? { files.first { $0.primary } }

    /// Parses and validates one manifest. Throws `ZooError.manifest`.
    public init(json: JSONValue, path: String) throws {
        func fail(_ why: String) -> ZooError { .manifest(path, why) }
        func string(_ k: String, in j: JSONValue = json) throws -> String {
            guard let s = j[k]?.stringValue, !s.isEmpty else { throw fail("'\(k)' must be a non-empty string") }
            return s
        }
        guard case .object(let members) = json else { throw fail("not a JSON object") }
        let allowed: Set<String> = ["$schema", "id", "kind", "family", "title", "description", "architecture", "image_size", "counts", "files",
                                    "recipes", "pairs_with", "license", "source", "metrics", "scaling_factor", "notes"]
        for (k, _) in members where !allowed.contains(k) { throw fail("unknown member '\(k)'") }
        id = try string("id")
        guard id.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" }) else { throw fail("id must be lowercase letters, digits and '-'") }
        guard FileSystem.baseName(path) == id + ".json" else { throw fail("file name must be \(id).json") }
        kind = try string("kind")
        guard ["release", "architecture"].contains(kind) else { throw fail("kind must be release or architecture") }
        guard let f = ModelFamilies.named(try string("family")), f.name == (try string("family")) else {
            throw fail("family must be one of \(ModelFamilies.names)")
        }
        family = f
        title = try string("title")
        description = try string("description")
        architecture = try string("architecture")
        imageSize = json["image_size"]?.intValue
        guard let countsJSON = json["counts"]?.objectValue, !countsJSON.isEmpty else { throw fail("counts must be a non-empty object") }
        counts = try countsJSON.map { size, v in
            guard let t = v["tensors"]?.intValue, let p = v["parameters"]?.intValue, t > 0, p > 0 else { throw fail("counts.\(size) needs positive tensors and parameters") }
            return (size, t, p)
        }
        files = try (json["files"]?.arrayValue ?? []).map { fj in
            let name = try string("name", in: fj)
            let url = try string("url", in: fj)
            guard url.hasPrefix("https://") || url.hasPrefix("http://") else { throw fail("file \(name): url must be http(s)") }
            var sha: String?
            if let s = fj["sha256"], s != .null {
                guard let h = s.stringValue, h.count == 64, h.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else { throw fail("file \(name): sha256 must be 64 lowercase hex digits or null") }
                sha = h
            }
            var bytes: Int?
            if let b = fj["bytes"], b != .null {
                guard let v = b.intValue, v > 0 else { throw fail("file \(name): bytes must be a positive integer or null") }
                bytes = v
            }
            return ZooFile(name: name, url: url, bytes: bytes, sha256: sha, container: try string("container", in: fj),
                           primary: fj["primary"]?.boolValue ?? false)
        }
        if kind == "release" {
            guard files.filter(\.primary).count == 1 else { throw fail("a release needs exactly one primary file") }
        } else {
            guard files.isEmpty else { throw fail("an architecture entry has no files") }
        }
        recipes = try (json["recipes"]?.arrayValue ?? []).map { r in
            let d = try string("dtype", in: r)
            guard ["f32", "f16", "bf16", "int8"].contains(d) else { throw fail("recipe dtype must be f32, f16, bf16 or int8") }
            return ZooRecipe(dtype: d, select: r["select"]?.stringValue, model: r["model"]?.stringValue, imageSize: r["image_size"]?.intValue)
        }
        if kind == "release" && recipes.isEmpty { throw fail("a release needs at least one recipe") }
        pairsWith = (json["pairs_with"]?.arrayValue ?? []).compactMap(\.stringValue)
        license = try string("license")
        source = json["source"] ?? .object([])
        metrics = json["metrics"] ?? .object([])
        scalingFactor = json["scaling_factor"]?.doubleValue
        manifestPath = path
        self.json = json
    }
}

/// The set of zoo manifests.
public struct Zoo: Sendable {
    /// The directory the manifests were read from, or `nil` for the copy compiled into DiTKit.
    public let directory: String?
    public let entries: [ZooEntry]

    /// How `Zoo.open` names the compiled-in copy in paths and messages.
    public static let builtinOrigin = "<built-in>"

    /// Reads every `*.json` (except `schema.json`) in `directory`, sorted by id.
    public init(directory: String) throws {
        var files: [(name: String, bytes: [UInt8])] = []
        for name in try Zoo.listJSON(directory) where name != "schema.json" {
            files.append((name, try FileSystem.readFile(FileSystem.join(directory, name))))
        }
        try self.init(files: files, directory: directory)
    }

    /// The manifests compiled into DiTKit (`BuiltinZoo`, generated from Manifests/).
    public static func builtin() throws -> Zoo {
        try Zoo(files: BuiltinZoo.manifests.map { ($0.name, Array($0.text.utf8)) }, directory: nil)
    }

    private init(files: [(name: String, bytes: [UInt8])], directory: String?) throws {
        self.directory = directory
        let origin = directory ?? Zoo.builtinOrigin + "/Manifests"
        var list: [ZooEntry] = []
        for (name, bytes) in files {
            let p = FileSystem.join(origin, name)
            let json: JSONValue
            do { json = try JSONReader.parse(bytes) } catch { throw ZooError.manifest(p, "\(error)") }
            list.append(try ZooEntry(json: json, path: p))
        }
        guard !list.isEmpty else { throw ZooError.noManifests("none in \(origin)") }
        entries = list.sorted { $0.id < $1.id }
    }

    static func listJSON(_ dir: String) throws -> [String] {
        guard FileSystem.isDirectory(dir) else { throw ZooError.noManifests("cannot open \(dir)") }
        return FileSystem.listDirectory(dir).filter { $0.hasSuffix(".json") }
    }

    public func entry(_ id: String) throws -> ZooEntry {
        guard let e = entries.first(where: { $0.id == id }) else { throw ZooError.unknownEntry(id, entries.map(\.id)) }
        return e
    }

    /// The zoo, found in this order (README, "The model zoo"):
    /// 1. `explicit` (`--manifests DIR`), 2. `$DITKIT_MANIFESTS` (unless empty): used as given, an error
    ///    if unreadable;
    /// 3. a `Manifests/` folder (one holding `schema.json`) beside the executable or up to five folders
    ///    above it, or `share/ditkit/Manifests` there (`make install` puts it in `PREFIX/share/ditkit`);
    /// 4. `Manifests/` in the current directory; 5. the copy compiled into DiTKit.
    public static func open(manifests explicit: String?) throws -> Zoo {
        if let dir = try locate(explicit) { return try Zoo(directory: dir) }
        return try builtin()
    }

    /// The manifest directory `open` uses, or `nil` when none is found and the compiled-in copy is used.
    public static func locate(_ explicit: String?) throws -> String? {
        if let e = explicit { return e }
        if let env = getenv("DITKIT_MANIFESTS"), env.pointee != 0 { return String(cString: env) }
        var candidates: [String] = []
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, 4095)
        if n > 0 {
            var dir = FileSystem.parentDirectory(String(cString: buf))
            for _ in 0..<6 {
                candidates.append(dir + "/Manifests")
                candidates.append(dir + "/share/ditkit/Manifests")
                dir = FileSystem.parentDirectory(dir)
            }
        }
        candidates.append("Manifests")
        return candidates.first { FileSystem.exists($0 + "/schema.json") }
    }

    /// The published checksums: every `*.SHA256SUMS` in `explicit` (`--checksums DIR`), else in
    /// `Checksums/` beside the manifest directory, else (the compiled-in zoo) the compiled-in copy.
    public func publishedChecksums(directory explicit: String?) throws -> [ChecksumLine] {
        if let dir = explicit ?? directory.map({ FileSystem.parentDirectory($0) + "/Checksums" }) {
            return try Checksums.load(directory: dir)
        }
        return try BuiltinZoo.checksums.flatMap { try Checksums.parse($0.text, file: Zoo.builtinOrigin + "/Checksums/" + $0.name) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
