// `ditkit zoo fetch`: HTTP(S) download into the cache with resume (Range requests), SHA-256
// verification (published hash, or trust on first use), and an atomic rename into place.
import DiTKitCore
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The local cache: `$DITKIT_CACHE`, else `$XDG_CACHE_HOME/ditkit`, else `~/.cache/ditkit`.
public enum ZooCache {
    public static func directory(_ explicit: String? = nil) -> String {
        explicit.map(CacheDirectory.trimmed) ?? CacheDirectory.standard
    }

    /// Trust-on-first-use pins recorded by fetch.
    public static func pinsFile(_ cache: String) -> String { cache + "/zoo/pins.SHA256SUMS" }
}

/// What fetch did.
public struct FetchResult: Sendable {
    public var path: String
    public var sha256: String
    public var bytes: Int
    /// `downloaded`, `resumed`, or `cached`.
    public var how: String
    /// Set when the hash was recorded now (trust on first use).
    public var pinnedNow: Bool
    /// How the hash was checked: `published`, `pinned`, `trust-on-first-use`.
    public var verification: String
    /// What the structure check before pinning found (`DiT-XL/2: 292 tensors, …`); set with `pinnedNow`.
    public var structure: String?

    /// `ditkit zoo fetch --json`.
    public var json: JSONValue {
        var m: [(String, JSONValue)] = [("path", .string(path)), ("how", .string(how)), ("bytes", .int(bytes)), ("sha256", .string(sha256)),
                                        ("verification", .string(verification)), ("pinned_now", .bool(pinnedNow))]
        if let s = structure { m.append(("structure", .string(s))) }
        return .object(m)
    }
}

/// The local copy of one zoo file and what its hash says.
public struct LocalCopy: Sendable {
    public var file: ZooFile
    /// The path in the cache, when the file is there.
    public var path: String?
    /// `verified` (matches the published hash), `pinned` (matches the hash pinned on first fetch),
    /// `unverified` (no published or pinned hash), `sha256-mismatch`, or `none`.
    public var status: String

    public var json: JSONValue {
        .object([("file", .string(file.name)), ("path", path.map { .string($0) } ?? .null), ("status", .string(status))])
    }
}

extension ZooCache {
    /// The local copies of `entry`'s files in `cache`, hashed and checked against the published
    /// hash or, for unpinned files, the trust-on-first-use pin among `checksums`.
    public static func localCopies(_ entry: ZooEntry, cache: String, checksums: [ChecksumLine]) throws -> [LocalCopy] {
        try entry.files.map { f in
            let local = cache + "/zoo/" + entry.id + "/" + f.name
            guard FileSystem.exists(local) else { return LocalCopy(file: f, path: nil, status: "none") }
            let sha = try FileDigests(cache: cache).sha256(path: local) { try SHA256Hasher.hex(file: local) }.sha256
            let want = f.sha256 ?? checksums.last { $0.path == "\(entry.id)/\(f.name)" }?.sha256
            // A pin says only that this is the file seen first (its structure checked), not that anyone vouched for it.
            let match = f.sha256 != nil ? "verified" : "pinned"
            return LocalCopy(file: f, path: local, status: want == nil ? "unverified" : (want == sha ? match : "sha256-mismatch"))
        }
    }
}

