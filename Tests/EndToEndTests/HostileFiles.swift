// Builds hostile inputs at test time: too large to commit (megabytes of strings, tens of megabytes
// of header), tiny to describe. Pickles are written opcode by opcode; torch zips as stored zips
// with the members torch.save writes.
import Foundation
import DiTKitCore
@testable import ditkit_fuzz

/// A pickle written opcode by opcode (protocol 2 unless said otherwise).
struct PickleWriter {
    var bytes: [UInt8] = [0x80, 0x02]

    mutating func u32(_ v: Int) { for k in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * k))) } }
    mutating func u64(_ v: Int) { for k in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * k))) } }
    mutating func emptyDict() { bytes.append(0x7D) }
    mutating func emptyTuple() { bytes.append(0x29) }
    mutating func mark() { bytes.append(0x28) }
    mutating func setItems() { bytes.append(0x75) }
    mutating func tuple() { bytes.append(0x74) }
    mutating func reduce() { bytes.append(0x52) }
    mutating func binPersID() { bytes.append(0x51) }
    mutating func stop() { bytes.append(0x2E) }
    mutating func newFalse() { bytes.append(0x89) }
    mutating func string(_ s: String) { bytes.append(0x58); u32(s.utf8.count); bytes += Array(s.utf8) }
    mutating func binBytes(_ b: [UInt8]) { bytes.append(0x42); u32(b.count); bytes += b }
    mutating func int(_ v: Int) { bytes.append(0x4A); u32(v) }
    mutating func put(_ i: Int) { bytes.append(0x72); u32(i) }
    mutating func get(_ i: Int) { bytes.append(0x6A); u32(i) }
    mutating func global(_ module: String, _ name: String) { bytes.append(0x63); bytes += Array("\(module)\n\(name)\n".utf8) }
    mutating func ints(_ values: [Int]) { mark(); for v in values { int(v) }; tuple() }

    /// `_rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', count), offset, size, stride, False, OrderedDict())`.
    mutating func floatTensor(key: String, count: Int, offset: Int = 0, size: [Int], stride: [Int]) {
        global("torch._utils", "_rebuild_tensor_v2")
        mark()
        mark(); string("storage"); global("torch", "FloatStorage"); string(key); string("cpu"); int(count); tuple()
        binPersID()
        int(offset)
        ints(size)
        ints(stride)
        newFalse()
        global("collections", "OrderedDict"); emptyTuple(); reduce()
        tuple()
        reduce()
    }
}

/// Stored zips: the fuzz harness's writer (`ditkit-fuzz`), plus torch.save's member layout.
extension StoredZip {
    /// A torch.save-shaped archive: `archive/data.pkl`, `byteorder`, `data/<key>`, `version`.
    static func torch(pickle: [UInt8], storages: [(String, [UInt8])] = []) -> [UInt8] {
        var entries: [(String, [UInt8])] = [("archive/data.pkl", pickle), ("archive/byteorder", Array("little".utf8))]
        for (k, d) in storages { entries.append(("archive/data/\(k)", d)) }
        entries.append(("archive/version", Array("3\n".utf8)))
        return archive(entries)
    }
}

/// A safetensors file from its header text and data.
func safetensorsFile(header: String, data: [UInt8] = []) -> [UInt8] {
    var out: [UInt8] = []
    let h = Array(header.utf8)
    for k in 0..<8 { out.append(UInt8(truncatingIfNeeded: h.count >> (8 * k))) }
    return out + h + data
}

/// Whether `text` holds a byte that a terminal would obey: a C0 control other than LF (or any,
/// with `allowingNewlines` false), DEL, or a UTF-8 encoded C1 control or bidirectional override.
func holdsRawControl(_ text: String, allowingNewlines: Bool = true) -> Bool {
    text.unicodeScalars.contains { u in
        if u == "\n" { return !allowingNewlines }
        return u.value < 0x20 || (0x7F...0x9F).contains(u.value) || (0x202A...0x202E).contains(u.value) || (0x2066...0x2069).contains(u.value)
    }
}

/// Runs `ditkit args...` under an address-space limit of `megabytes` (so an unbounded allocation
/// fails instead of succeeding slowly), a CPU-time limit (load-independent: a file that makes a reader
/// spin is killed by SIGXCPU and fails the exit-status check) and a wall-clock kill after `seconds` for
/// reads that block; returns the result and the wall seconds it took.
func runBounded(_ args: [String], megabytes: Int = 1000, seconds: Int = 60, cpuSeconds: Int = 20) throws -> (ToolResult, Double) {
    let start = Date()
    let quoted = args.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
    let r = try Tool.run(["sh", "-c", "ulimit -v \(megabytes * 1000); ulimit -t \(cpuSeconds); exec timeout -s KILL \(seconds) \"$0\" \(quoted)", Tool.binary], viaShell: true)
    return (r, Date().timeIntervalSince(start))
}
