// Where a forward pass gets its weights: a bundle (any stored dtype, widened one layer at a time)
// or a source checkpoint read through its conversion plan.
import DiTKitCore
import DiTKitFormats
import DiTKitNumerics

/// Float32 weights by canonical name.
public protocol WeightStore: AnyObject, Sendable {
    /// Calls `body` with the float32 values of `name`: zero-copy for F32 storage, widened or
    /// dequantized into a temporary buffer otherwise. Throws `ModelError` when there is no such tensor.
    func withFloats<R>(_ name: String, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R

    /// The number of values of `name`, without reading them. Throws `ModelError` when there is
    /// no such tensor.
    func elementCount(_ name: String) throws -> Int

    /// Calls `body` with consecutive blocks of rows (of the first dimension) of `name` as
    /// float32, in order, covering the tensor: `body(firstRow, values)`, the block holding
    /// `values.count / rowWidth` whole rows. Stores that
    /// widen or dequantize convert one block at a time into a buffer they reuse, so a quantized
    /// layer never needs its whole float32 copy; F32 storage (and the default implementation) is
    /// one block, zero-copy where it can be. Throws `ModelError` when there is no such tensor.
    func withRowBlocks(_ name: String, _ body: (_ firstRow: Int, _ values: UnsafeBufferPointer<Float>) throws -> Void) throws

    /// `y[r · ldy + j] = Σ_c x[r · ldx + c] · W[j, c]` (no bias) for `rows` ≤ `DirectProduct.maxRows`,
    /// with `W` = `name` (`n × k` values) multiplied as stored when it is int8, float16 or bfloat16
    /// (no widened copy), or dequantized a few rows at a time where the store can (block types).
    /// Returns false, having written nothing, when the store keeps `name` in another form (the
    /// caller then widens it and calls the float32 direct kernel, which gives the same bits).
    func directProduct(_ name: String, x: UnsafePointer<Float>, rows: Int, inFeatures k: Int, outFeatures n: Int, ldx: Int,
                       into y: UnsafeMutablePointer<Float>, ldy: Int) throws -> Bool
}

extension WeightStore {
    /// The values of `name` as an array (copies).
    public func floats(_ name: String) throws -> [Float] { try withFloats(name) { Array($0) } }

    /// One block: the whole tensor (its rows are its first dimension, 1 for a 0-d tensor).
    public func withRowBlocks(_ name: String, _ body: (_ firstRow: Int, _ values: UnsafeBufferPointer<Float>) throws -> Void) throws {
        try withFloats(name) { values in try body(0, values) }
    }

    /// Never: the store widens every weight.
    public func directProduct(_ name: String, x: UnsafePointer<Float>, rows: Int, inFeatures k: Int, outFeatures n: Int, ldx: Int,
                              into y: UnsafeMutablePointer<Float>, ldy: Int) throws -> Bool { false }
}

/// Runs a direct product (`WeightStore.directProduct`) on `n × k` stored values of `dtype` at
/// `bytes` (per-row `scales` for int8); false when `dtype` is not one the kernels read or the
/// sizes do not match.
func directProduct(dtype: DType, bytes: RawBytes, scales: RawBytes?, x: UnsafePointer<Float>, rows: Int, inFeatures k: Int,
                   outFeatures n: Int, ldx: Int, into y: UnsafeMutablePointer<Float>, ldy: Int) -> Bool {
    guard rows > 0, rows <= DirectProduct.maxRows, k > 0, n > 0, let base = bytes.buffer.baseAddress else { return false }
    let weight: DirectProduct.Weight
    switch dtype {
    case .i8:
        guard bytes.count == n * k, let scales, scales.count == n * 4, scales.isAligned(to: 4),
              let s = scales.buffer.baseAddress else { return false }
        weight = .int8(base.assumingMemoryBound(to: Int8.self), scales: s.assumingMemoryBound(to: Float.self))
    case .f16:
        guard bytes.count == n * k * 2 else { return false }
        weight = .f16(base.assumingMemoryBound(to: UInt16.self))
    case .bf16:
        guard bytes.count == n * k * 2 else { return false }
        weight = .bf16(base.assumingMemoryBound(to: UInt16.self))
    default:
        return false
    }
    DirectProduct.multiply(x, rows: rows, inFeatures: k, weight: weight, outFeatures: n, into: y, ldx: ldx, ldy: ldy,
                           threads: ProcessInfoLite.activeProcessorCount)
    return true
}

/// Float32 buffers reused across layers (one per nesting level in use), so widening a layer's
/// weights costs no allocation and no page faults after the first layer.
final class ScratchPool: @unchecked Sendable {
    private let free = Locked<[OwnedBuffer]>([])
    /// Most buffers kept between uses.
    let keep: Int

