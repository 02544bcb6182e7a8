// A frontend reading a DiTKit bundle through the library API: open once (one mapping), list the
// tensors, get typed zero-copy views, dequantize, read the configuration.
//
//   swift run ditkit-example model.ditkit [TENSOR]
import DiTKitCore
import DiTKitFormats
import DiTKitModels

let args = CommandLine.arguments
guard args.count >= 2 else {
    print("usage: ditkit-example BUNDLE [TENSOR]")
    exit(64)
}
do {
    // Opening maps weights.bin once; nothing is read until a tensor is used.
    let bundle = try NativeBundle(path: args[1])
    let config = try ModelConfiguration(family: bundle.manifest.family, json: bundle.manifest.config)
    print("\(bundle.manifest.variant): \(bundle.manifest.tensors.count) tensors, stored as \(bundle.manifest.dtypePolicy["dtype"]?.stringValue ?? "?")")
    // The family's own configuration type, when the program knows it.
    if let c = config.as(DiTConfiguration.self) {
        print("DiT depth \(c.depth), hidden \(c.hiddenSize), \(c.numHeads) heads, \(c.imageSize) px, \(c.numClasses) classes")
    } else {
        print("\(config.family.title): \(config.family.summary(config))")
    }
    let name = args.count > 2 ? args[2] : bundle.tensorNames[0]
    guard let view = bundle.view(name) else { print("no tensor \(name)"); exit(2) }
    // A typed zero-copy view of the stored bytes (F32 here is used in place) ...
    print("\(view.name): \(view.dtype.name) \(view.shape)")
    // ... and float32 values whatever the stored type (f16/bf16 widened, int8 times its row scale).
    let values = view.floats()
    let mean = values.reduce(0, +) / Float(max(values.count, 1))
    print("first values: \(values.prefix(4).map { ($0 * 1e4).rounded() / 1e4 }), mean \(mean)")
} catch {
    print("error: \(error)")
    exit(2)
}

#if canImport(Glibc)
import Glibc
#endif
