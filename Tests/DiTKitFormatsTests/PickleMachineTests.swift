// The restricted pickle interpreter on hand-made opcode streams: what it accepts and what it refuses.
import Testing
import DiTKitCore
@testable import DiTKitFormats

/// Builds pickle byte streams opcode by opcode.
struct PickleBytes {
    var bytes: [UInt8] = []
    mutating func op(_ o: PickleOpcode) { bytes.append(o.rawValue) }
    mutating func raw(_ b: [UInt8]) { bytes += b }
    mutating func text(_ s: String) { bytes += Array(s.utf8) }
    mutating func u32(_ v: UInt32) { bytes += [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)] }
    mutating func unicode(_ s: String) { op(.binUnicode); u32(UInt32(s.utf8.count)); text(s) }
    mutating func global(_ module: String, _ name: String) { op(.global); text(module + "\n" + name + "\n") }
}

@Suite struct PickleMachineTests {
    func load(_ p: PickleBytes) throws -> PickleTree { try PickleMachine.load(p.bytes) }

    func refusal(_ p: PickleBytes) -> String {
        do {
            _ = try load(p)
            return "accepted"
        } catch { return String(describing: error) }
    }

    @Test func readsScalarsAndContainers() throws {
        var p = PickleBytes()
        p.raw([0x80, 2])
        p.op(.emptyDict)
        p.op(.mark)
        p.unicode("a"); p.op(.binInt1); p.raw([7])
        p.unicode("b"); p.op(.long1); p.raw([2, 0xFF, 0x7F])         // 32767
        p.unicode("c"); p.op(.long1); p.raw([1, 0xFF])               // -1 (sign-extended)
        p.unicode("d"); p.op(.binFloat); p.raw([0x3F, 0xF8, 0, 0, 0, 0, 0, 0])  // 1.5, big-endian
        p.unicode("e"); p.op(.newTrue)
        p.unicode("f"); p.op(.none)
        p.op(.setItems)
        p.op(.stop)
        let tree = try load(p)
        let c = try PickleTreeWalker.walk(tree.root)
        let objects = Dictionary(uniqueKeysWithValues: c.objects.map { ($0.name, $0.value) })
        #expect(objects == ["a": "7", "b": "32767", "c": "-1", "d": "1.5", "e": "True", "f": "None"])
    }

