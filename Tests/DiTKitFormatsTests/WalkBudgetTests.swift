// What walking and rendering a pickle may produce (issue 18): memo references multiply nodes, so
// the limits count output, renderings are cut, self-references are named, calls cannot copy
// memoised values without bound, and sizes from the file are checked.
import Testing
import DiTKitCore
@testable import DiTKitFormats

@Suite struct WalkBudgetTests {
    func load(_ p: PickleBytes, _ layout: StorageIDLayout = .archive) throws -> PickleTree { try PickleMachine.load(p.bytes, storageIDs: layout) }
    func refusal(_ p: PickleBytes, _ layout: StorageIDLayout = .archive) -> String {
        do {
            let t = try load(p, layout)
            _ = try withExtendedLifetime(t) { try PickleTreeWalker.walk(t.root) }
            return "accepted"
        } catch { return String(describing: error) }
    }

    /// `{'s': <text>, 'k1': s, 'k2': s, ...}`: one string behind `count` memo references.
    func sharedString(_ text: String, count: Int) -> PickleBytes {
        var p = PickleBytes()
        p.raw([0x80, 2]); p.op(.emptyDict); p.op(.mark)
        p.unicode("s"); p.unicode(text); p.op(.binPut); p.raw([0])
        for k in 0..<count { p.unicode("k\(k)"); p.op(.binGet); p.raw([0]) }
        p.op(.setItems); p.op(.stop)
        return p
    }

    @Test func renderingsAreCutAndWorkFollowsTheCut() throws {
        let text = String(repeating: "abcdefgh", count: 1 << 17)   // 1 MiB
        let tree = try load(sharedString(text, count: 2000))
        let c = try PickleTreeWalker.walk(tree.root)
        #expect(c.objects.count == 2001)
        #expect(c.objects.allSatisfy { $0.value.utf8.count <= WalkLimits().maxRenderedBytes + 3 && $0.value.hasSuffix("…") })
        #expect(c.objects[0].value.hasPrefix("abcdefgh"))
        // Nested strings keep Python's repr, cut the same way.
        #expect(PythonRepr.render(.string("it's"), limit: 100) == "it's")
        let list = PickleList()
        list.items = [.string(text), .bytes([0, 1, 0x27]), .int(3)]
        let r = PythonRepr.render(.list(list), limit: 30)
        #expect(r == "['abcdefghabcdefghabcdefghabcd…")
        list.items = [.bytes([0, 1, 0x27]), .bigInt([UInt8](repeating: 0x11, count: 300))]
        #expect(PythonRepr.render(.list(list), limit: 100) == "[b'\\x00\\x01\\'', <int of 2400 bits>]")
    }

    @Test func outputIsBudgetedNotJustNodes() throws {
        var limits = WalkLimits()
        limits.maxOutputBytes = 1 << 20
        let t = try load(sharedString(String(repeating: "x", count: 100_000), count: 1000))
        #expect(throws: WalkError.self) { try PickleTreeWalker.walk(t.root, limits: limits) }
        limits = WalkLimits()
        limits.maxEntries = 500
        #expect(throws: WalkError.self) { try PickleTreeWalker.walk(t.root, limits: limits) }
    }

    @Test func selfReferencesAreNamedOrPrintedAsPythonPrintsThem() throws {
        // l = []; l.append(l); {'l': l}: no tensor inside, one object "[[...]]" (torch loads it too).
        var p = PickleBytes()
        p.raw([0x80, 2]); p.op(.emptyDict); p.unicode("l")
        p.op(.emptyList); p.op(.binPut); p.raw([0]); p.op(.binGet); p.raw([0]); p.op(.append)
        p.op(.setItem); p.op(.stop)
        let tree = try load(p)   // the tree's arena owns its nodes: keep it alive while walking
        let c = try PickleTreeWalker.walk(tree.root)
        #expect(c.objects.map(\.name) == ["l"])
        #expect(c.objects.map(\.value) == ["[[...]]"])
        // d = {}; d['d'] = d: a dict is walked by name, and a path through itself has no end.
        var q = PickleBytes()
        q.raw([0x80, 2]); q.op(.emptyDict); q.op(.binPut); q.raw([0])
        q.unicode("d"); q.op(.binGet); q.raw([0]); q.op(.setItem); q.op(.stop)
        let e = refusal(q)
        #expect(e.contains("contains itself at 'd'") && e.contains("self-referencing"), "\(e)")
        #expect(!e.contains("deeper than"))
    }

