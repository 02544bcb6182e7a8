// Flow matching as diffusers' FlowMatchEulerDiscreteScheduler computes it (SD3, FLUX.1): the
// sigma schedule (static shift for SD3, resolution-dependent exponential shift for FLUX.1-dev),
// the model timesteps (sigma × 1000), and the Euler step x ← x + (σ_next − σ)·v in float32.
// x_t = (1 − σ)·x_0 + σ·ε; the model predicts v = ε − x_0.
import DiTKitCore
#if canImport(Glibc)
import Glibc
#endif

/// A flow-matching sigma schedule.
public struct FlowMatchSchedule: Sendable, Equatable {
    /// Sigmas of the steps, descending, then a final 0: `steps + 1` values (float32, as diffusers keeps them).
    public let sigmas: [Float]
    /// The timestep the model sees at each step: `sigma × 1000`.
    public var timesteps: [Float] { sigmas.dropLast().map { $0 * 1000 } }
    public var steps: Int { sigmas.count - 1 }

    /// SD3: `FlowMatchEulerDiscreteScheduler(shift:)` then `set_timesteps(steps)`. The scheduler's
    /// own table is shifted once at construction; `set_timesteps` spaces `steps` timesteps linearly
    /// between that table's first and last sigma and shifts them again (so only the endpoint is shifted
    /// twice), exactly as diffusers does.
    public static func shifted(steps: Int, shift: Double, trainSteps: Int = 1000) throws -> FlowMatchSchedule {
        guard steps > 0 else { throw DiffusionError.badSpacing("flow matching needs at least one step") }
        guard shift > 0 else { throw DiffusionError.badSpacing("shift must be positive") }
        func shiftF32(_ s: Float) -> Float { Float(shift) * s / (1 + (Float(shift) - 1) * s) }
        // __init__: timesteps = linspace(1, T, T, float32)[::-1]; sigmas = t / T, shifted in float32.
        let sigmaMax = Double(shiftF32(Float(trainSteps) / Float(trainSteps)))
        let sigmaMin = Double(shiftF32(Float(1) / Float(trainSteps)))
        // set_timesteps: np.linspace(σmax·T, σmin·T, n) in float64, / T, shifted in float64.
        let t0 = sigmaMax * Double(trainSteps), t1 = sigmaMin * Double(trainSteps)
        var sigmas: [Float] = []
        for i in 0..<steps {
            let t = steps == 1 ? t0 : t0 + (t1 - t0) * Double(i) / Double(steps - 1)
            let s = t / Double(trainSteps)
            sigmas.append(Float(shift * s / (1 + (shift - 1) * s)))
        }
        return FlowMatchSchedule(sigmas: sigmas + [0])
    }

    /// FLUX.1: `set_timesteps(sigmas=linspace(1, 1/steps, steps), mu=mu)` with dynamic shifting:
    /// `σ' = e^μ / (e^μ + (1/σ − 1))`. With `mu` nil (FLUX.1-schnell), the sigmas are unshifted.
    public static func dynamic(steps: Int, mu: Double?) throws -> FlowMatchSchedule {
        guard steps > 0 else { throw DiffusionError.badSpacing("flow matching needs at least one step") }
        var sigmas: [Float] = []
        for i in 0..<steps {
            // np.linspace(1.0, 1/n, n) in float64, then .astype(float32).
            let s = Float(steps == 1 ? 1.0 : 1.0 + (1.0 / Double(steps) - 1.0) * Double(i) / Double(steps - 1))
            if let mu {
                let e = Float(exp(mu))
                sigmas.append(e / (e + (1 / s - 1)))
            } else {
                sigmas.append(s)
            }
        }
        return FlowMatchSchedule(sigmas: sigmas + [0])
    }

    /// FluxPipeline's `calculate_shift`: μ linear in the image sequence length, from 0.5 at 256 tokens
    /// to 1.15 at 4096.
    public static func mu(imageSequenceLength n: Int, baseLength: Int = 256, maxLength: Int = 4096,
                          baseShift: Double = 0.5, maxShift: Double = 1.15) -> Double {
        let m = (maxShift - baseShift) / Double(maxLength - baseLength)
        let b = baseShift - m * Double(baseLength)
        return Double(n) * m + b
    }

    /// One Euler step from step `i`: `x + (σ[i+1] − σ[i]) · v`, in float32.
    public func step(x: inout [Float], velocity v: [Float], index i: Int) {
        let dt = sigmas[i + 1] - sigmas[i]
        for k in 0..<x.count { x[k] = x[k] + dt * v[k] }
    }
}
