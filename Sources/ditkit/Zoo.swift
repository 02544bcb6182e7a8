// `ditkit zoo`: list, show, identify, fetch and import known models.
import ArgumentParser
import DiTKitConvert
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitVerify
import DiTKitZoo

struct ZooCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zoo",
        abstract: "Known models: list, show, identify a file, fetch and import.",
        discussion: """
        Manifests are read from --manifests, $DITKIT_MANIFESTS, the Manifests/ folder of the installation \
        (share/ditkit/Manifests after make install), ./Manifests, else the copy built into ditkit. \
        Downloads go to the cache: $DITKIT_CACHE, else $XDG_CACHE_HOME/ditkit, else ~/.cache/ditkit.
        """,
        subcommands: [List.self, Show.self, Identify.self, Fetch.self, Import.self, Unpin.self])

    struct Location: ParsableArguments {
        @Option(help: "Directory of zoo manifests.")
        var manifests: String?

        @Option(help: "Directory of SHA256SUMS files (default: Checksums/ beside the manifests).")
        var checksums: String?

        @Option(help: "Cache directory for downloads and trust-on-first-use pins.")
        var cache: String?

        func zoo() throws -> Zoo { try Zoo.open(manifests: manifests) }
        func checksumLines(_ zoo: Zoo) throws -> [ChecksumLine] {
            var lines = try zoo.publishedChecksums(directory: checksums)
            let pins = ZooCache.pinsFile(ZooCache.directory(cache))
            if let text = try? FileSystem.readFile(pins) { lines += try Checksums.parse(String(decoding: text, as: UTF8.self), file: pins) }
            return lines
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the zoo.")
        @OptionGroup var location: Location
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            try reportingErrors {
                let zoo = try location.zoo()
                if json {
                    writeOut(JSONWriter.string(.array(zoo.entries.map(\.json))))
                    return
                }
                let rows = zoo.entries.map { e -> [String] in
                    let counts = e.counts.first { $0.size == String(e.imageSize ?? 256) } ?? e.counts[0]
                    let pinned = e.files.isEmpty ? "-" : (e.primaryFile?.sha256 != nil ? "pinned" : "unpinned")
                    return [e.id, e.kind, e.architecture, e.imageSize.map(String.init) ?? "-", grouped(counts.tensors), grouped(counts.parameters), pinned, e.title]
                }
                writeOut(renderTable(header: ["id", "kind", "architecture", "size", "tensors", "parameters", "hash", "title"], rows: rows, rightAligned: [4, 5]))
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Everything the zoo knows about an entry, and its local copy.")
        @OptionGroup var location: Location
        @Argument(help: "Zoo id.") var id: String
        @Flag(help: "Print JSON: the manifest entry and the state of each local copy.") var json = false

        func run() throws {
            try reportingErrors {
                let zoo = try location.zoo()
                let e = try zoo.entry(id)
                let copies = try ZooCache.localCopies(e, cache: ZooCache.directory(location.cache), checksums: try location.checksumLines(zoo))
                if json {
                    writeOut(JSONWriter.string(.object([("entry", e.json), ("local", .array(copies.map(\.json)))])))
                    return
                }
                var out = "\(e.id): \(e.title)\n  \(e.description)\n"
                out += "  kind: \(e.kind), family: \(e.family.name), architecture: \(e.architecture)" + (e.imageSize.map { ", image size \($0)" } ?? "") + "\n"
                for c in e.counts { out += "  at \(c.size): \(grouped(c.tensors)) tensors, \(grouped(c.parameters)) parameters\n" }
                if let f = e.scalingFactor { out += "  scaling factor: \(f)\n" }
                if !e.pairsWith.isEmpty { out += "  pairs with: \(e.pairsWith.joined(separator: ", "))\n" }
                out += "  license: \(e.license)\n"
                if case .object(let m) = e.metrics, !m.isEmpty { out += "  metrics: \(JSONWriter.string(e.metrics, pretty: false))\n" }
                for c in copies {
                    let f = c.file
                    out += "  file \(f.name)\(f.primary ? " (weights)" : ""): \(f.url)\n"
                    out += "    bytes: \(f.bytes.map(grouped) ?? "unknown"), sha256: \(f.sha256 ?? "not published (pinned on first fetch)")\n"
                    if let local = c.path {
                        out += "    local copy: \(local) (\(c.status == "sha256-mismatch" ? "SHA-256 MISMATCH" : c.status))\n"
                    } else {
                        out += "    local copy: none\n"
                    }
                }
                if !e.recipes.isEmpty { out += "  recipes: " + e.recipes.map { $0.dtype + ($0.select.map { " (select \($0))" } ?? "") }.joined(separator: ", ") + "\n" }
                writeOut(out)
            }
        }
    }

    struct Identify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Identify a file: by SHA-256 against Checksums/, else by structure.")
        @OptionGroup var location: Location
        @Argument(help: "A checkpoint or bundle.") var file: String
        @Flag(help: "Print JSON.") var json = false
        @Option(help: "Attention heads of a DiT whose width does not tell them.") var heads: Int?
        @Option(help: "Image size in pixels, for DiT weights in diffusers naming without a config.json.") var imageSize: Int?

        func validate() throws {
            if let h = heads, h <= 0 { throw ValidationError("--heads must be positive") }
            if let s = imageSize, s <= 0 || s % 8 != 0 { throw ValidationError("--image-size must be a positive multiple of 8") }
        }

        func run() throws {
            try reportingErrors {
                let zoo = try location.zoo()
                var hints = DetectionHints()
                hints.numHeads = heads
                hints.imageSize = imageSize
                let r = try zoo.identify(file, checksums: try location.checksumLines(zoo), hints: hints,
                                         digests: FileDigests(cache: ZooCache.directory(location.cache)))
                if json { writeOut(JSONWriter.string(r.json)); return }
                var out = "\(file)\n"
                if let sha = r.sha256 { out += "  sha256: \(sha)\n" }
                if let sha = r.sourceSHA256 {
                    out += "  a bundle converted from a file with sha256 \(sha)" + (r.zooEntry.map { " (zoo import of \($0))" } ?? "") + "\n"
                }
                let hashed = r.sourceSHA256 != nil ? "its source is identical to" : "identical to"
                if r.hashMatches.isEmpty { out += r.sha256 == nil && r.sourceSHA256 == nil ? "" : "  hash: not a known file\n" }
                for m in r.hashMatches { out += "  hash: \(hashed) \(m.path) (\(m.source))\n" }
                if let d = r.detected {
                    out += "  structure: \(d.variant) (\(d.family.name)), \(r.sourceNaming ?? "") naming" + ((r.subtree ?? "").isEmpty ? "" : ", subtree \(TerminalText.quoted(r.subtree!))") + "\n"
                    out += "    \(d.family.summary(d))\n"
                }
                if let c = r.closest {
                    let all = [c.entry] + r.alsoClosest
                    let names = all.joined(separator: ", ")
                    if c.exact {
                        out += "  architecture: matches \(names) exactly"
                        out += all.count > 1 ? " (the same architecture: only a hash tells them apart)\n" : "\n"
                    } else {
                        out += "  closest architecture: \(names); differs: \(c.differences.map { TerminalText.escaped($0) }.joined(separator: "; "))\n"
                    }
                }
                if let e = r.structureError { out += "  structure: not a model DiTKit reads: \(e)\n" }
                writeOut(out)
            }
        }
    }

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Download an entry's weights into the cache, verifying their SHA-256.")
        @OptionGroup var location: Location
        @Argument(help: "Zoo id.") var id: String
        @Option(help: "Download from this URL instead (a mirror).") var url: String?
        @Option(help: "Cache directory (same as --cache).") var dir: String?
        @Flag(help: "Print JSON instead of text.") var json = false

        func run() throws {
            try reportingErrors {
                let zoo = try location.zoo()
                let e = try zoo.entry(id)
                let files = try Fetcher.fetchModel(e, cache: ZooCache.directory(dir ?? location.cache), mirror: url, progress: TerminalProgress())
                guard let primary = files.last else { return }
                let companions = files.dropLast()
                if json {
                    guard case .object(var m) = primary.json else { return }
                    m.append(("companions", .array(companions.map(\.json))))
                    writeOut(JSONWriter.string(.object(m)))
                }
                for r in files { report(r, quiet: json) }
            }
        }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Fetch, convert with the entry's recipe, and verify against the source.")
        @OptionGroup var location: Location
        @Argument(help: "Zoo id.") var id: String
        @Option(help: "Storage type: f32, f16, bf16, int8 or a ggml block type such as q4_k (default: the entry's first recipe).") var dtype: String?
        @Option(name: .shortAndLong, help: "Bundle to write (default: ID-DTYPE.ditkit).") var output: String?
        @Option(help: "Download from this URL instead (a mirror).") var url: String?
        @Flag(help: "Replace an existing bundle.") var force = false
        @Flag(help: "Print JSON instead of text: what fetch, convert and verify did.") var json = false

        func validate() throws {
            if let d = dtype, StorageType(spelling: d) == nil { throw ValidationError("--dtype \(d): use f32, f16, bf16, int8, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k or source") }
        }

        func run() throws {
            try reportingErrors {
                let zoo = try location.zoo()
                let e = try zoo.entry(id)
                let dtype = self.dtype.flatMap { StorageType(spelling: $0)?.rawValue } ?? e.recipes.first?.dtype ?? "f32"
                let out = output ?? "\(e.id)-\(dtype).ditkit"
                let r = try ZooImport.run(e, zoo: zoo, output: out, dtype: dtype, cache: ZooCache.directory(location.cache), mirror: url,
                                          force: force, progress: TerminalProgress())
                if json {
                    for f in r.companions + [r.fetch] { report(f, quiet: true) }
                    writeOut(JSONWriter.string(r.json))
                } else {
                    for f in r.companions + [r.fetch] { report(f) }
                    writeOut(ConversionReport.text(r.conversion))
                    for w in ConversionReport.warnings(r.conversion) { printError(w) }
                    writeOut(r.verification.text)
                }
                if !r.verification.passed { throw Exit.mismatch }
            }
        }
    }
}

