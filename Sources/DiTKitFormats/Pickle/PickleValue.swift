// The inert value tree a pickle is read into. Nothing in it can execute anything: globals
// are closed enum cases, calls have already been interpreted by `PickleMachine`.
import DiTKitCore

/// An allowlisted global, resolved to a closed set of meanings. Anything not listed here is
/// refused by `PickleMachine` before it reaches the tree.
public enum PickleGlobal: Equatable, Sendable {
    case rebuildTensorV2, rebuildTensorV3
    case rebuildParameter, rebuildParameterWithState
    case rebuildFromTypeV2
    case tensorType, parameterType
    /// A typed storage class (`torch.FloatStorage`) or `torch.UntypedStorage` (dtype `nil`).
    case storageType(DType?)
    /// A torch dtype (`torch.float16`).
    case dtype(DType)
    case orderedDict
    case torchSize
    case torchDevice
    case codecsEncode
    case set, frozenset
    case namespace
    case numpyScalar
    case numpyDType

    /// The Python name, for messages.
    public var pythonName: String {
        switch self {
        case .rebuildTensorV2: return "torch._utils._rebuild_tensor_v2"
        case .rebuildTensorV3: return "torch._utils._rebuild_tensor_v3"
        case .rebuildParameter: return "torch._utils._rebuild_parameter"
        case .rebuildParameterWithState: return "torch._utils._rebuild_parameter_with_state"
        case .rebuildFromTypeV2: return "torch._tensor._rebuild_from_type_v2"
        case .tensorType: return "torch.Tensor"
        case .parameterType: return "torch.nn.parameter.Parameter"
        case .storageType(let d): return d.map { "torch storage (\($0))" } ?? "torch.UntypedStorage"
        case .dtype(let d): return "torch dtype \(d)"
        case .orderedDict: return "collections.OrderedDict"
        case .torchSize: return "torch.Size"
        case .torchDevice: return "torch.device"
        case .codecsEncode: return "_codecs.encode"
        case .set: return "builtins.set"
        case .frozenset: return "builtins.frozenset"
        case .namespace: return "argparse.Namespace"
        case .numpyScalar: return "numpy.core.multiarray.scalar"
        case .numpyDType: return "numpy.dtype"
        }
    }
}

/// A reference to a storage, from a persistent id.
public struct StorageReference: Equatable, Sendable {
    /// Record key (`data/<key>` in a zip, the root key in the legacy stream).
    public var key: String
    /// Element type; for `UntypedStorage` the dtype is decided by the tensor that uses it.
    public var dtype: DType?
    /// Element count for typed storages, byte count for untyped ones.
    public var count: Int
    /// Device location string (`cpu`, `cuda:0`): informational only.
    public var location: String
    /// Legacy-stream view of the root storage `key`: the view's own key, and its offset and
    /// size in elements of `dtype` (torch slices the root's bytes at `offset * itemSize` for
    /// `count * itemSize` bytes, clamped to the root like a Python slice).
    public var legacyView: LegacyStorageView?

    public static func == (a: StorageReference, b: StorageReference) -> Bool {
        a.key == b.key && a.dtype == b.dtype && a.count == b.count && a.location == b.location && a.legacyView == b.legacyView
    }
}

/// The sixth field of a legacy persistent id: `(view_key, offset, size)`.
public struct LegacyStorageView: Equatable, Sendable {
    public var key: String
    /// Offset of the view in elements of the storage's dtype.
    public var offset: Int
    /// Size of the view in elements of the storage's dtype.
    public var count: Int
}

/// A tensor as described by a rebuild call: a strided view into a storage.
public struct TensorRecord: Equatable, Sendable {
    public var storage: StorageReference
    public var dtype: DType
    /// Offset of the first element, in elements.
    public var storageOffset: Int
    public var shape: [Int]
    /// Strides in elements.
    public var strides: [Int]
    public var requiresGrad: Bool
}

