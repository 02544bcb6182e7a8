// Port of facebookresearch/DiT diffusion/ (gaussian_diffusion.py, respace.py): the linear beta
// schedule in float64, timestep respacing exactly as `create_diffusion(str(steps))` does it, and
// the learned-range variance, DDPM and DDIM (eta 0) steps. Coefficients are computed in float64
// and applied in float32, as `_extract_into_tensor(...).float()` does.
#if canImport(Glibc)
import Glibc
#endif
import DiTKitCore

/// Why a sampling configuration was refused.
public enum DiffusionError: Error, CustomStringConvertible, Sendable {
    case badSpacing(String)
    public var description: String {
        switch self {
        case .badSpacing(let s): return "invalid step spacing: \(s)"
        }
    }
}

/// A (respaced) Gaussian diffusion process.
public struct GaussianDiffusion: Sendable {
    /// The kept original timesteps, ascending (`timestep_map`).
    public let timestepMap: [Int]
    public let betas: [Double]
    public let alphasCumprod: [Double]
    public let alphasCumprodPrev: [Double]
    public let sqrtRecipAlphasCumprod: [Double]
    public let sqrtRecipm1AlphasCumprod: [Double]
    public let posteriorLogVarianceClipped: [Double]
    public let posteriorMeanCoef1: [Double]
    public let posteriorMeanCoef2: [Double]
    public let logBetas: [Double]

    /// `get_named_beta_schedule("linear", T)`: linspace(scale·1e-4, scale·0.02, T), scale = 1000/T.
    public static func linearBetas(_ t: Int) -> [Double] {
        let scale = 1000.0 / Double(t)
        let start = scale * 0.0001, end = scale * 0.02
        // numpy.linspace: start + i·step with step = (end-start)/(T-1), the last value exactly `end`.
        let step = (end - start) / Double(t - 1)
        return (0..<t).map { i in i == t - 1 ? end : start + Double(i) * step }
    }

    /// `space_timesteps(T, spec)`: "ddimN" uses the first integer stride giving N steps; otherwise
    /// comma-separated section counts, each section strided with `round` (half to even, as Python).
    public static func spaceTimesteps(_ t: Int, _ spec: String) throws -> [Int] {
        if spec.hasPrefix("ddim") {
            guard let desired = Int(spec.dropFirst(4)), desired > 0 else { throw DiffusionError.badSpacing(spec) }
            for i in 1..<t where (t + i - 1) / i == desired {
                return Array(stride(from: 0, to: t, by: i))
            }
            throw DiffusionError.badSpacing("cannot create exactly \(desired) steps with an integer stride")
        }
        let counts = try spec.split(separator: ",").map { s -> Int in
            guard let v = Int(String(s).trimmedWhitespace), v > 0 else { throw DiffusionError.badSpacing(spec) }
            return v
        }
        guard !counts.isEmpty else { throw DiffusionError.badSpacing(spec) }
        let sizePer = t / counts.count, extra = t % counts.count
        var start = 0
        var steps = Set<Int>()
        for (i, count) in counts.enumerated() {
            let size = sizePer + (i < extra ? 1 : 0)
            guard size >= count else { throw DiffusionError.badSpacing("cannot divide section of \(size) steps into \(count)") }
            let fracStride = count <= 1 ? 1.0 : Double(size - 1) / Double(count - 1)
            var cur = 0.0
            for _ in 0..<count {
                steps.insert(start + Int(cur.rounded(.toNearestOrEven)))
                cur += fracStride
            }
            start += size
        }
        return steps.sorted()
    }

    /// `create_diffusion(spec)` with the DiT defaults (linear schedule, 1000 steps, learned sigma).
    public init(respacing spec: String, trainingSteps: Int = 1000) throws {
        let base = GaussianDiffusion.linearBetas(trainingSteps)
        var cum = 1.0
        var baseCumprod: [Double] = []
        for b in base { cum *= 1 - b; baseCumprod.append(cum) }
        let keep = Set(try GaussianDiffusion.spaceTimesteps(trainingSteps, spec))
        var last = 1.0
        var newBetas: [Double] = [], map: [Int] = []
        for (i, a) in baseCumprod.enumerated() where keep.contains(i) {
            newBetas.append(1 - a / last)
            last = a
            map.append(i)
        }
        self.init(betas: newBetas, timestepMap: map)
    }