extension ZooCommand {
    struct Unpin: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop the trust-on-first-use pins of an entry's files (or of ID/FILE) and their cached copies.",
            discussion: "The next fetch downloads the file again, checks its structure and pins the hash it sees.")
        @OptionGroup var location: Location
        @Argument(help: "Zoo id, or ID/FILE for one of its files.") var name: String
        @Flag(help: "Print JSON: the pins dropped.") var json = false

        func run() throws {
            try reportingErrors {
                let zoo = try location.zoo()
                let slash = name.firstIndex(of: "/")
                let e = try zoo.entry(slash.map { String(name[..<$0]) } ?? name)
                let file = slash.map { String(name[name.index(after: $0)...]) }
                let dropped = try Fetcher.unpin(e, fileName: file, cache: ZooCache.directory(location.cache))
                if json {
                    writeOut(JSONWriter.string(.array(dropped.map { d in
                        .object([("file", .string(d.file)), ("sha256", .string(d.sha256)), ("removed_copy", d.removedCopy.map { .string($0) } ?? .null)])
                    })))
                    return
                }
                if dropped.isEmpty { printError("ditkit: nothing pinned for \(name)") }
                for d in dropped {
                    writeOut("unpinned \(d.file) (sha256 \(d.sha256))" + (d.removedCopy.map { "; removed the cached copy \($0)" } ?? "") + "\n")
                }
            }
        }
    }
}

/// Prints what fetch did (not at all with `quiet`, for --json); trust on first use is said loudly, on stderr.
func report(_ r: FetchResult, quiet: Bool = false) {
    if !quiet {
        writeOut("\(r.how) \(r.path): \(humanBytes(r.bytes)), sha256 \(r.sha256) (\(r.verification))\n")
    }
    if r.pinnedNow {
        // One printError per line: each line is escaped on its own (a newline inside one would be shown as `\n`).
        printError("ditkit: WARNING: no SHA-256 is published for \(FileSystem.baseName(r.path)). TRUST ON FIRST USE: recorded \(r.sha256)")
        printError("ditkit: after checking its structure (\(r.structure ?? "unchecked")); later fetches must match it.")
        printError("ditkit: Compare it with a hash from a source you trust; `ditkit zoo unpin` drops the pin.")
    }
}