/// Any node of the tree.
public enum PickleValue: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer that does not fit 64 bits: little-endian two's complement bytes.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(PickleTuple)
    case list(PickleList)
    case dict(PickleDict)
    case set(PickleSet)
    case object(PickleObject)
    case global(PickleGlobal)
    // Boxed: a storage reference or a tensor record is several times larger than any other
    // payload, and every value of a million-item list would otherwise carry its size.
    indirect case storage(StorageReference)
    indirect case tensor(TensorRecord)
    /// The MARK sentinel; never present in a finished tree.
    case mark

    /// A short type name for error messages.
    public var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict(let d): return d.isOrdered ? "OrderedDict" : "dict"
        case .set: return "set"
        case .object(let o): return o.typeName
        case .global(let g): return g.pythonName
        case .storage: return "storage"
        case .tensor: return "tensor"
        case .mark: return "MARK"
        }
    }
}

/// Base class of container nodes. Containers are reference types so that the memo shares
/// nodes instead of copying them (no memo bombs), and they are owned by a `PickleArena` that
/// tears them down without recursion (no stack overflow on deep nesting).
public class PickleNode: @unchecked Sendable {
    fileprivate func clearChildren() {}
}

/// An immutable tuple.
public final class PickleTuple: PickleNode, @unchecked Sendable {
    public private(set) var items: [PickleValue]
    init(_ items: [PickleValue]) { self.items = items }
    override fileprivate func clearChildren() { items = [] }
}

/// A list.
public final class PickleList: PickleNode, @unchecked Sendable {
    public internal(set) var items: [PickleValue] = []
    override fileprivate func clearChildren() { items = [] }
}

/// A dict or OrderedDict, in insertion order. `attributes` holds a BUILD state set on it
/// (torch's `_metadata`), kept apart from the items.
public final class PickleDict: PickleNode, @unchecked Sendable {
    public let isOrdered: Bool
    public internal(set) var items: [(key: PickleValue, value: PickleValue)] = []
    public internal(set) var attributes: PickleValue?
    init(ordered: Bool) { isOrdered = ordered }
    override fileprivate func clearChildren() { items = []; attributes = nil }
}

/// A set or frozenset.
public final class PickleSet: PickleNode, @unchecked Sendable {
    public let isFrozen: Bool
    public internal(set) var items: [PickleValue] = []
    init(frozen: Bool) { isFrozen = frozen }
    override fileprivate func clearChildren() { items = [] }
}

/// An inert object: an `argparse.Namespace`, a numpy scalar or dtype, a `torch.device`.
public final class PickleObject: PickleNode, @unchecked Sendable {
    public enum Kind: Sendable, Equatable {
        case namespace, numpyScalar, numpyDType, device
    }
    public let kind: Kind
    /// Constructor arguments as pickled.
    public internal(set) var arguments: [PickleValue]
    /// Fields set by BUILD (for a Namespace: its attributes).
    public internal(set) var fields: [(name: String, value: PickleValue)] = []
    /// BUILD state that is not a name->value dict (numpy dtype state tuple).
    public internal(set) var state: PickleValue?

    init(kind: Kind, arguments: [PickleValue]) {
        self.kind = kind
        self.arguments = arguments
    }

    public var typeName: String {
        switch kind {
        case .namespace: return "Namespace"
        case .numpyScalar: return "numpy scalar"
        case .numpyDType: return "numpy.dtype"
        case .device: return "torch.device"
        }
    }
    override fileprivate func clearChildren() { arguments = []; fields = []; state = nil }
}

/// Owns every container node of one unpickled tree.
public final class PickleArena: @unchecked Sendable {
    private(set) var nodes: [PickleNode] = []
    init() {}
    func adopt<T: PickleNode>(_ node: T) -> T {
        nodes.append(node)
        return node
    }
    public var count: Int { nodes.count }
    deinit {
        // Break every parent->child link first so releasing nodes never recurses deeply.
        for n in nodes { n.clearChildren() }
    }
}

/// A finished pickle: its root value and the arena that owns its nodes.
public struct PickleTree: @unchecked Sendable {
    public let root: PickleValue
    public let arena: PickleArena
    /// Byte offset just past the STOP opcode.
    public let endOffset: Int
}
