// The central directory of a zip archive, read straight from the mapped bytes.
//
// libzip (see `TorchArchive`) is the authority on the container and reads the small records;
// this reader exists for what libzip does not expose or check: the byte offset of each
// entry's data (so storages can be viewed zero-copy in the mapping, as torch does with
// `getRecordOffset`), and refusing archives whose entries overlap or share bytes (overlap zip
// bombs) or that carry data after the end record (polyglots).
//
// Layout (APPNOTE.TXT 6.3): [local header 30 B + name + extra][data][descriptor]... central
// directory entries (46 B + name + extra + comment)... [zip64 end record 56 B][zip64 locator
// 20 B] end record (22 B + comment).
import DiTKitCore

/// Why a zip archive was refused.
public enum ZipError: Error, CustomStringConvertible, Sendable {
    case notZip
    case malformed(String, offset: Int)
    case libzip(String)

    public var description: String {
        switch self {
        case .notZip: return "not a zip archive"
        case let .malformed(what, o): return "corrupt zip archive at byte \(o): \(what)"
        case let .libzip(what): return "corrupt zip archive: \(what)"
        }
    }
}

/// One entry of the central directory, with its local header resolved.
public struct ZipEntry: Sendable {
    public var name: String
    public var method: UInt16
    public var flags: UInt16
    public var compressedSize: Int
    public var uncompressedSize: Int
    public var crc32: UInt32
    public var localHeaderOffset: Int
    /// Offset of the first data byte, from the local header (`lh + 30 + name + extra`).
    public var dataOffset: Int
}

/// The parsed central directory.
public struct ZipDirectory: Sendable {
    public var entries: [ZipEntry]

    private static let maxEntries = 1_000_000