    init(betas: [Double], timestepMap: [Int]) {
        self.betas = betas
        self.timestepMap = timestepMap
        var cum = 1.0
        var ac: [Double] = []
        for b in betas { cum *= 1 - b; ac.append(cum) }
        alphasCumprod = ac
        var prev: [Double] = [1.0]
        prev.append(contentsOf: ac.dropLast())
        alphasCumprodPrev = prev
        var sr: [Double] = [], srm1: [Double] = [], pv: [Double] = [], c1: [Double] = [], c2: [Double] = []
        for k in 0..<betas.count {
            let a: Double = ac[k], ap: Double = prev[k], b: Double = betas[k]
            sr.append((1 / a).squareRoot())
            srm1.append((1 / a - 1).squareRoot())
            pv.append(b * (1 - ap) / (1 - a))
            c1.append(b * ap.squareRoot() / (1 - a))
            c2.append((1 - ap) * (1 - b).squareRoot() / (1 - a))
        }
        sqrtRecipAlphasCumprod = sr
        sqrtRecipm1AlphasCumprod = srm1
        posteriorMeanCoef1 = c1
        posteriorMeanCoef2 = c2
        let posteriorVariance = pv
        if betas.count > 1 {
            var clipped: [Double] = [posteriorVariance[1]]
            clipped.append(contentsOf: posteriorVariance.dropFirst())
            posteriorLogVarianceClipped = clipped.map { (v: Double) -> Double in log(v) }
        } else {
            posteriorLogVarianceClipped = []
        }
        logBetas = betas.map { log($0) }
    }

    public var steps: Int { betas.count }

    /// One reverse step from respaced index `i`. `x` is `[N, C, H, W]`; `output` is the model output
    /// `[N, 2C, H, W]` (eps, then the variance interpolation v). `noise` is used by DDPM only.
    /// With `ddim`, eta is 0. Returns the next `x`. All arithmetic in float32.
    public func step(x: [Float], output: [Float], channels c: Int, plane: Int, batch: Int, index i: Int, ddim: Bool, noise: [Float]?) -> [Float] {
        let sr = Float(sqrtRecipAlphasCumprod[i]), srm1 = Float(sqrtRecipm1AlphasCumprod[i])
        let c1 = Float(posteriorMeanCoef1[i]), c2 = Float(posteriorMeanCoef2[i])
        let minLog = Float(posteriorLogVarianceClipped.isEmpty ? 0 : posteriorLogVarianceClipped[i]), maxLog = Float(logBetas[i])
        let abPrev = Float(alphasCumprodPrev[i])
        let sqrtAbPrev = abPrev.squareRoot(), sqrtOneMinus = (1 - abPrev - 0).squareRoot()
        var out = [Float](repeating: 0, count: x.count)
        for n in 0..<batch {
            for ch in 0..<c {
                let xo = (n * c + ch) * plane
                let eo = (n * 2 * c + ch) * plane
                let vo = (n * 2 * c + c + ch) * plane
                for p in 0..<plane {
                    let xv = x[xo + p], eps = output[eo + p]
                    let x0 = sr * xv - srm1 * eps
                    if ddim {
                        let e2 = (sr * xv - x0) / srm1
                        out[xo + p] = x0 * sqrtAbPrev + sqrtOneMinus * e2
                    } else {
                        let mean = c1 * x0 + c2 * xv
                        if let noise, i != 0 {
                            let frac = (output[vo + p] + 1) / 2
                            let logVar = frac * maxLog + (1 - frac) * minLog
                            out[xo + p] = mean + expf(0.5 * logVar) * noise[xo + p]
                        } else {
                            out[xo + p] = mean
                        }
                    }
                }
            }
        }
        return out
    }
}