    init(keep: Int = 2) { self.keep = keep }

    /// Calls `body` with a buffer of at least `count` floats.
    func with<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        let bytes = max(count, 1) * 4
        let buffer = free.withLock { list -> OwnedBuffer in
            if let k = list.firstIndex(where: { $0.count >= bytes }) { return list.remove(at: k) }
            return OwnedBuffer(uninitializedCount: bytes)
        }
        defer {
            free.withLock { list in
                list.append(buffer)
                if list.count > keep { list.sort { $0.count > $1.count }; list.removeLast(list.count - keep) }
            }
        }
        return try body(buffer.pointer.assumingMemoryBound(to: Float.self))
    }
}

/// Weights from a DiTKit bundle.
public final class BundleWeights: WeightStore, @unchecked Sendable {
    public let bundle: NativeBundle
    private let scratch = ScratchPool()
    /// Largest block `withRowBlocks` widens at a time (bytes of float32): every DiT-XL/2 weight a
    /// GEMM reads (21 MB at most) is one block, a FLUX.1 `linear1` (264 MB as float32) comes in 9.
    /// Each block is a GEMM of its own that packs the whole input again, so blocks are as few and
    /// as even as this allows.
    static let blockBytes = 32 << 20

    public init(_ bundle: NativeBundle) { self.bundle = bundle }

    private func view(_ name: String) throws -> TensorView {
        guard let view = bundle.view(name) else { throw ModelError.notRecognised("bundle \(bundle.path) has no tensor '\(name)'") }
        return view
    }

    public func withFloats<R>(_ name: String, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        let view = try view(name)
        // Weights are used once per forward pass: keep resident memory flat across the model.
        defer { bundle.releaseTensor(name) }
        if view.dtype == .f32 {
            return try view.bytes.withElements(of: Float.self) { try body($0) }
        }
        let n = view.elementCount
        return try scratch.with(n) { buffer in
            view.dequantize(into: buffer, threads: ProcessInfoLite.activeProcessorCount)
            return try body(UnsafeBufferPointer(start: buffer, count: n))
        }
    }

    public func elementCount(_ name: String) throws -> Int { try view(name).elementCount }

    public func directProduct(_ name: String, x: UnsafePointer<Float>, rows: Int, inFeatures k: Int, outFeatures n: Int, ldx: Int,
                              into y: UnsafeMutablePointer<Float>, ldy: Int) throws -> Bool {
        let view = try view(name)
        defer { bundle.releaseTensor(name) }
        if view.dtype.block != nil {
            // Block types: each thread dequantizes a few rows at a time into its own small buffer.
            guard rows > 0, rows <= DirectProduct.maxRows, view.rowCount == n, view.elementCount == n * k else { return false }
            DirectProduct.multiplyWidening(x, rows: rows, inFeatures: k, outFeatures: n, into: y, ldx: ldx, ldy: ldy,
                                           threads: ProcessInfoLite.activeProcessorCount) { first, count, buffer in
                view.dequantize(rows: first..<(first + count), into: buffer)
            }
            return true
        }
        guard view.dtype == .i8 || view.dtype == .f16 || view.dtype == .bf16 else { return false }
        return DiTKitModels.directProduct(dtype: view.dtype, bytes: view.bytes, scales: view.scale, x: x, rows: rows, inFeatures: k,
                                          outFeatures: n, ldx: ldx, into: y, ldy: ldy)
    }

