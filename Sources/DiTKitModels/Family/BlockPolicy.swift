// Which tensors a family stores in a ggml block type (`convert --dtype q4_k` and the others) and
// which stay in high precision. A policy is a small declarative record, like the per-architecture
// records of ComfyUI-GGUF's tools/convert.py: a family lists the name patterns it keeps and why;
// the rules every family shares come first and are at least as conservative as ComfyUI-GGUF's
// converter and its llama.cpp quantize patch (tools/lcpp.patch):
//   1. 0-D and 1-D tensors stay (convert.py: `n_dims == 1` -> F32);
//   2. tensors of 1024 values or fewer stay (convert.py: `n_params <= QUANTIZATION_THRESHOLD`);
//   3. only 2-D matrices are quantized (lcpp.patch: `quantize &= ggml_n_dims(tensor) == 2` for image
//      models): convolutions and position tables stay;
//   4. then the family's own patterns: embeddings, modulations and the input and output layers
//      (lcpp.patch keeps `img_in.`, `txt_in.`, `time_in.`, `final_layer.`, ... for FLUX and
//      `x_embedder.`, `t_embedder.`, `context_embedder.`, `final_layer.`, `pos_embed` for SD3).
import DiTKitCore

/// One keep rule: canonical names matching `pattern` (a glob: `*` any run, `?` one character) stay
/// in high precision, for `reason`. `blockModulation` marks the adaLN modulation linears inside the
/// blocks: kept by default, quantized with `--quantize-modulations` as ComfyUI-GGUF's lcpp.patch does
/// (it keeps only the final layer's).
public struct BlockKeepRule: Sendable, Equatable {
    public var pattern: String
    public var reason: String
    public var blockModulation: Bool
    public init(_ pattern: String, _ reason: String, blockModulation: Bool = false) {
        self.pattern = pattern
        self.reason = reason
        self.blockModulation = blockModulation
    }
}

/// A family's block-type quantization policy.
public struct BlockPolicy: Sendable, Equatable {
    /// Tensors of at most this many values stay in high precision (ComfyUI-GGUF's `QUANTIZATION_THRESHOLD`).
    public static let smallTensorLimit = 1024

    /// The family's keep rules, checked in order after the shared ones.
    public var rules: [BlockKeepRule]
    /// What is quantized, in words (README and manifests).
    public var quantized: String

    public init(quantized: String, keep rules: [BlockKeepRule]) {
        self.quantized = quantized
        self.rules = rules
    }

    /// The policy with the blocks' modulation linears quantized too (`--quantize-modulations`), as
    /// ComfyUI-GGUF's lcpp.patch quantizes FLUX's `img_mod`/`txt_mod`/`modulation` and SD3's
    /// `adaLN_modulation`: what its published GGUF files hold. Itself when the family marks none.
    public func quantizingModulations() -> BlockPolicy {
        let modulations = rules.filter(\.blockModulation)
        guard !modulations.isEmpty else { return self }
        var p = BlockPolicy(quantized: quantized + "; with --quantize-modulations, the blocks' adaLN modulation linears ("
                                + modulations.map(\.pattern).joined(separator: ", ") + ")",
                            keep: rules.filter { !$0.blockModulation })
        p.modulationsQuantized = true
        return p
    }

    /// Whether the blocks' modulation linears are quantized (`quantizingModulations()`).
    public private(set) var modulationsQuantized = false

    /// Why the canonical tensor `name` of `shape` stays in high precision, or nil when it is quantized.
    public func keepReason(_ name: String, shape: [Int]) -> String? {
        if shape.count <= 1 { return "\(shape.count)-D" }
        if shape.reduce(1, *) <= Self.smallTensorLimit { return "small (at most \(Self.smallTensorLimit) values)" }
        if shape.count != 2 { return "\(shape.count)-D (only 2-D matrices are quantized)" }
        return rules.first { globMatch($0.pattern, name) }?.reason
    }

    /// The kept tensors in words: the shared rules, then the family's patterns.
    public var kept: String {
        var parts = ["0-D and 1-D tensors", "tensors of at most \(Self.smallTensorLimit) values", "tensors that are not 2-D (convolutions, position tables)"]
        var seen: [String] = []
        for r in rules where !seen.contains(r.reason) { seen.append(r.reason) }
        for reason in seen {
            parts.append(reason + " (" + rules.filter { $0.reason == reason }.map(\.pattern).joined(separator: ", ") + ")")
        }
        return parts.joined(separator: "; ")
    }

    /// The policy as manifest JSON.
    public var json: JSONValue {
        .object([
            ("quantized", .string(quantized)),
            ("kept", .string(kept)),
            ("small_tensor_limit", .int(Self.smallTensorLimit)),
            ("rules", .array(rules.map { .object([("pattern", .string($0.pattern)), ("reason", .string($0.reason))]) })),
            ("modulations_quantized", .bool(modulationsQuantized)),
        ])
    }
}
