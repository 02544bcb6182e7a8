// The fixed 2-D sin-cos position embedding of DiT (from MAE), computed exactly as the official
// code does: in float64 with numpy's operation order, rounded once to float32.

public enum DiTPositionEmbedding {
    /// `[tokens, hidden]` float32 values, row-major. Token `t = row * grid + col`; the first half of
    /// each row encodes the column (`grid[0]` is the w index), the second half the row; within each
    /// half, `sin` then `cos` of `pos * omega_k`, `omega_k = 1 / 10000^(k / (d/2))`.
    public static func values(hiddenSize: Int, gridSize: Int) -> [Float] {
        let half = hiddenSize / 2          // per coordinate
        let quarter = half / 2             // frequencies per coordinate
        var omega = [Double](repeating: 0, count: quarter)
        for k in 0..<quarter {
            // numpy: omega = arange(D/2, float64); omega /= D/2.; omega = 1. / 10000**omega
            let e = Double(k) / (Double(half) / 2.0)
            omega[k] = 1.0 / pow10000(e)
        }
        var out = [Float](repeating: 0, count: gridSize * gridSize * hiddenSize)
        for r in 0..<gridSize {
            for c in 0..<gridSize {
                let base = (r * gridSize + c) * hiddenSize
                for (coordinate, pos) in [(0, Double(c)), (1, Double(r))] {
                    let o = base + coordinate * half
                    for k in 0..<quarter {
                        let a = pos * omega[k]
                        out[o + k] = Float(sinDouble(a))
                        out[o + quarter + k] = Float(cosDouble(a))
                    }
                }
            }
        }
        return out
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// 10000^e as numpy computes `10000**omega` (libm pow).
@inline(__always) func pow10000(_ e: Double) -> Double { pow(10000.0, e) }
@inline(__always) func sinDouble(_ x: Double) -> Double { sin(x) }
@inline(__always) func cosDouble(_ x: Double) -> Double { cos(x) }