    public func withRowBlocks(_ name: String, _ body: (_ firstRow: Int, _ values: UnsafeBufferPointer<Float>) throws -> Void) throws {
        let view = try view(name)
        defer { bundle.releaseTensor(name) }
        if view.dtype == .f32 {
            try view.bytes.withElements(of: Float.self) { try body(0, $0) }
            return
        }
        let rows = view.rowCount, cols = rows == 0 ? 0 : view.elementCount / rows
        let most = max(1, min(rows, BundleWeights.blockBytes / 4 / max(cols, 1)))
        let blocks = (rows + most - 1) / most
        let step = max(1, (rows + blocks - 1) / max(blocks, 1))
        try scratch.with(step * cols) { buffer in
            var first = 0
            while first < rows {
                let count = min(step, rows - first)
                view.dequantize(rows: first..<(first + count), into: buffer, threads: ProcessInfoLite.activeProcessorCount)
                try body(first, UnsafeBufferPointer(start: buffer, count: count * cols))
                first += count
            }
        }
    }
}

/// Weights from a source checkpoint, assembled through the conversion plan (renames, squeezes,
/// q/k/v merges, folded embedders and the recomputed position embedding).
public final class PlannedWeights: WeightStore, @unchecked Sendable {
    public let container: any TensorContainer
    public let plan: ModelPlan
    private let recipes: [String: PlannedTensor]
    private let index: [String: Int]

