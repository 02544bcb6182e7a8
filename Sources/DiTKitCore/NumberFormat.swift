// Number formatting for reports, without Foundation and without locale surprises.
#if canImport(Glibc)
import Glibc
#endif

public enum NumberFormat {
    /// `v` with `digits` decimals (`fixed(3.14159, 2)` = `3.14`); `inf`, `-inf`, `nan` as such.
    public static func fixed(_ v: Double, _ digits: Int) -> String {
        guard v.isFinite else { return v.isNaN ? "nan" : (v < 0 ? "-inf" : "inf") }
        var p = 1.0
        for _ in 0..<digits { p *= 10 }
        let r = (abs(v) * p).rounded()
        let whole = (r / p).rounded(.down)
        var frac = String(Int(r - whole * p))
        while frac.count < digits { frac = "0" + frac }
        let sign = v < 0 && r != 0 ? "-" : ""
        let w = whole < 9.2e18 ? String(Int(whole)) : String(whole)
        return digits == 0 ? sign + w : sign + w + "." + frac
    }

    /// `v` in scientific notation with `digits` decimals (`2.43e-04`).
    public static func scientific(_ v: Double, _ digits: Int = 2) -> String {
        guard v.isFinite else { return fixed(v, digits) }
        if v == 0 { return "0" }
        var e = Int(log10(abs(v)).rounded(.down))
        var m = v / pow(10, Double(e))
        var limit = 10.0
        for _ in 0..<digits { limit *= 10 }
        if abs((m * limit / 10).rounded()) >= limit { m /= 10; e += 1 }
        return fixed(m, digits) + "e" + (e < 0 ? "-" : "+") + (abs(e) < 10 ? "0" : "") + String(abs(e))
    }

    /// `n` and a noun in the right number: `1 image`, `2 images`, `1 pass` / `2 passes` (give the
    /// plural when it is not the singular plus `s`).
    public static func counted(_ n: Int, _ singular: String, _ plural: String? = nil) -> String {
        "\(n) " + (n == 1 ? singular : plural ?? singular + "s")
    }

    /// A byte count for people, in powers of 1000 (`2.70 GB`, `512 B`).
    public static func bytes(_ n: Int) -> String {
        let units = ["B", "kB", "MB", "GB", "TB"]
        var v = Double(n)
        var u = 0
        while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
        return u == 0 ? "\(n) B" : fixed(v, 2) + " " + units[u]
    }

    /// Fixed notation for ordinary magnitudes, scientific below 0.01 and from 1e5 up.
    public static func compact(_ v: Double, _ digits: Int = 2) -> String {
        guard v.isFinite else { return fixed(v, digits) }
        return v != 0 && (abs(v) < 1e-2 || abs(v) >= 1e5) ? scientific(v, digits) : fixed(v, digits)
    }
}