public enum Fetcher {
    /// Fetches the primary file of `entry` (or `fileName`) into `<cache>/zoo/<id>/`, verifying it.
    /// `progress` gets one `downloading` phase (in bytes) when a download runs; a resumed download
    /// begins it with the bytes already on disk.
    public static func fetch(_ entry: ZooEntry, fileName: String? = nil, cache: String, mirror: String? = nil,
                             progress: ProgressReporter? = nil) throws -> FetchResult {
        guard let file = fileName.flatMap({ n in entry.files.first { $0.name == n } }) ?? entry.primaryFile else {
            throw ZooError.noFiles(entry.id)
        }
        let dir = cache + "/zoo/" + entry.id
        try FileSystem.makeDirectories(dir)
        let final = dir + "/" + file.name
        let label = "\(entry.id)/\(file.name)"
        let pins = (try? Checksums.parse(String(decoding: try FileSystem.readFile(ZooCache.pinsFile(cache)), as: UTF8.self), file: ZooCache.pinsFile(cache))) ?? []
        let pinned = pins.last { $0.path == label }?.sha256
        let expected = file.sha256 ?? pinned

        if FileSystem.exists(final) {
            let sha = try FileDigests(cache: cache).sha256(path: final) { try SHA256Hasher.hex(file: final) }.sha256
            // Nothing to check the hash against: the file must at least hold what the entry describes.
            let structure = expected == nil ? try? entry.checkStructure(of: file, at: final) : nil
            if let e = expected, e != sha {
                // A damaged or foreign file in the cache: remove it and download again.
                FileSystem.removeTree(final)
            } else if expected == nil && structure == nil {
                // An unpinned file in the cache that is not the entry's model: the same.
                FileSystem.removeTree(final)
            } else {
                var pinnedNow = false
                if expected == nil {
                    try Checksums.appendPin(ChecksumLine(sha256: sha, path: label), to: ZooCache.pinsFile(cache))
                    pinnedNow = true
                }
                return FetchResult(path: final, sha256: sha, bytes: FileSystem.fileSize(final) ?? 0, how: "cached", pinnedNow: pinnedNow,
                                   verification: file.sha256 != nil ? "published" : (pinnedNow ? "trust-on-first-use" : "pinned"),
                                   structure: structure)
            }
        }

        let partial = dir + "/." + file.name + ".part"
        let url = mirror ?? file.url
        let resumedFrom = FileSystem.fileSize(partial) ?? 0
        let how = try HTTPDownload.run(url: url, to: partial, expectedSize: file.bytes, progress: progress)
        let sha = try SHA256Hasher.hex(file: partial)
        if let want = file.sha256, want != sha {
            FileSystem.removeTree(partial)
            throw ZooError.checksum(file: label, expected: want, got: sha)
        }
        if file.sha256 == nil, let p = pinned, p != sha {
            FileSystem.removeTree(partial)
            throw ZooError.pinMismatch(file: label, pinned: p, got: sha)
        }
        if let size = file.bytes, let got = FileSystem.fileSize(partial), got != size {
            FileSystem.removeTree(partial)
            throw ZooError.download("\(label): \(got) bytes downloaded, the manifest says \(size)")
        }
        // Trust on first use trusts the bytes, not the URL they came from: before the hash is pinned,
        // the file must hold the model the entry describes.
        var structure: String?
        if file.sha256 == nil && pinned == nil {
            do { structure = try entry.checkStructure(of: file, at: partial) } catch {
                FileSystem.removeTree(partial)
                throw error
            }
        }
        guard rename(partial, final) == 0 else { throw ZooError.download("cannot move \(partial) into place") }
        var pinnedNow = false
        if file.sha256 == nil && pinned == nil {
            try Checksums.appendPin(ChecksumLine(sha256: sha, path: label), to: ZooCache.pinsFile(cache))
            pinnedNow = true
        }
        return FetchResult(path: final, sha256: sha, bytes: FileSystem.fileSize(final) ?? 0,
                           how: how == .resumed && resumedFrom > 0 ? "resumed" : "downloaded", pinnedNow: pinnedNow,
                           verification: file.sha256 != nil ? "published" : (pinnedNow ? "trust-on-first-use" : "pinned"),
                           structure: structure)
    }
}

extension Fetcher {
    /// The files reading `entry`'s model needs, in the order they are fetched: JSON companions
    /// (a diffusers config.json) and shards first, the primary weights (or a shard index) last, so
    /// that the primary's structure check reads them. Alternative formats of the same weights (a
    /// `.bin` beside the `.safetensors`) are left out: nothing reads them.
    public static func modelFiles(_ entry: ZooEntry) -> [ZooFile] {
        entry.files.filter { !$0.primary && ($0.container == "json" || entry.isShard($0)) } + entry.files.filter(\.primary)
    }

    /// Fetches `modelFiles(entry)`; with a `mirror` for the primary file, the others are looked up
    /// beside it. Returns the primary file's result last. When the primary file is refused, the
    /// pins this call recorded for the others are dropped again (`unpin`).
    public static func fetchModel(_ entry: ZooEntry, cache: String, mirror: String? = nil,
                                  progress: ProgressReporter? = nil) throws -> [FetchResult] {
        var results: [FetchResult] = []
        for f in modelFiles(entry) {
            let url = f.primary ? mirror : mirror.map { m -> String in
                guard let slash = m.lastIndex(of: "/") else { return m }
                return String(m[..<slash]) + "/" + f.name
            }
            do {
                results.append(try fetch(entry, fileName: f.name, cache: cache, mirror: url, progress: progress))
            } catch {
                for r in results where r.pinnedNow {
                    _ = try? unpin(entry, fileName: FileSystem.baseName(r.path), cache: cache)
                }
                throw error
            }
        }
        return results
    }
}

/// A trust-on-first-use pin `zoo unpin` dropped.
public struct DroppedPin: Sendable {
    /// `<entry id>/<file name>`.
    public var file: String
    public var sha256: String
    /// The cached copy removed with the pin, if there was one.
    public var removedCopy: String?
}

