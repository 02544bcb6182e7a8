import Testing
import DiTKitCore

@Suite struct JSONTests {
    @Test func parsesAndKeepsMemberOrder() throws {
        let v = try JSONReader.parse(#" {"b": [1, -2, 3.5, 1e3], "a": {"x": null, "y": true}, "s": "\u00e9\n\ud83d\ude00"} "#)
        #expect(v.objectValue?.map(\.0) == ["b", "a", "s"])
        #expect(v["b"] == .array([.int(1), .int(-2), .double(3.5), .double(1000)]))
        #expect(v["s"]?.stringValue == "é\n😀")
    }

    @Test func refusesWhatRFC8259Refuses() {
        for bad in ["", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "\"\\x\"", "\"a\u{01}\"", "{\"a\":1}{", "tru", "\"\\ud800\"", "[1 2]"] {
            #expect(throws: JSONError.self, "\(bad)") { try JSONReader.parse(bad) }
        }
    }

    @Test func refusesDuplicateNamesAndDeepNesting() {
        #expect(throws: JSONError.self) { try JSONReader.parse(#"{"a":1,"a":2}"#) }
        #expect(throws: JSONError.self) { try JSONReader.parse(String(repeating: "[", count: 10_000)) }
    }

    @Test func writesDeterministically() throws {
        let v: JSONValue = .object([("z", .int(1)), ("a", .array([.double(0.1), .double(1e-5), .double(2), .double(.infinity)])), ("s", .string("q\"\\\n\u{1}"))])
        #expect(JSONWriter.string(v, pretty: false) == #"{"z":1,"a":[0.1,1e-05,2.0,null],"s":"q\"\\\n\u0001"}"#)
        // Round trip.
        let text = JSONWriter.string(v)
        let back = try JSONReader.parse(text)
        #expect(back["s"] == v["s"])
        #expect(back.objectValue?.map(\.0) == ["z", "a", "s"])
    }
}

@Suite struct JSONLimitTests {
    @Test func valueBudgetStopsATreeBeforeItGrows() throws {
        let big = "[" + Array(repeating: "1", count: 1000).joined(separator: ",") + "]"
        #expect(try Array(big.utf8).withUnsafeBytes { try JSONReader.parse($0, maxValues: 1001) }.arrayValue?.count == 1000)
        var text = big
        let e = #expect(throws: JSONError.self) {
            try text.withUTF8 { try JSONReader.parse(UnsafeRawBufferPointer($0), maxValues: 1000) }
        }
        #expect(e?.message == "more than 1000 values")
    }

    @Test func membersAreHandedOverOneByOne() throws {
        var seen: [String] = []
        let text = #"{"a": [1, 2], "b": {"c": null}, "d": "e"}"#
        try Array(text.utf8).withUnsafeBytes { b in
            try JSONReader.forEachMember(in: b, maxMembers: 3, maxMemberValues: 3) { name, value in
                seen.append(name)
                if name == "a" { #expect(value == .array([.int(1), .int(2)])) }
            }
        }
        #expect(seen == ["a", "b", "d"])
        for (bad, why) in [(#"{"a":1,"a":2}"#, "duplicate member name 'a'"), (#"[1]"#, "not an object"), (#"{"a":1,"b":2,"c":3,"d":4}"#, "more than 3 members"),
                           (#"{"a":[1,2,3,4]}"#, "more than 3 values"), (#"{"a":1} x"#, "unexpected data")] {
            #expect(throws: JSONError.self, "\(bad)") {
                try Array(bad.utf8).withUnsafeBytes { try JSONReader.forEachMember(in: $0, maxMembers: 3, maxMemberValues: 3) { _, _ in } }
            }
            do {
                try Array(bad.utf8).withUnsafeBytes { try JSONReader.forEachMember(in: $0, maxMembers: 3, maxMemberValues: 3) { _, _ in } }
            } catch let e as JSONError { #expect(e.message.contains(why), "\(bad): \(e.message)") } catch {}
        }
    }
}
