// Timing harness for `make bench` (Benchmarks/run.sh). Prints one JSON object per measurement.
//
//   ditkit-bench open BUNDLE TENSOR           open a bundle and read one tensor: every value summed through
//                                             its zero-copy view (median of runs)
//   ditkit-bench dit-forward MODEL [BATCH]    one DiT forward at the trained size, seeded inputs
//   ditkit-bench dit-forwards BATCH MODEL...  the same for several models in one process, in
//                                             interleaved rounds (each round runs every model once,
//                                             starting one model later than the round before), so
//                                             the models' times can be paired round by round
//   ditkit-bench vae-decode MODEL SIZE        one VAE decode of a seeded latent for a SIZE image
//   ditkit-bench quants [MVALUES]             quantize and dequantize MVALUES million (default 16)
//                                             Gaussian float32 values in every block type, on one
//                                             thread and on all cores; MB/s of float32 data
//   ditkit-bench ops                          the non-BLAS kernels of DiTKitNumerics on DiT-XL/2 and SD-VAE
//                                             shapes, in process CPU seconds (steady on a busy machine)
//   ditkit-bench flux-forward MODEL SIZE TOKENS   one FLUX forward (batch 1) for a SIZE image and TOKENS
//                                             text tokens, seeded inputs, no warm-up (weights stream from disk)
//   ditkit-bench flux-blocks MODEL SIZE TOKENS    FLUX forwards (after a warm-up) timing each double-stream and
//                                             single-stream block (from the traced block outputs)
//   ditkit-bench attention TOKENS HEADS HEADDIM   self-attention of one sequence (seeded q, k, v), one head
//                                             at a time on OpenBLAS's threads against heads in parallel
//                                             on one thread each, in rounds of alternating order
//   ditkit-bench requantize BUNDLE OUT TYPE   a copy of BUNDLE with every tensor its family quantizes by
//                                             default stored in block type TYPE (Q8_0, Q4_K, ...), for the
//                                             quantized forward benchmarks until convert chooses block types
//
// MODEL is a bundle or any checkpoint convert accepts. Each measurement runs RUNS times (env, default 3).
// ATTENTION=one-head|parallel (env) fixes how every forward schedules its attention heads
// (`Attention.Scheduling`; default automatic).
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
/// CPU seconds used by the whole process so far (every thread).
func cpuSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// The elementwise, normalisation, softmax, activation and im2col kernels at the sizes one DiT-XL/2
/// forward (batch 2, 256 tokens) and one SD-VAE decode step (512 channels at 64x64) use them.
func measureOps() {
    var rng = SeededRandom(seed: 0)
    func buffer(_ n: Int) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
        p.initialize(from: rng.normals(n), count: n)
        return p
    }
    let rows = 512, dim = 1152, hidden = 4608
    let x = buffer(rows * hidden), y = buffer(rows * hidden), v = buffer(hidden), w = buffer(hidden)
    let image = buffer(512 * 64 * 64), out = buffer(4 * 512 * 64 * 64), gamma = buffer(512), beta = buffer(512)
    let weight = buffer(4 * 512 * 9)
    let kernels: [(String, () -> Void)] = [
        ("layer-norm", { Ops.layerNorm(x, rows: rows, dim: dim, eps: 1e-6, into: y) }),
        ("modulate", { Ops.modulate(x, rows: rows, dim: dim, shift: v, scale: w) }),
        ("gated-add", { Ops.gatedAdd(x, y, rows: rows, dim: dim, gate: v) }),
        ("add-row-vector", { Ops.addRowVector(x, rows: rows, cols: hidden, v) }),
        ("softmax", { Ops.softmaxRows(x, rows: 16 * 256, cols: 256) }),
        ("gelu-tanh", { Ops.geluTanh(x, count: rows * hidden) }),
        ("silu", { Ops.silu(image, count: 512 * 64 * 64) }),
        ("group-norm", { Ops.groupNorm(image, batch: 1, channels: 512, spatial: 64 * 64, groups: 32, eps: 1e-6, gamma: gamma, beta: beta, into: out) }),
        ("upsample-2x", { Ops.upsampleNearest2x(image, planes: 512, height: 64, width: 64, into: out) }),
        ("add", { Ops.add(x, y, count: rows * hidden) }),
        // A stride-2 3x3 convolution with 4 output channels: mostly im2col.
        ("conv-im2col", { Convolution.conv2d(image, batch: 1, channels: 512, height: 64, width: 64, weight: weight, outChannels: 4, kernel: 3, 3,
                                             bias: nil, stride: 2, padding: Padding(top: 0, left: 0, bottom: 1, right: 1), into: out) }),
    ]
    let repeats = 20
    for (name, body) in kernels {
        body()   // warm-up
        var times: [Double] = []
        for _ in 0..<max(runs, 5) {
            let start = cpuSeconds()
            for _ in 0..<repeats { body() }
            times.append((cpuSeconds() - start) / Double(repeats))
        }
        report("ops-" + name, times, [("unit", .string("process CPU seconds per call"))])
    }
}

