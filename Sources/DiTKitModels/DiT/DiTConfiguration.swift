// DiT hyperparameters, as facebookresearch/DiT models.py defines them, and the tensors they imply.
import DiTKitCore

/// Everything a DiT forward pass needs. Sizes are in latent pixels (`inputSize` = image size / 8).
public struct DiTConfiguration: Sendable, Equatable {
    public var inputSize: Int
    public var patchSize: Int
    public var inChannels: Int
    public var hiddenSize: Int
    public var depth: Int
    public var numHeads: Int
    public var mlpRatio: Double
    /// Real classes; the embedding table has one more row (the null class for guidance).
    public var numClasses: Int
    public var learnSigma: Bool
    public var frequencyEmbeddingSize: Int = 256
    public var layerNormEps: Double = 1e-6

    public init(inputSize: Int, patchSize: Int, inChannels: Int = 4, hiddenSize: Int, depth: Int, numHeads: Int,
                mlpRatio: Double = 4.0, numClasses: Int = 1000, learnSigma: Bool = true) {
        self.inputSize = inputSize
        self.patchSize = patchSize
        self.inChannels = inChannels
        self.hiddenSize = hiddenSize
        self.depth = depth
        self.numHeads = numHeads
        self.mlpRatio = mlpRatio
        self.numClasses = numClasses
        self.learnSigma = learnSigma
    }

    public var outChannels: Int { learnSigma ? inChannels * 2 : inChannels }
    public var headDim: Int { hiddenSize / numHeads }
    public var mlpHidden: Int { Int(Double(hiddenSize) * mlpRatio) }
    public var gridSize: Int { inputSize / patchSize }
    public var tokens: Int { gridSize * gridSize }
    /// The class index used for the unconditional branch of guidance.
    public var nullClass: Int { numClasses }
    public var imageSize: Int { inputSize * 8 }

    /// The standard architectures: (name, depth, hidden, heads).
    public static let standard: [(name: String, depth: Int, hidden: Int, heads: Int)] = [
        ("S", 12, 384, 6), ("B", 12, 768, 12), ("L", 24, 1024, 16), ("XL", 28, 1152, 16),
    ]

    /// One of the twelve official configurations (`DiT-XL/2`) at an image size.
    public static func named(_ name: String, imageSize: Int = 256, numClasses: Int = 1000) -> DiTConfiguration? {
        guard name.hasPrefix("DiT-"), let slash = name.lastIndex(of: "/"), let p = Int(name[name.index(after: slash)...]) else { return nil }
        let size = String(name[name.index(name.startIndex, offsetBy: 4)..<slash])
        guard [2, 4, 8].contains(p), let s = standard.first(where: { $0.name == size }) else { return nil }
        return DiTConfiguration(inputSize: imageSize / 8, patchSize: p, hiddenSize: s.hidden, depth: s.depth, numHeads: s.heads, numClasses: numClasses)
    }

    /// `DiT-XL/2` for the standard sizes, `DiT-custom` otherwise.
    public var variant: String {
        if let s = DiTConfiguration.standard.first(where: { $0.depth == depth && $0.hidden == hiddenSize && $0.heads == numHeads }),
           [2, 4, 8].contains(patchSize), inChannels == 4, mlpRatio == 4.0 {
            return "DiT-\(s.name)/\(patchSize)"
        }
        return "DiT-custom"
    }

    /// Checks the internal consistency a forward pass relies on.
    public func validate() throws {
        guard inputSize > 0, patchSize > 0, inputSize % patchSize == 0 else { throw ModelError.badConfiguration("input size \(inputSize) is not a multiple of patch size \(patchSize)") }
        guard hiddenSize > 0, numHeads > 0, hiddenSize % numHeads == 0 else { throw ModelError.badConfiguration("hidden size \(hiddenSize) is not divisible by \(numHeads) heads") }
        guard hiddenSize % 4 == 0 else { throw ModelError.badConfiguration("hidden size \(hiddenSize) must be a multiple of 4 for the 2-D position embedding") }
        guard depth > 0, numClasses > 0, inChannels > 0 else { throw ModelError.badConfiguration("depth, classes and channels must be positive") }
    }

