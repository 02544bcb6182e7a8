// Duplicate detection for the many names a file can list (tensor paths, JSON member names).

/// A set of strings that answers "seen before?" quickly for hundreds of thousands of long, similar
/// strings. Swift's `Set<String>` compares whole strings at every probe of its table (it keeps no
/// hashes), which made half a million 400-byte names cost seconds; this keeps the table on the
/// strings' hash values and compares strings only when two hashes agree.
public struct UniqueStrings: Sendable {
    private var byHash: [Int: String] = [:]
    /// Strings whose hash collided with a different string's.
    private var collided = Set<String>()

    public init() {}

    /// The number of distinct strings inserted.
    public private(set) var count = 0

    /// Inserts `s`; returns `false` when it was already present.
    public mutating func insert(_ s: String) -> Bool {
        let h = s.hashValue
        guard let first = byHash[h] else {
            byHash[h] = s
            count += 1
            return true
        }
        if first == s { return false }
        let inserted = collided.insert(s).inserted
        if inserted { count += 1 }
        return inserted
    }
}