extension Fetcher {
    /// Drops the trust-on-first-use pins of `entry`'s files (or of `fileName` only) from the pins
    /// file in `cache`, and removes their cached copies: a copy left behind would be pinned again
    /// by the next fetch. Returns what was dropped (empty when nothing was pinned). Throws
    /// `ZooError.unknownFile` for a file name the entry does not have.
    public static func unpin(_ entry: ZooEntry, fileName: String? = nil, cache: String) throws -> [DroppedPin] {
        if let n = fileName, !entry.files.contains(where: { $0.name == n }) {
            throw ZooError.unknownFile(entry: entry.id, name: n, known: entry.files.map(\.name))
        }
        let wanted = Set(entry.files.filter { fileName == nil || $0.name == fileName }.map { "\(entry.id)/\($0.name)" })
        let pinsFile = ZooCache.pinsFile(cache)
        guard let bytes = try? FileSystem.readFile(pinsFile) else { return [] }
        let text = String(decoding: bytes, as: UTF8.self)
        let pins = try Checksums.parse(text, file: pinsFile)
        let dropped = pins.filter { wanted.contains($0.path) }
        guard !dropped.isEmpty else { return [] }
        // Keep every other line as it was (comments included).
        let kept = text.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
            guard let p = try? Checksums.parse(String(line), file: pinsFile).first else { return true }
            return !wanted.contains(p.path)
        }
        var out = kept.joined(separator: "\n")
        if !out.hasSuffix("\n") { out += "\n" }
        try AtomicOutput.write(Array(out.utf8), to: pinsFile, kind: .cacheFile, force: true)
        var seen = Set<String>()
        return dropped.compactMap { pin in
            guard seen.insert(pin.path).inserted else { return nil }
            let copy = cache + "/zoo/" + pin.path
            let had = FileSystem.exists(copy)
            if had { FileSystem.removeTree(copy) }
            return DroppedPin(file: pin.path, sha256: pin.sha256, removedCopy: had ? copy : nil)
        }
    }
}

/// One HTTP(S) download into a partial file, resuming it with a Range request when it exists.
enum HTTPDownload {
    enum How { case fresh, resumed }

    final class Delegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
        let path: String
        let offset: Int
        let progress: ProgressReporter?
        var begun = false
        var handle: FileHandle?
        var status = 0
        var error: String?
        var received = 0
        var total: Int?
        var resumed = false
        let done = DispatchSemaphore(value: 0)

        init(path: String, offset: Int, progress: ProgressReporter?) {
            self.path = path
            self.offset = offset
            self.progress = progress
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
            guard let http = response as? HTTPURLResponse else { error = "not an HTTP response"; completionHandler(.cancel); return }
            status = http.statusCode
            let length = Int(http.value(forHTTPHeaderField: "Content-Length") ?? "")
            switch status {
            case 206:
                // Content-Range: bytes START-END/TOTAL must continue where the partial file stops.
                let range = http.value(forHTTPHeaderField: "Content-Range") ?? ""
                let start = range.split(whereSeparator: { $0 == " " || $0 == "-" }).dropFirst().first.flatMap { Int($0) }
                guard start == offset else { error = "server resumed at \(start.map(String.init) ?? "?") instead of \(offset)"; completionHandler(.cancel); return }
                resumed = true
                total = length.map { $0 + offset }
                received = offset
            case 200:
                total = length
            default:
                error = "HTTP \(status)"
                completionHandler(.cancel)
                return
            }
            // A resumed download appends to the partial file; a full one starts it afresh.
            let fm = FileManager.default
            if (!resumed || !fm.fileExists(atPath: path)) && !fm.createFile(atPath: path, contents: nil) {
                error = "cannot create \(path)"
                completionHandler(.cancel)
                return
            }
            handle = FileHandle(forWritingAtPath: path)
            if resumed { _ = try? handle?.seekToEnd() }
            // The bar starts at the bytes already on disk: they are not counted in the rate.
            progress?.begin("downloading", total: total ?? max(received, 1), unit: .bytes, done: received)
            begun = true
            completionHandler(.allow)
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
            guard error == nil else { return }
            do {
                try handle?.write(contentsOf: data)
            } catch let e {
                // A full disk: stop cleanly, keeping what was written for a later resume.
                error = "writing \(path): \(e.localizedDescription)"
                dataTask.cancel()
                return
            }
            received += data.count
            progress?.advance(data.count)
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError e: Error?) {
            if let e, error == nil { error = e.localizedDescription }
            try? handle?.synchronize()
            try? handle?.close()
            if begun { progress?.finish() }
            done.signal()
        }
    }

    static func run(url: String, to path: String, expectedSize: Int?, progress: ProgressReporter?) throws -> How {
        guard let u = URL(string: url), ["http", "https"].contains(u.scheme ?? "") else { throw ZooError.download("bad URL \(url)") }
        let offset = FileSystem.fileSize(path) ?? 0
        var request = URLRequest(url: u)
        request.timeoutInterval = 60
        if offset > 0 { request.setValue("bytes=\(offset)-", forHTTPHeaderField: "Range") }
        let delegate = Delegate(path: path, offset: offset, progress: progress)
        let session = URLSession(configuration: .ephemeral, delegate: delegate, delegateQueue: nil)
        let task = session.dataTask(with: request)
        task.resume()
        delegate.done.wait()
        session.finishTasksAndInvalidate()
        if delegate.status == 416, offset > 0, expectedSize == nil || expectedSize == offset {
            return .resumed   // the partial file was already complete
        }
        if let e = delegate.error { throw ZooError.download("\(url): \(e)") }
        if let total = delegate.total, delegate.received != total {
            throw ZooError.download("\(url): connection closed after \(delegate.received) of \(total) bytes (run fetch again to resume)")
        }
        return delegate.resumed ? .resumed : .fresh
    }
}