switch getenv("ATTENTION").map({ String(cString: $0) }) {
case "one-head": Attention.scheduling = .oneHeadAtATime
case "parallel": Attention.scheduling = .headsInParallel
default: break
}

if args.count == 2 && args[1] == "ops" {
    measureOps()
    exit(0)
}
guard args.count >= 3 || args.count == 2 && args[1] == "quants" else {
    fputs("usage: ditkit-bench open BUNDLE TENSOR | dit-forward MODEL [BATCH] | dit-forwards BATCH MODEL... | vae-decode MODEL SIZE | quants [MVALUES] | ops | flux-forward MODEL SIZE TOKENS | flux-blocks MODEL SIZE TOKENS | attention TOKENS HEADS HEADDIM | requantize BUNDLE OUT TYPE\n", stderr)
    exit(64)
}
// The forwards keep freed buffers for reuse, as `ditkit verify` and `sample` do.
if ["dit-forward", "dit-forwards", "vae-decode", "flux-forward", "flux-blocks", "attention"].contains(args[1]) {
    ForwardMemory.keepFreedBuffers()
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
            // Touch every value so the view is really read: through the zero-copy view of an F32
            // tensor (the values in the mapping), else widened into an array.
            if v.dtype == .f32 {
                checksum += v.bytes.withElements(of: Float.self) { $0.reduce(0, +) }
            } else {
                checksum += v.floats().reduce(0, +)
            }
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
        var times: [Double] = [], cpu: [Double] = []
        for _ in 0..<runs {
            let start = clock.now, c = cpuSeconds()
            _ = try model.forward(x: x, t: batch == 1 ? [500] : t, y: batch == 1 ? [207] : y)
            times.append(seconds(clock.now - start))
            cpu.append(cpuSeconds() - c)
        }
        report("dit-forward", times, [("threads", .int(Gemm.threads)), ("batch", .int(batch)), ("cpu_s", .double(median(cpu)))])
    case "dit-forwards":
        let batch = max(Int(args[2]) ?? 1, 1)
        var models: [(path: String, model: DiTModel, inputs: (x: Tensor, t: [Float], y: [Int]))] = []
        for path in args.dropFirst(3) {
            let m = try LoadedModel.open(path)
            guard let c = m.configuration.as(DiTConfiguration.self) else { throw ModelError.notRecognised("\(path) is not a DiT") }
            let (x, t, y) = DiTFamily.inputs(c, batch: batch, seed: 0)
            let model = DiTModel(config: c, weights: m.weights)
            let inputs = (x: x, t: batch == 1 ? [Float(500)] : t, y: batch == 1 ? [207] : y)
            _ = try model.forward(x: inputs.x, t: inputs.t, y: inputs.y)  // warm-up (page in weights)
            models.append((path, model, inputs))
        }
        var times = [[Double]](repeating: [], count: models.count), cpu = times
        for round in 0..<runs {
            for step in 0..<models.count {
                let k = (round + step) % models.count
                let start = clock.now, c = cpuSeconds()
                _ = try models[k].model.forward(x: models[k].inputs.x, t: models[k].inputs.t, y: models[k].inputs.y)
                times[k].append(seconds(clock.now - start))
                cpu[k].append(cpuSeconds() - c)
            }
        }
        for (k, m) in models.enumerated() {
            report("dit-forward", times[k], [("model", .string(m.path)), ("threads", .int(Gemm.threads)), ("batch", .int(batch)),
                                             ("cpu_s", .double(median(cpu[k]))), ("cpu_runs", .array(cpu[k].map { .double($0) }))])
        }
    case "vae-decode":
        let m = try LoadedModel.open(args[2])
        guard let c = m.configuration.as(VAEConfiguration.self) else { throw ModelError.notRecognised("not a VAE") }
        let size = args.count > 3 ? Int(args[3]) ?? 256 : 256
        var rng = SeededRandom(seed: 0)
        let s = size / c.downsampleFactor
        let z = Tensor(shape: [1, c.latentChannels, s, s], data: rng.normals(c.latentChannels * s * s))
        let vae = VAEModel(config: c, weights: m.weights)
        _ = try vae.decode(z)
        var times: [Double] = [], cpu: [Double] = []
        for _ in 0..<runs {
            let start = clock.now, c = cpuSeconds()
            _ = try vae.decode(z)
            times.append(seconds(clock.now - start))
            cpu.append(cpuSeconds() - c)
        }
        report("vae-decode", times, [("threads", .int(Gemm.threads)), ("cpu_s", .double(median(cpu)))])
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
                var tq: [Double] = [], td: [Double] = [], cq: [Double] = [], cd: [Double] = []
                for _ in 0..<runs {
                    var start = clock.now, cpu = cpuSeconds()
                    x.withUnsafeBufferPointer { BlockQuantizer.quantize(type, $0.baseAddress!, count: n, into: q, threads: threads) }
                    tq.append(seconds(clock.now - start))
                    cq.append(cpuSeconds() - cpu)
                    start = clock.now
                    cpu = cpuSeconds()
                    BlockQuantizer.dequantize(type, q, count: n, into: y, threads: threads)
                    td.append(seconds(clock.now - start))
                    cd.append(cpuSeconds() - cpu)
                }
                let mb = Double(n * 4) / 1e6
                extra += [("quantize_mb_s_\(threads)t", .double(mb / median(tq))), ("dequantize_mb_s_\(threads)t", .double(mb / median(td)))]
                // Per CPU second: steady on a machine other work keeps busy.
                if threads == 1 { extra += [("quantize_mb_per_cpu_s", .double(mb / median(cq))), ("dequantize_mb_per_cpu_s", .double(mb / median(cd)))] }
            }
            report("quants", [], extra)
        }
    case "flux-forward":
        // A 12-billion-parameter model: one pass, weights read a layer at a time (peak RSS is the point).
        let m = try LoadedModel.open(args[2])
        guard let c = m.configuration.as(FluxConfiguration.self) else { throw ModelError.notRecognised("not a FLUX") }
        let size = args.count > 3 ? Int(args[3]) ?? 256 : 256
        let tokens = args.count > 4 ? Int(args[4]) ?? 512 : 512
        var inputs = try m.family.verificationInputs("output", m.configuration, options: VerificationInputOptions(seed: 0, batch: 1, imageSize: size))
        var rng = SeededRandom(seed: 1)
        inputs["encoder_hidden_states"] = Tensor(shape: [1, tokens, c.jointAttentionDim], data: rng.normals(tokens * c.jointAttentionDim))
        inputs["txt_ids"] = Tensor(zeros: [tokens, 3])
        var times: [Double] = []
        var finite = true
        for _ in 0..<max(runs, 1) {
            let start = clock.now
            let out = try m.family.forward("output", m.configuration, weights: m.weights, inputs: inputs, trace: nil)
            times.append(seconds(clock.now - start))
            finite = finite && out.data.allSatisfy(\.isFinite)
        }
        report("flux-forward", times, [("threads", .int(Gemm.threads)), ("image_tokens", .int((size / 16) * (size / 16))),
                                        ("text_tokens", .int(tokens)), ("finite", .bool(finite))])
    case "flux-blocks":
        let m = try LoadedModel.open(args[2])
        guard let c = m.configuration.as(FluxConfiguration.self) else { throw ModelError.notRecognised("not a FLUX") }
        let size = args.count > 3 ? Int(args[3]) ?? 1024 : 1024
        let tokens = args.count > 4 ? Int(args[4]) ?? 512 : 512
        var inputs = try m.family.verificationInputs("output", m.configuration, options: VerificationInputOptions(seed: 0, batch: 1, imageSize: size))
        var rng = SeededRandom(seed: 1)
        inputs["encoder_hidden_states"] = Tensor(shape: [1, tokens, c.jointAttentionDim], data: rng.normals(tokens * c.jointAttentionDim))
        inputs["txt_ids"] = Tensor(zeros: [tokens, 3])
        // A block's time runs from the previous traced block output (or the rotary table) to its own.
        var double: [Double] = [], single: [Double] = [], total: [Double] = [], cpu: [Double] = []
        for run in 0...max(runs, 1) {
            var mark = clock.now
            var d = 0.0, s = 0.0
            let start = clock.now, startCPU = cpuSeconds()
            _ = try m.family.forward("output", m.configuration, weights: m.weights, inputs: inputs) { name, _ in
                if name == "pos_embed.1" { mark = clock.now }
                if name.hasPrefix("transformer_blocks."), name.hasSuffix(".1"), name.split(separator: ".").count == 3 {
                    d += seconds(clock.now - mark); mark = clock.now
                }
                if name.hasPrefix("single_transformer_blocks."), name.hasSuffix(".1"), name.split(separator: ".").count == 3 {
                    s += seconds(clock.now - mark); mark = clock.now
                }
            }
            if run == 0 { continue }   // warm-up: weights paged in
            double.append(d / Double(c.numLayers))
            single.append(s / Double(c.numSingleLayers))
            total.append(seconds(clock.now - start))
            cpu.append(cpuSeconds() - startCPU)
        }
        report("flux-double-block", double, [("image_tokens", .int((size / 16) * (size / 16))), ("text_tokens", .int(tokens)), ("threads", .int(Gemm.threads))])
        report("flux-single-block", single, [("image_tokens", .int((size / 16) * (size / 16))), ("text_tokens", .int(tokens)), ("threads", .int(Gemm.threads))])
        report("flux-forward", total, [("cpu_s", .double(median(cpu)))])
    case "attention":
        guard args.count == 5, let t = Int(args[2]), let heads = Int(args[3]), let hd = Int(args[4]), t > 0, heads > 0, hd > 0 else {
            throw ModelError.notRecognised("attention TOKENS HEADS HEADDIM")
        }
        let d = heads * hd
        var rng = SeededRandom(seed: 3)
        let qkv = rng.normals(t * 3 * d)
        var out = [Float](repeating: 0, count: t * d)
        var times: [Attention.Scheduling: [Double]] = [.oneHeadAtATime: [], .headsInParallel: []]
        func once(_ s: Attention.Scheduling) -> Double {
            Attention.scheduling = s
            let start = clock.now
            qkv.withUnsafeBufferPointer { q in
                Attention.multiHead(q: q.baseAddress!, k: q.baseAddress! + d, v: q.baseAddress! + 2 * d, rowStride: 3 * d,
                                    batch: 1, tokens: t, heads: heads, headDim: hd, scale: 1 / Float(hd).squareRoot(), into: &out)
            }
            return seconds(clock.now - start)
        }
        _ = once(.oneHeadAtATime); _ = once(.headsInParallel)   // warm-up
        for r in 0..<max(runs, 1) {
            for s in r % 2 == 0 ? [Attention.Scheduling.oneHeadAtATime, .headsInParallel] : [.headsInParallel, .oneHeadAtATime] {
                times[s, default: []].append(once(s))
            }
        }
        let shape: [(String, JSONValue)] = [("tokens", .int(t)), ("heads", .int(heads)), ("head_dim", .int(hd)), ("threads", .int(Gemm.threads))]
        report("attention-one-head-at-a-time", times[.oneHeadAtATime] ?? [], shape)
        report("attention-heads-in-parallel", times[.headsInParallel] ?? [], shape)
    case "requantize":
        guard args.count == 5, let type = DType(rawValue: args[4].uppercased()), let layout = type.block else {
            throw ModelError.notRecognised("requantize BUNDLE OUT TYPE (a block type: Q8_0, Q4_K, ...)")
        }
        let b = try NativeBundle(path: args[2])
        let config = try ModelConfiguration(family: b.manifest.family, json: b.manifest.config)
        var records: [BundleTensor] = []
        var sizes: [Int] = []
        var chosen: [DType?] = []
        for t in b.manifest.tensors {
            let s = t.stored.shape
            let q = s.count == 2 && s[1] % layout.elements == 0 && config.quantizesByDefault(t.name, shape: s)
            chosen.append(q ? type : nil)
            sizes.append(q ? try type.byteCount(shape: s) : t.stored.bytes)
        }
        let writer = try BundleWriter(path: args[3], force: true)
        let (offsets, total) = try writer.layout(sizes)
        for (k, t) in b.manifest.tensors.enumerated() {
            guard let view = b.view(t.name) else { continue }
            var r = t
            r.scale = nil
            if let d = chosen[k] {
                let values = view.floats()
                let out = UnsafeMutableRawPointer.allocate(byteCount: sizes[k], alignment: 64)
                defer { out.deallocate() }
                values.withUnsafeBufferPointer { BlockQuantizer.quantize(d, $0.baseAddress!, count: values.count, into: out, threads: ProcessInfoLite.activeProcessorCount) }
                let bytes = UnsafeRawBufferPointer(start: out, count: sizes[k])
                try writer.write(bytes, at: offsets[k])
                r.stored = StoredRecord(dtype: d, shape: t.stored.shape, offset: offsets[k], bytes: sizes[k], checksum: XXH3Hasher.hex(bytes))
                r.error = nil
            } else if t.stored.dtype == .i8 {
                // int8 tensors the family would not quantize into blocks go back to float32.
                throw ModelError.notRecognised("requantize an f32 bundle")
            } else {
                try withExtendedLifetime(view.bytes) { try writer.write(view.bytes.buffer, at: offsets[k]) }
                r.stored.offset = offsets[k]
            }
            records.append(r)
            b.releaseTensor(t.name)
        }
        let m = b.manifest
        try writer.finish(BundleManifest(alignment: m.alignment, family: m.family, variant: m.variant, config: m.config, naming: m.naming,
                                         provenance: m.provenance, dtypePolicy: .object([("dtype", .string(type.name.lowercased())), ("made_by", .string("ditkit-bench requantize"))]),
                                         weightsBytes: total, tensors: records))
        print(JSONWriter.string(.object([("measure", .string("requantize")), ("output", .string(args[3])), ("type", .string(type.name)),
                                         ("quantized", .int(chosen.compactMap { $0 }.count))]), pretty: false))
    default:
        fputs("unknown measurement \(args[1])\n", stderr)
        exit(64)
    }
} catch {
    fputs("ditkit-bench: \(error)\n", stderr)
    exit(2)
}