    /// Parses the directory of the archive in `bytes`. Throws `ZipError`. `read(offset, count)`, when
    /// given, reads the local headers (one beside each record, spread over the whole file) instead of
    /// `bytes`: touching one page of a mapped file can map a whole large folio of the page cache, so
    /// a checkpoint of 300 records read through its mapping counts hundreds of MB as resident.
    public init(_ bytes: UnsafeRawBufferPointer, localHeaders read: ((Int, Int) throws -> [UInt8])? = nil) throws {
        let n = bytes.count
        func u16(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) throws -> Int {
            let lo = UInt64(u32(o)), hi = UInt64(u32(o + 4))
            return try Checked.int(lo | hi << 32, "a zip64 field")
        }
        func need(_ o: Int, _ len: Int, _ what: String) throws {
            guard o >= 0, len >= 0, o <= n, len <= n - o else { throw ZipError.malformed("\(what) extends past the end of the file", offset: o) }
        }

        // End of central directory: search back over at most a 64 KiB comment.
        guard n >= 22 else { throw ZipError.malformed("file too short for an end-of-directory record", offset: 0) }
        var eocd = -1
        var o = n - 22
        let lowest = max(0, n - 22 - 65535)
        while o >= lowest {
            if bytes[o] == 0x50, bytes[o + 1] == 0x4B, bytes[o + 2] == 0x05, bytes[o + 3] == 0x06 { eocd = o; break }
            o -= 1
        }
        guard eocd >= 0 else { throw ZipError.malformed("no end-of-central-directory record", offset: n) }
        let commentLength = u16(eocd + 20)
        guard eocd + 22 + commentLength <= n else {
            throw ZipError.malformed("the end-of-central-directory record's comment of \(commentLength) bytes runs past the end of the file (\(n - eocd - 22) bytes remain)", offset: eocd)
        }
        guard eocd + 22 + commentLength == n else {
            throw ZipError.malformed("\(n - eocd - 22 - commentLength) bytes after the end-of-central-directory record", offset: eocd)
        }
        guard u16(eocd + 4) == 0, u16(eocd + 6) == 0 else { throw ZipError.malformed("multi-disk archives are not supported", offset: eocd) }
        var count = u16(eocd + 10)
        var cdSize = u32(eocd + 12)
        var cdOffset = u32(eocd + 16)
        var end = eocd
        if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF || (eocd >= 20 && u32(eocd - 20) == 0x0706_4B50) {
            let loc = eocd - 20
            guard loc >= 0, u32(loc) == 0x0706_4B50 else { throw ZipError.malformed("zip64 fields without a zip64 locator", offset: eocd) }
            let z = try u64(loc + 8)
            try need(z, 56, "zip64 end record")
            guard u32(z) == 0x0606_4B50 else { throw ZipError.malformed("bad zip64 end-record signature", offset: z) }
            count = try u64(z + 32)
            cdSize = try u64(z + 40)
            cdOffset = try u64(z + 48)
            end = z
        }
        guard count <= ZipDirectory.maxEntries, count <= cdSize / 46 + 1 else {
            throw ZipError.malformed("implausible entry count \(count) for a \(cdSize)-byte directory", offset: eocd)
        }
        try need(cdOffset, cdSize, "central directory")
        guard try Checked.add(cdOffset, cdSize) <= end else { throw ZipError.malformed("central directory overlaps the end record", offset: cdOffset) }

        var entries: [ZipEntry] = []
        entries.reserveCapacity(count)
        var names = Set<String>()
        var p = cdOffset
        for _ in 0..<count {
            try need(p, 46, "central directory entry")
            guard u32(p) == 0x0201_4B50 else { throw ZipError.malformed("bad central-directory signature", offset: p) }
            let flags = UInt16(u16(p + 8))
            let method = UInt16(u16(p + 10))
            let crc = UInt32(u32(p + 16))
            var comp = u32(p + 20), uncomp = u32(p + 24)
            let nameLen = u16(p + 28), extraLen = u16(p + 30), commentLen = u16(p + 32)
            var lh = u32(p + 42)
            try need(p + 46, nameLen + extraLen + commentLen, "central directory entry")
            guard let name = String(validating: UnsafeRawBufferPointer(rebasing: bytes[(p + 46)..<(p + 46 + nameLen)]), as: UTF8.self) else {
                throw ZipError.malformed("entry name is not UTF-8", offset: p + 46)
            }
            // zip64 extended information, in the order of the fields that overflowed.
            var e = p + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let id = u16(e), len = u16(e + 2)
                guard e + 4 + len <= extraEnd else { throw ZipError.malformed("extra field overruns its entry", offset: e) }
                if id == 0x0001 {
                    var f = e + 4
                    func next() throws -> Int {
                        guard f + 8 <= e + 4 + len else { throw ZipError.malformed("short zip64 extra field", offset: e) }
                        defer { f += 8 }
                        return try u64(f)
                    }
                    if uncomp == 0xFFFF_FFFF { uncomp = try next() }
                    if comp == 0xFFFF_FFFF { comp = try next() }
                    if lh == 0xFFFF_FFFF { lh = try next() }
                }
                e += 4 + len
            }
            guard flags & 1 == 0 else { throw ZipError.malformed("entry \(TerminalText.quoted(name)) is encrypted", offset: p) }
            guard names.insert(name).inserted else { throw ZipError.malformed("duplicate entry name \(TerminalText.quoted(name))", offset: p) }

            try need(lh, 30, "local header of \(TerminalText.quoted(name))")
            // The local header's fixed part and name, from `read` or from `bytes`.
            let fixed = try read.map { try $0(lh, 30) } ?? Array(bytes[lh..<(lh + 30)])
            guard fixed.count == 30 else { throw ZipError.malformed("local header of \(TerminalText.quoted(name)) extends past the end of the file", offset: lh) }
            func l16(_ o: Int) -> Int { Int(fixed[o]) | Int(fixed[o + 1]) << 8 }
            guard l16(0) | l16(2) << 16 == 0x0403_4B50 else { throw ZipError.malformed("bad local-header signature for \(TerminalText.quoted(name))", offset: lh) }
            let lNameLen = l16(26), lExtraLen = l16(28)
            try need(lh + 30, lNameLen + lExtraLen, "local header of \(TerminalText.quoted(name))")
            let localName = lNameLen == nameLen ? try read.map { try $0(lh + 30, lNameLen) } ?? Array(bytes[(lh + 30)..<(lh + 30 + lNameLen)]) : []
            guard lNameLen == nameLen, localName.elementsEqual(bytes[(p + 46)..<(p + 46 + nameLen)]) else {
                throw ZipError.malformed("local header name differs from the central directory for \(TerminalText.quoted(name))", offset: lh)
            }
            guard UInt16(l16(8)) == method else {
                throw ZipError.malformed("local header compression method differs from the central directory for \(TerminalText.quoted(name))", offset: lh)
            }
            let data = lh + 30 + lNameLen + lExtraLen
            try need(data, comp, "data of \(TerminalText.quoted(name))")
            entries.append(ZipEntry(name: name, method: method, flags: flags, compressedSize: comp, uncompressedSize: uncomp,
                                    crc32: crc, localHeaderOffset: lh, dataOffset: data))
            p += 46 + nameLen + extraLen + commentLen
        }
        guard p <= cdOffset + cdSize else { throw ZipError.malformed("central directory is longer than declared", offset: p) }

        // No two entries may share bytes, and none may reach into the central directory.
        let sorted = entries.sorted { $0.localHeaderOffset < $1.localHeaderOffset }
        var previousEnd = 0
        var previousName = ""
        for entry in sorted {
            guard entry.localHeaderOffset >= previousEnd else {
                throw ZipError.malformed("entries \(TerminalText.quoted(previousName)) and \(TerminalText.quoted(entry.name)) overlap", offset: entry.localHeaderOffset)
            }
            previousEnd = entry.dataOffset + entry.compressedSize
            previousName = entry.name
            guard previousEnd <= cdOffset else {
                throw ZipError.malformed("entry \(TerminalText.quoted(entry.name)) overlaps the central directory", offset: entry.dataOffset)
            }
        }
        self.entries = entries
    }
}