    @Test func callsCannotMultiplyMemoisedValues() {
        // OrderedDict(pairs) called 5,000 times on one memoised list of 2,000 pairs: 10 million copied pairs.
        var p = PickleBytes()
        p.raw([0x80, 2]); p.op(.emptyList); p.op(.mark)
        p.op(.emptyList); p.op(.mark)
        for k in 0..<2000 { p.unicode("k\(k)"); p.op(.none); p.op(.tuple2) }
        p.op(.appends); p.op(.binPut); p.raw([0]); p.op(.pop)
        for _ in 0..<5000 { p.global("collections", "OrderedDict"); p.op(.binGet); p.raw([0]); p.op(.tuple1); p.op(.reduce) }
        p.op(.appends); p.op(.stop)
        var limits = PickleLimits()
        limits.maxCopiedBytes = 4 << 20   // the default is 64 MiB; the same rule, met sooner
        let e = #expect(throws: PickleError.self) { try PickleMachine.load(p.bytes, limits: limits) }
        #expect(e.map { String(describing: $0) }?.contains("calls copy more than 4194304 bytes") == true)
    }

    @Test func sizesAndStridesFromTheFileAreChecked() {
        func tensor(size: [PickleBytes], stride: [PickleBytes], layout: StorageIDLayout = .archive, fields: Int = 5) -> PickleBytes {
            var p = PickleBytes()
            p.raw([0x80, 2])
            p.global("torch._utils", "_rebuild_tensor_v2")
            p.op(.mark)
            p.op(.mark); p.unicode("storage"); p.global("torch", "FloatStorage"); p.unicode("0"); p.unicode("cpu"); p.op(.binInt1); p.raw([4])
            if fields == 6 { p.op(.none) }
            p.op(.tuple); p.op(.binPersID)
            p.op(.binInt1); p.raw([0])
            p.op(.mark); for s in size { p.raw(s.bytes) }; p.op(.tuple)
            p.op(.mark); for s in stride { p.raw(s.bytes) }; p.op(.tuple)
            p.op(.newFalse)
            p.global("collections", "OrderedDict"); p.op(.emptyTuple); p.op(.reduce)
            p.op(.tuple); p.op(.reduce); p.op(.stop)
            return p
        }
        func int(_ v: UInt8) -> PickleBytes { var p = PickleBytes(); p.op(.binInt1); p.raw([v]); return p }
        var big = PickleBytes(); big.op(.long1); big.raw([9, 0, 0, 0, 0, 0, 0, 0, 0x80, 0])   // 2^63
        #expect(refusal(tensor(size: [int(1)], stride: [big])).contains("tensor stride 9223372036854775808 does not fit in 64 bits"))
        #expect(refusal(tensor(size: Array(repeating: int(1), count: 65), stride: Array(repeating: int(1), count: 65))).contains("65 dimensions (at most 64)"))
        #expect(refusal(tensor(size: [int(4)], stride: [int(1)])) == "accepted")
        // Persistent ids have the arity torch unpacks: 5 fields in an archive, 6 in a legacy stream.
        #expect(refusal(tensor(size: [int(4)], stride: [int(1)], fields: 6)).contains("has 6 fields (torch expects 5"))
        #expect(refusal(tensor(size: [int(4)], stride: [int(1)]), .legacy).contains("has 5 fields (torch expects 6"))
        #expect(refusal(tensor(size: [int(4)], stride: [int(1)], fields: 6), .legacy) == "accepted")
    }

    @Test func textLongsBeyond64BitsAreBigIntegers() throws {
        // pickle.dumps(0x1950a86a20f9469cfc6c, protocol=1): the legacy magic number as text.
        let t = try PickleMachine.load(Array("L119547037146038801333356L\n.".utf8))
        guard case .bigInt(let b) = t.root else { Issue.record("not a big integer"); return }
        #expect(b == TorchLegacyFile.magicNumber)
        let n = try PickleMachine.load(Array("L-340282366920938463463374607431768211456L\n.".utf8))   // -2^128
        guard case .bigInt(let m) = n.root else { Issue.record("not a big integer"); return }
        #expect(PythonRepr.bigInteger(m) == "-340282366920938463463374607431768211456")
    }
}