    @Test func memoSharesNodesInsteadOfCopying() throws {
        // A memo bomb: each list holds the previous one twice; 40 levels would be 2^40 copies.
        var q = PickleBytes()
        q.raw([0x80, 2])
        q.op(.emptyList); q.op(.binPut); q.raw([0]); q.op(.pop)
        for level in 1...40 {
            q.op(.emptyList)
            q.op(.mark)
            q.op(.binGet); q.raw([UInt8(level - 1)])
            q.op(.binGet); q.raw([UInt8(level - 1)])
            q.op(.appends)
            q.op(.binPut); q.raw([UInt8(level)])
            if level < 40 { q.op(.pop) }
        }
        q.op(.stop)
        let tree = try load(q)
        #expect(tree.arena.count == 41)
        // Walking it is bounded: rendering or listing must stop, not explode.
        var limits = WalkLimits()
        limits.maxVisits = 100_000
        let start = ContinuousClock.now
        _ = try? PickleTreeWalker.walk(tree.root, limits: limits)
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test func deepNestingIsRefusedWithoutCrashing() throws {
        // 1,000,000 nested one-tuples: one byte each.
        var p = PickleBytes()
        p.raw([0x80, 2])
        p.op(.emptyTuple)
        p.bytes += [UInt8](repeating: PickleOpcode.tuple1.rawValue, count: 1_000_000)
        p.op(.stop)
        let tree = try load(p)
        #expect(throws: WalkError.self) { try PickleTreeWalker.walk(tree.root) }
    }

    @Test func deepMarksAreRefused() {
        var p = PickleBytes()
        p.bytes = [0x80, 2] + [UInt8](repeating: PickleOpcode.mark.rawValue, count: 100_000)
        #expect(refusal(p).contains("nested MARKs"))
    }

    @Test func forbiddenGlobalsNameTheGlobalAndOffset() {
        for (module, name) in [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("__builtin__", "exec"),
                               ("subprocess", "Popen"), ("builtins", "getattr"), ("torch", "load"), ("numpy", "load")] {
            var p = PickleBytes()
            p.raw([0x80, 2])
            p.global(module, name)
            p.op(.stop)
            let e = refusal(p)
            #expect(e.contains("refused global '\(module).\(name)' at byte 2"), "\(e)")
        }
    }

    @Test func stackGlobalIsCheckedToo() {
        var p = PickleBytes()
        p.raw([0x80, 4])
        p.op(.shortBinUnicode); p.raw([5]); p.text("posix")
        p.op(.shortBinUnicode); p.raw([6]); p.text("system")
        p.op(.stackGlobal)
        p.op(.stop)
        #expect(refusal(p).contains("refused global 'posix.system' at byte 17"))
    }

    @Test func reduceOfAnAllowlistedNonCallableIsRefused() {
        var p = PickleBytes()
        p.raw([0x80, 2])
        p.global("torch", "FloatStorage")
        p.op(.emptyTuple)
        p.op(.reduce)
        p.op(.stop)
        #expect(refusal(p).contains("refused call"))
    }

    @Test func containerOpcodesCheckTheirTarget() {
        var p = PickleBytes()
        p.raw([0x80, 2])
        p.op(.emptyList)
        p.unicode("k"); p.unicode("v")
        p.op(.setItem)
        p.op(.stop)
        #expect(refusal(p).contains("SETITEM on a list"))

        var q = PickleBytes()
        q.raw([0x80, 2])
        q.op(.emptyDict)
        q.op(.none)
        q.op(.append)
        q.op(.stop)
        #expect(refusal(q).contains("APPEND to a dict"))
    }

    @Test func persistentIdsMustBeStorages() {
        var p = PickleBytes()
        p.raw([0x80, 2])
        p.unicode("module"); p.unicode("x")
        p.op(.tuple2)
        p.op(.binPersID)
        p.op(.stop)
        #expect(refusal(p).contains("persistent id of kind 'module'"))
    }

    @Test func truncationAndTrailingStateAreRefused() {
        var noStop = PickleBytes()
        noStop.raw([0x80, 2]); noStop.op(.none)
        #expect(refusal(noStop).contains("truncated"))

        var twoValues = PickleBytes()
        twoValues.raw([0x80, 2]); twoValues.op(.none); twoValues.op(.none); twoValues.op(.stop)
        #expect(refusal(twoValues).contains("2 values on the stack"))

        var underflow = PickleBytes()
        underflow.raw([0x80, 2]); underflow.op(.mark); underflow.op(.pop); underflow.op(.pop); underflow.op(.stop)
        #expect(refusal(underflow).contains("underflow"))

        var longString = PickleBytes()
        longString.raw([0x80, 2]); longString.op(.binUnicode); longString.u32(0xFFFF_FFF0); longString.text("abc")
        #expect(refusal(longString).contains("declares 4294967280 bytes but only 3 remain"))

        var badMemo = PickleBytes()
        badMemo.raw([0x80, 2]); badMemo.op(.binGet); badMemo.raw([9]); badMemo.op(.stop)
        #expect(refusal(badMemo).contains("memo key 9"))

        var unknown = PickleBytes()
        unknown.raw([0x80, 2, 0xFF])
        #expect(refusal(unknown).contains("unsupported pickle opcode 0xff at byte 2"))
    }

    @Test func protocolZeroTextOpcodes() throws {
        // pickle.dumps({'a': [1, 2.5, 'x', None, True]}, protocol=0)
        let text = "(dp0\nVa\np1\n(lp2\nI1\naF2.5\naVx\np3\naNaI01\nas."
        let tree = try PickleMachine.load(Array(text.utf8))
        let c = try PickleTreeWalker.walk(tree.root)
        #expect(c.objects.first?.name == "a")
        #expect(c.objects.first?.value == "[1, 2.5, 'x', None, True]")
    }

    @Test func pythonFloatRepr() {
        let cases: [(Double, String)] = [(0.0001, "0.0001"), (1e-5, "1e-05"), (1e-8, "1e-08"), (100.0, "100.0"), (1e16, "1e+16"),
                                         (123456789012345.6, "123456789012345.6"), (0.1, "0.1"), (-2.5, "-2.5"), (1.0 / 3.0, "0.3333333333333333"),
                                         (9999999999999998.0, "9999999999999998.0"), (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308")]
        for (v, s) in cases { #expect(PythonRepr.float(v) == s) }
    }

    @Test func bigIntegersPrintInDecimal() {
        // The legacy magic number 0x1950a86a20f9469cfc6c.
        #expect(PythonRepr.bigInteger([0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]) == "119547037146038801333356")
        #expect(PythonRepr.bigInteger([0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80]) == "-2361183241434822606848")
    }
}
