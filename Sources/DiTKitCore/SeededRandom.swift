// A small, documented, seedable generator, so that DiTKit's random inputs and noise are the
// same on every machine: SplitMix64 for bits, Box-Muller for normals.
#if canImport(Glibc)
import Glibc
#endif

/// SplitMix64 (Steele, Lea, Flood 2014). `next()` returns 64 random bits.
public struct SeededRandom: Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 53 bits.
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Standard normal values, by Box-Muller on pairs of uniforms (cos branch then sin branch).
    public mutating func normals(_ count: Int) -> [Float] {
        var out = [Float]()
        out.reserveCapacity(count)
        while out.count < count {
            let u1 = 1 - uniform()          // (0, 1]
            let u2 = uniform()
            let r = (-2 * log(u1)).squareRoot()
            out.append(Float(r * cos(2 * Double.pi * u2)))
            if out.count < count { out.append(Float(r * sin(2 * Double.pi * u2))) }
        }
        return out
    }

    /// Uniform values in [lo, hi).
    public mutating func uniforms(_ count: Int, _ lo: Float, _ hi: Float) -> [Float] {
        (0..<count).map { _ in lo + (hi - lo) * Float(uniform()) }
    }
}
