// `ditkit check`: every byte of a bundle against its manifest.
import DiTKitCore

/// One problem found by a check.
public struct BundleMismatch: Sendable, Equatable, CustomStringConvertible {
    /// Tensor (or `manifest.json`, `weights.bin`) the problem is in.
    public var subject: String
    public var problem: String
    public var description: String { "\(TerminalText.escaped(subject)): \(problem)" }
}

public enum BundleCheck {
    /// Re-hashes every tensor and scale (with the manifest's checksum: XXH3-128 from format version 3
    /// on, SHA-256 before), checks that padding is zero and that the manifest matches its recorded
    /// SHA-256. Returns the mismatches (empty when the bundle is intact).
    public static func run(_ bundle: NativeBundle, progress: ProgressReporter? = nil) throws -> [BundleMismatch] {
        var problems: [BundleMismatch] = []
        let manifestHash = bundle.manifestBytes.withUnsafeBytes { SHA256Hasher.hex($0) }
        if let sidecar = bundle.checksumLine {
            let text = String(decoding: sidecar, as: UTF8.self)
            let recorded = text.split(separator: " ").first.map(String.init) ?? ""
            if recorded != manifestHash || !text.hasSuffix("  \(BundleManifest.manifestFile)\n") {
                problems.append(BundleMismatch(subject: BundleManifest.manifestFile, problem: "SHA-256 \(manifestHash) differs from \(BundleManifest.checksumFile) (\(recorded.prefix(64))): the manifest was modified"))
            }
        } else {
            problems.append(BundleMismatch(subject: BundleManifest.checksumFile, problem: "missing"))
        }

        // Every record, then the gaps between them.
        var records: [(name: String, record: StoredRecord)] = []
        for t in bundle.manifest.tensors {
            records.append((t.name, t.stored))
            if let s = t.scale { records.append((t.name + ".scale", s)) }
        }
        let total = records.reduce(0) { $0 + $1.record.bytes }
        progress?.begin("checking", total: total, unit: .bytes)
        let weights = bundle.weightsBytes
        let algorithm = bundle.manifest.checksum
        let order = records.indices.sorted { records[$0].record.bytes > records[$1].record.bytes }
        let results = parallelMap(records.count, order: order) { i -> String in
            let r = records[i].record
            // In steps, each released once hashed: a 24 GB bundle keeps a few steps resident.
            defer { progress?.advance(r.bytes) }
            return algorithm.hex(releasing: weights.slice(r.offset..<(r.offset + r.bytes)))
        }
        progress?.finish()
        // A weights file that shrank under the check read as zeros: that is not a bit flip.
        try bundle.checkUnchanged()
        for (i, (name, r)) in records.enumerated() where results[i] != r.checksum {
            problems.append(BundleMismatch(subject: name, problem: "\(algorithm.title) of the stored bytes is \(results[i]), the manifest records \(TerminalText.escaped(r.checksum))"))
        }
        let sorted = records.map(\.record).sorted { $0.offset < $1.offset }
        var position = 0
        for r in sorted + [StoredRecord(dtype: .u8, shape: [0], offset: weights.count, bytes: 0, checksum: "")] {
            if r.offset > position {
                let gap = UnsafeRawBufferPointer(rebasing: weights.buffer[position..<r.offset])
                if let bad = gap.firstIndex(where: { $0 != 0 }) {
                    problems.append(BundleMismatch(subject: BundleManifest.weightsFile, problem: "non-zero padding at byte \(position + bad)"))
                }
                bundle.releaseWeights(position..<r.offset)
            }
            position = max(position, r.offset + r.bytes)
        }
        return problems
    }
}
