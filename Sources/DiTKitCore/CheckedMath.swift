// Overflow-checked arithmetic for sizes, offsets and strides read from files.

/// An arithmetic overflow or a negative value where a size was expected.
public struct ArithmeticOverflow: Error, CustomStringConvertible, Sendable {
    public let what: String
    public init(_ what: String) { self.what = what }
    public var description: String { "arithmetic overflow computing \(what)" }
}

/// Checked helpers. Every size derived from file contents goes through these.
public enum Checked {
    /// `a * b`, throwing on overflow.
    @inlinable
    public static func mul(_ a: Int, _ b: Int, _ what: @autoclosure () -> String = "a size") throws -> Int {
        let (r, o) = a.multipliedReportingOverflow(by: b)
        if o { throw ArithmeticOverflow(what()) }
        return r
    }

    /// `a + b`, throwing on overflow.
    @inlinable
    public static func add(_ a: Int, _ b: Int, _ what: @autoclosure () -> String = "an offset") throws -> Int {
        let (r, o) = a.addingReportingOverflow(b)
        if o { throw ArithmeticOverflow(what()) }
        return r
    }

    /// Product of all values (1 for an empty list), throwing on overflow or a negative value.
    public static func product(_ values: [Int], _ what: @autoclosure () -> String = "an element count") throws -> Int {
        var r = 1
        for v in values {
            if v < 0 { throw ArithmeticOverflow(what()) }
            r = try mul(r, v, what())
        }
        return r
    }

    /// Converts a `UInt64` from a file to `Int`, throwing when it does not fit.
    @inlinable
    public static func int(_ v: UInt64, _ what: @autoclosure () -> String = "a length") throws -> Int {
        guard v <= UInt64(Int.max) else { throw ArithmeticOverflow(what()) }
        return Int(v)
    }

    /// Rounds `v` up to a multiple of `alignment` (a power of two).
    public static func alignUp(_ v: Int, _ alignment: Int) throws -> Int {
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "alignment must be a power of two")
        let r = try add(v, alignment - 1, "an aligned offset")
        return r & ~(alignment - 1)
    }
}

extension String {
    /// The string without leading and trailing ASCII whitespace.
    public var trimmedWhitespace: String {
        let ws: Set<Character> = [" ", "\n", "\r", "\t"]
        var s = Substring(self)
        while let f = s.first, ws.contains(f) { s = s.dropFirst() }
        while let l = s.last, ws.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
