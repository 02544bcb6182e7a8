// A model DiTKit knows: its family, configuration and canonical tensors.
import DiTKitCore

/// Model families.
public enum ModelFamily: String, Sendable, Codable {
    case dit
    case vae
}

/// A DiT or VAE configuration.
public enum ModelConfiguration: Sendable, Equatable {
    case dit(DiTConfiguration)
    case vae(VAEConfiguration)

    public var family: ModelFamily {
        switch self {
        case .dit: return .dit
        case .vae: return .vae
        }
    }

    /// `DiT-XL/2`, `DiT-custom`, `sd-vae-kl-f8`, `vae-custom`.
    public var variant: String {
        switch self {
        case .dit(let c): return c.variant
        case .vae(let c): return c.variant
        }
    }

    /// Canonical tensors in canonical order.
    public func tensorShapes() -> [(name: String, shape: [Int])] {
        switch self {
        case .dit(let c): return c.tensorShapes()
        case .vae(let c): return c.tensorShapes()
        }
    }

    /// The naming scheme bundles store.
    public var canonicalNaming: String {
        switch self {
        case .dit: return "dit-official"
        case .vae: return "vae-diffusers"
        }
    }

    /// Manifest JSON of the configuration.
    public var json: JSONValue {
        switch self {
        case .dit(let c): return c.json
        case .vae(let c): return c.json
        }
    }

    /// Reads a configuration back from a manifest's `model` object.
    public init(family: String, json: JSONValue) throws {
        switch family {
        case "dit": self = .dit(try DiTConfiguration(json: json))
        case "vae": self = .vae(try VAEConfiguration(json: json))
        default: throw ModelError.badConfiguration("unknown model family '\(family)'")
        }
    }

    /// Whether int8 weight-only quantization applies to this tensor by default: the large matrix
    /// weights (linear layers and 3x3/1x1 convs inside the network); never biases, norms,
    /// embedding tables, `pos_embed`, or the input/output layers.
    public func quantizesByDefault(_ name: String, shape: [Int]) -> Bool {
        guard name.hasSuffix(".weight"), shape.count == 2 || shape.count == 4 else { return false }
        switch self {
        case .dit:
            if name.hasPrefix("y_embedder.") || name.hasPrefix("x_embedder.") || name == "final_layer.linear.weight" { return false }
            return true
        case .vae:
            let excluded = ["encoder.conv_in.weight", "encoder.conv_out.weight", "decoder.conv_in.weight", "decoder.conv_out.weight",
                            "quant_conv.weight", "post_quant_conv.weight"]
            if excluded.contains(name) || name.contains("norm") { return false }
            return true
        }
    }

    /// The default int8 policy, in words (written into manifests).
    public var int8PolicyDescription: String {
        switch self {
        case .dit:
            return "linear weights of attention, MLP, adaLN modulation, timestep embedder and final adaLN; x_embedder, final_layer.linear, y_embedder, pos_embed, biases stay float"
        case .vae:
            return "3x3/1x1 conv and attention weights inside the network; conv_in, conv_out, quant_conv, post_quant_conv, norms and biases stay float"
        }
    }
}
