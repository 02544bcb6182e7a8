// Timing harness for `make bench` (Benchmarks/run.sh). Prints one JSON object per measurement.
//
//   ditkit-bench open BUNDLE TENSOR           open a bundle and read one tensor (median of runs)
//   ditkit-bench dit-forward MODEL [BATCH]    one DiT forward at the trained size, seeded inputs
//   ditkit-bench vae-decode MODEL SIZE        one VAE decode of a seeded latent for a SIZE image
//   ditkit-bench quants [MVALUES]             quantize and dequantize MVALUES million (default 16)
//                                             Gaussian float32 values in every block type, on one
//                                             thread and on all cores; MB/s of float32 data
//
// MODEL is a bundle or any checkpoint convert accepts. Each measurement runs RUNS times (env, default 3).
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitNumerics
import DiTKitVerify
#if canImport(Glibc)
import Glibc
#endif

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    guard !s.isEmpty else { return 0 }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func report(_ name: String, _ times: [Double], _ extra: [(String, JSONValue)] = []) {
    let v: JSONValue = .object([("measure", .string(name)), ("median_s", .double(median(times))), ("runs", .array(times.map { .double($0) }))] + extra)
    print(JSONWriter.string(v, pretty: false))
}

let args = CommandLine.arguments
let runs = Int(getenv("RUNS").map { String(cString: $0) } ?? "") ?? 3
guard args.count >= 3 || args.count == 2 && args[1] == "quants" else {
    fputs("usage: ditkit-bench open BUNDLE TENSOR | dit-forward MODEL [BATCH] | vae-decode MODEL SIZE | quants [MVALUES]\n", stderr)
    exit(64)
}
do {
    let clock = ContinuousClock()
    switch args[1] {
    case "open":
        var times: [Double] = []
        var checksum: Float = 0
        for _ in 0..<max(runs, 5) {
            let start = clock.now
            let b = try NativeBundle(path: args[2])
            guard let v = b.view(args[3]) else { throw ModelError.notRecognised("no tensor \(args[3])") }
            // Touch every value so the view is really read.
            checksum += v.floats().reduce(0, +)
            times.append(seconds(clock.now - start))
        }
        report("open+read", times, [("checksum", .double(Double(checksum)))])
    case "dit-forward":
        let m = try LoadedModel.open(args[2])
        guard let c = m.configuration.as(DiTConfiguration.self) else { throw ModelError.notRecognised("not a DiT") }
        let batch = args.count > 3 ? Int(args[3]) ?? 1 : 1
        let (x, t, y) = DiTFamily.inputs(c, batch: max(batch, 1), seed: 0)
        let model = DiTModel(config: c, weights: m.weights)
        _ = try model.forward(x: x, t: batch == 1 ? [500] : t, y: batch == 1 ? [207] : y)  // warm-up (page in weights)
        var times: [Double] = []
        for _ in 0..<runs {
            let start = clock.now
            _ = try model.forward(x: x, t: batch == 1 ? [500] : t, y: batch == 1 ? [207] : y)
            times.append(seconds(clock.now - start))
        }
        report("dit-forward", times, [("threads", .int(Gemm.threads))])
    case "vae-decode":
        let m = try LoadedModel.open(args[2])
        guard let c = m.configuration.as(VAEConfiguration.self) else { throw ModelError.notRecognised("not a VAE") }
        let size = args.count > 3 ? Int(args[3]) ?? 256 : 256
        var rng = SeededRandom(seed: 0)
        let s = size / c.downsampleFactor
        let z = Tensor(shape: [1, c.latentChannels, s, s], data: rng.normals(c.latentChannels * s * s))
        let vae = VAEModel(config: c, weights: m.weights)
        _ = try vae.decode(z)
        var times: [Double] = []
        for _ in 0..<runs {
            let start = clock.now
            _ = try vae.decode(z)
            times.append(seconds(clock.now - start))
        }
        report("vae-decode", times, [("threads", .int(Gemm.threads))])
    case "quants":
        let n = (args.count > 2 ? Int(args[2]) ?? 16 : 16) << 20
        var rng = SeededRandom(seed: 14)
        let x = rng.normals(n).map { $0 * 0.02 }
        let cores = ProcessInfoLite.activeProcessorCount
        for type in DType.blockTypes {
            let b = type.block!
            let q = UnsafeMutableRawPointer.allocate(byteCount: n / b.elements * b.bytes, alignment: 64)
            let y = UnsafeMutablePointer<Float>.allocate(capacity: n)
            defer { q.deallocate(); y.deallocate() }
            var extra: [(String, JSONValue)] = [("type", .string(type.name)), ("values", .int(n))]
            for threads in [1, cores] {
                var tq: [Double] = [], td: [Double] = []
                for _ in 0..<runs {
                    var start = clock.now
                    x.withUnsafeBufferPointer { BlockQuantizer.quantize(type, $0.baseAddress!, count: n, into: q, threads: threads) }
                    tq.append(seconds(clock.now - start))
                    start = clock.now
                    BlockQuantizer.dequantize(type, q, count: n, into: y, threads: threads)
                    td.append(seconds(clock.now - start))
                }
                let mb = Double(n * 4) / 1e6
                extra += [("quantize_mb_s_\(threads)t", .double(mb / median(tq))), ("dequantize_mb_s_\(threads)t", .double(mb / median(td)))]
            }
            report("quants", [], extra)
        }
    default:
        fputs("unknown measurement \(args[1])\n", stderr)
        exit(64)
    }
} catch {
    fputs("ditkit-bench: \(error)\n", stderr)
    exit(2)
}