    /// Every tensor of the official state dict, in `state_dict()` order.
    public func tensorShapes() -> [(name: String, shape: [Int])] {
        let d = hiddenSize, p = patchSize
        var t: [(String, [Int])] = [
            ("pos_embed", [1, tokens, d]),
            ("x_embedder.proj.weight", [d, inChannels, p, p]),
            ("x_embedder.proj.bias", [d]),
            ("t_embedder.mlp.0.weight", [d, frequencyEmbeddingSize]),
            ("t_embedder.mlp.0.bias", [d]),
            ("t_embedder.mlp.2.weight", [d, d]),
            ("t_embedder.mlp.2.bias", [d]),
            ("y_embedder.embedding_table.weight", [numClasses + 1, d]),
        ]
        for i in 0..<depth {
            let b = "blocks.\(i)."
            t += [
                (b + "attn.qkv.weight", [3 * d, d]), (b + "attn.qkv.bias", [3 * d]),
                (b + "attn.proj.weight", [d, d]), (b + "attn.proj.bias", [d]),
                (b + "mlp.fc1.weight", [mlpHidden, d]), (b + "mlp.fc1.bias", [mlpHidden]),
                (b + "mlp.fc2.weight", [d, mlpHidden]), (b + "mlp.fc2.bias", [d]),
                (b + "adaLN_modulation.1.weight", [6 * d, d]), (b + "adaLN_modulation.1.bias", [6 * d]),
            ]
        }
        t += [
            ("final_layer.linear.weight", [p * p * outChannels, d]),
            ("final_layer.linear.bias", [p * p * outChannels]),
            ("final_layer.adaLN_modulation.1.weight", [2 * d, d]),
            ("final_layer.adaLN_modulation.1.bias", [2 * d]),
        ]
        return t
    }

    /// Total parameters (including `pos_embed`).
    public var parameterCount: Int { tensorShapes().reduce(0) { $0 + $1.shape.reduce(1, *) } }

    /// The configuration as manifest JSON.
    public var json: JSONValue {
        .object([
            ("input_size", .int(inputSize)), ("image_size", .int(imageSize)), ("patch_size", .int(patchSize)),
            ("in_channels", .int(inChannels)), ("out_channels", .int(outChannels)), ("hidden_size", .int(hiddenSize)),
            ("depth", .int(depth)), ("num_heads", .int(numHeads)), ("head_dim", .int(headDim)),
            ("mlp_ratio", .double(mlpRatio)), ("num_classes", .int(numClasses)), ("null_class", .int(nullClass)),
            ("learn_sigma", .bool(learnSigma)), ("frequency_embedding_size", .int(frequencyEmbeddingSize)),
            ("layer_norm_eps", .double(layerNormEps)), ("mlp_activation", .string("gelu-tanh")),
            ("timestep_embedding", .string("cos-first, 10000^(-i/half)")),
        ])
    }

    /// Reads a configuration from manifest JSON. Throws `ModelError.badConfiguration`.
    public init(json: JSONValue) throws {
        func int(_ k: String) throws -> Int {
            guard let v = json[k]?.intValue else { throw ModelError.badConfiguration("DiT configuration lacks integer '\(k)'") }
            return v
        }
        self.init(inputSize: try int("input_size"), patchSize: try int("patch_size"), inChannels: try int("in_channels"),
                  hiddenSize: try int("hidden_size"), depth: try int("depth"), numHeads: try int("num_heads"),
                  mlpRatio: json["mlp_ratio"]?.doubleValue ?? 4.0, numClasses: try int("num_classes"),
                  learnSigma: json["learn_sigma"]?.boolValue ?? true)
        if let f = json["frequency_embedding_size"]?.intValue { frequencyEmbeddingSize = f }
        if let e = json["layer_norm_eps"]?.doubleValue { layerNormEps = e }
        try validate()
    }
}