    public init(container: any TensorContainer, plan: ModelPlan) {
        self.container = container
        self.plan = plan
        recipes = Dictionary(plan.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        index = Dictionary(container.tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Detects the model in `container` and plans its weights.
    public convenience init(container: any TensorContainer, hints: DetectionHints = DetectionHints()) throws {
        self.init(container: container, plan: try ModelDetector.plan(container, hints: hints))
    }

    public func elementCount(_ name: String) throws -> Int {
        guard let t = recipes[name] else { throw ModelError.notRecognised("\(container.path) has no tensor '\(name)'") }
        return t.shape.reduce(1, *)
    }

    public func withFloats<R>(_ name: String, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        guard let t = recipes[name] else { throw ModelError.notRecognised("\(container.path) has no tensor '\(name)'") }
        let n = t.shape.reduce(1, *)
        // A float32 source tensor used as it is: its mapped bytes, without a copy.
        switch t.recipe {
        case .copy(let s), .reshape(let s, _):
            if let i = index[s], container.tensors[i].dtype == .f32, container.tensors[i].elementCount == n {
                let bytes = try container.bytes(of: i)
                defer { container.release(i) }
                if bytes.isAligned(to: 4) { return try bytes.withElements(of: Float.self) { try body($0) } }
            }
        default:
            break
        }
        return try scratch.with(n) { buffer in try assemble(t, name, n, into: buffer, body) }
    }

    /// Directly from a float16 or bfloat16 source tensor used as it is (FLUX.1 and SD3 releases
    /// are bfloat16 or float16).
    public func directProduct(_ name: String, x: UnsafePointer<Float>, rows: Int, inFeatures k: Int, outFeatures n: Int, ldx: Int,
                              into y: UnsafeMutablePointer<Float>, ldy: Int) throws -> Bool {
        guard let t = recipes[name] else { throw ModelError.notRecognised("\(container.path) has no tensor '\(name)'") }
        switch t.recipe {
        case .copy(let s), .reshape(let s, _):
            guard let i = index[s], container.tensors[i].dtype == .f16 || container.tensors[i].dtype == .bf16,
                  container.tensors[i].elementCount == n * k else { return false }
            let bytes = try container.bytes(of: i)
            defer { container.release(i) }
            return DiTKitModels.directProduct(dtype: container.tensors[i].dtype, bytes: bytes, scales: nil, x: x, rows: rows,
                                              inFeatures: k, outFeatures: n, ldx: ldx, into: y, ldy: ldy)
        default:
            return false
        }
    }

    private let scratch = ScratchPool()

    private func assemble<R>(_ t: PlannedTensor, _ name: String, _ n: Int, into buffer: UnsafeMutablePointer<Float>,
                             _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        var position = 0
        /// Appends rows `part` of `of` equal blocks of the source (the whole source by default), or
        /// `rows` (a range of the first dimension).
        func append(_ source: String, part: Int = 0, of: Int = 1, rows: Range<Int>? = nil) throws {
            guard let i = index[source] else { throw ModelError.notRecognised("\(container.path) has no tensor '\(source)'") }
            let e = container.tensors[i]
            let bytes = try container.bytes(of: i)
            defer { container.release(i) }
            let rowCount = e.shape.first ?? 1, perRow = rowCount > 0 ? e.elementCount / rowCount : 0
            let first: Int, count: Int
            if let rows {
                guard rows.lowerBound >= 0, rows.upperBound <= rowCount else { throw ModelError.inconsistent("'\(source)' has no rows \(rows)") }
                (first, count) = (rows.lowerBound * perRow, rows.count * perRow)
            } else {
                guard e.elementCount % of == 0 else { throw ModelError.inconsistent("'\(source)' does not fit '\(name)'") }
                (first, count) = (part * (e.elementCount / of), e.elementCount / of)
            }
            // Byte offset of element `first`: block types hold whole rows of whole blocks, and every
            // part taken here is whole rows.
            let byteOffset: Int
            if let b = e.dtype.block {
                guard first % b.elements == 0, count % b.elements == 0 else { throw ModelError.inconsistent("'\(source)' (\(e.dtype.name)) cannot be split for '\(name)'") }
                byteOffset = first / b.elements * b.bytes
            } else {
                byteOffset = first * e.dtype.itemSize
            }
            try bytes.withElements(of: UInt8.self) { raw in
                guard let base = raw.baseAddress, position + count <= n else { throw ModelError.inconsistent("'\(source)' does not fit '\(name)'") }
                ElementConversion.toFloat32(UnsafeRawPointer(base + byteOffset), dtype: e.dtype, count: count, into: buffer + position)
            }
            position += count
        }
        switch t.recipe {
        case .copy(let s), .reshape(let s, _): try append(s)
        case .concatRows(let parts): for p in parts { try append(p) }
        case .foldIdentical(let copies): try append(copies[0])
        case let .rowSlice(s, part, of): try append(s, part: part, of: of)
        case let .rowRange(s, start, count): try append(s, rows: start..<(start + count))
        case .swapHalves(let s):
            try append(s)
            let half = n / 2
            let tmp = [Float](UnsafeBufferPointer(start: buffer, count: half))
            buffer.update(from: buffer + half, count: n - half)
            tmp.withUnsafeBufferPointer { (buffer + (n - half)).update(from: $0.baseAddress!, count: half) }
        case .computed:
            let values = try plan.configuration.family.computedTensor(name, plan.configuration)
            guard values.count == n else { throw ModelError.inconsistent("computed '\(name)' has \(values.count) values, expected \(n)") }
            values.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: n) }
            position = n
        }
        guard position == n else { throw ModelError.inconsistent("'\(name)' assembled \(position) of \(n) values") }
        return try body(UnsafeBufferPointer(start: buffer, count: n))
    }
}

/// Receives named intermediate activations during a forward pass (PyTorch module paths, PyTorch layouts).
public typealias LayerTrace = (_ name: String, _ value: Tensor) throws -> Void
