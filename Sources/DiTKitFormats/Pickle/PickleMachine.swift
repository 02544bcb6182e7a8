// Just enough pickle to read PyTorch checkpoints, and nothing that can execute code.
//
// `PickleMachine` interprets the opcodes of protocols 0-5 into an inert `PickleValue` tree.
// Globals are resolved against a fixed allowlist (`PickleAllowlist`); every other global
// refuses the whole input with its name and byte offset. Calls (REDUCE, NEWOBJ, INST, OBJ)
// are interpreted only for allowlisted callables and only produce inert values. Nothing is
// imported or executed. Every length is checked against the bytes that remain before
// anything is allocated; stack, memo, mark depth, node count, tensors, dimensions, string bytes
// and the values calls copy out of memoised nodes are capped (`PickleLimits`). Storage persistent
// ids must have the arity torch unpacks for the container (`StorageIDLayout`).
//
// Entry point: `PickleMachine.load(_:from:limits:storageIDs:)`.
import DiTKitCore

/// Why a pickle was refused. Offsets are byte offsets into the pickle being read.
public enum PickleError: Error, CustomStringConvertible, Sendable {
    case forbiddenGlobal(module: String, name: String, offset: Int)
    case forbiddenCall(String, offset: Int)
    case unsupportedOpcode(UInt8, offset: Int)
    case truncated(offset: Int)
    case malformed(String, offset: Int)
    case limit(String, offset: Int)

    public var description: String {
        switch self {
        case let .forbiddenGlobal(m, n, o):
            return "refused global \(TerminalText.quoted(m + "." + n)) at byte \(o) of the pickle: not on the allowlist of tensor-rebuild functions and plain containers (nothing was imported or executed)"
        case let .forbiddenCall(what, o):
            return "refused call at byte \(o) of the pickle: \(what) (nothing was executed)"
        case let .unsupportedOpcode(op, o):
            return "unsupported pickle opcode 0x\(String(op, radix: 16, uppercase: false)) at byte \(o)"
        case let .truncated(o):
            return "pickle is truncated at byte \(o)"
        case let .malformed(what, o):
            return "malformed pickle at byte \(o): \(what)"
        case let .limit(what, o):
            return "pickle exceeds a safety limit at byte \(o): \(what)"
        }
    }
}

/// Resource limits for one pickle.
public struct PickleLimits: Sendable {
    /// Maximum open MARKs at once.
    public var maxMarkDepth = 1_000
    /// Maximum values on the stack.
    public var maxStack = 1_000_000
    /// Maximum memo entries.
    public var maxMemo = 1_000_000
    /// Maximum container nodes.
    public var maxNodes = 5_000_000
    /// Maximum bytes of a single string or bytes value, and of all of them together (each is a
    /// copy out of the pickle).
    public var maxStringBytes = 256 << 20
    /// Maximum tensors rebuilt (each copies its sizes and strides, so memo references to one
    /// huge size tuple must not be multiplied without bound).
    public var maxTensors = 200_000
    /// Maximum dimensions of one tensor (NumPy's limit; torch has none, no checkpoint comes near).
    public var maxRank = 64
    /// Maximum bytes that calls may build from values already in the tree (an `OrderedDict` of a
    /// memoised list copies its pairs, `_codecs.encode` of a memoised string copies its text):
    /// each copied item counts 32 bytes. Memo references alone share nodes and cost nothing.
    public var maxCopiedBytes = 64 << 20
    public init() {}
}

/// How a pickle's storage persistent ids are laid out. torch unpacks them with a fixed arity,
/// so an id with another number of fields is refused, as torch refuses it.
public enum StorageIDLayout: Sendable {
    /// `('storage', type, key, location, numel)`: `data.pkl` of a torch.save zip archive.
    case archive
    /// `('storage', type, root_key, location, numel, view)`: the legacy (pre-1.6) stream, where
    /// `view` is `None` or `(view_key, offset, size)`.
    case legacy

    var fields: Int { self == .archive ? 5 : 6 }
}

/// The allowlist: (module, name) -> meaning. Python 2 names are mapped first.
public enum PickleAllowlist {
    /// Resolves a global or returns `nil` when it is not allowed.
    public static func resolve(module rawModule: String, name: String) -> PickleGlobal? {
        var module = rawModule
        if module == "__builtin__" { module = "builtins" }
        if module == "torch.tensor" { module = "torch._tensor" }
        switch (module, name) {
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor_v3"): return .rebuildTensorV3
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameterWithState
        case ("torch._tensor", "_rebuild_from_type_v2"): return .rebuildFromTypeV2
        case ("torch", "Tensor"), ("torch._tensor", "Tensor"): return .tensorType
        case ("torch.nn.parameter", "Parameter"), ("torch.nn", "Parameter"): return .parameterType
        case ("torch", "UntypedStorage"), ("torch.storage", "UntypedStorage"): return .storageType(nil)
        case ("torch", "Size"): return .torchSize
        case ("torch", "device"): return .torchDevice
        case ("collections", "OrderedDict"): return .orderedDict
        case ("_codecs", "encode"): return .codecsEncode
        case ("builtins", "set"): return .set
        case ("builtins", "frozenset"): return .frozenset
        case ("argparse", "Namespace"): return .namespace
        case ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"): return .numpyScalar
        case ("numpy", "dtype"): return .numpyDType
        default: break
        }
        if module == "torch" {
            if let d = DType(torchStorageClass: name) { return .storageType(d) }
            if let d = DType(torchDTypeName: name) { return .dtype(d) }
        }
        return nil
    }
}

/// The interpreter. Use `load`.
public struct PickleMachine {
    private let input: UnsafeRawBufferPointer
    private var pos: Int
    private let limits: PickleLimits
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    private let arena = PickleArena()
    private var opStart = 0
    private let storageIDs: StorageIDLayout
    private var tensorCount = 0
    private var copiedBytes = 0
    private var stringBytes = 0

    /// Reads one pickle starting at `offset` of `input`, up to and including its STOP. Storage
    /// persistent ids must follow `storageIDs`. Throws `PickleError`.
    public static func load(_ input: UnsafeRawBufferPointer, from offset: Int = 0, limits: PickleLimits = PickleLimits(),
                            storageIDs: StorageIDLayout = .archive) throws -> PickleTree {
        var m = PickleMachine(input: input, pos: offset, limits: limits, storageIDs: storageIDs)
        let root = try m.run()
        return PickleTree(root: root, arena: m.arena, endOffset: m.pos)
    }

    /// Reads one pickle held in a byte array.
    public static func load(_ bytes: [UInt8], limits: PickleLimits = PickleLimits(), storageIDs: StorageIDLayout = .archive) throws -> PickleTree {
        try bytes.withUnsafeBytes { try load($0, from: 0, limits: limits, storageIDs: storageIDs) }
    }

    private init(input: UnsafeRawBufferPointer, pos: Int, limits: PickleLimits, storageIDs: StorageIDLayout) {
        self.input = input
        self.pos = pos
        self.limits = limits
        self.storageIDs = storageIDs
    }

    // MARK: reading primitives

    private var remaining: Int { input.count - pos }

    private mutating func byte() throws -> UInt8 {
        guard pos < input.count else { throw PickleError.truncated(offset: pos) }
        defer { pos += 1 }
        return input[pos]
    }

    private mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else { throw PickleError.truncated(offset: pos) }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: input[pos..<(pos + n)])
    }

    private mutating func uint(_ n: Int) throws -> UInt64 {
        let b = try take(n)
        var v: UInt64 = 0
        for k in (0..<n).reversed() { v = v << 8 | UInt64(b[k]) }
        return v
    }

    private mutating func length(_ width: Int, what: String) throws -> Int {
        let raw = try uint(width)
        guard raw <= UInt64(remaining) else {
            throw PickleError.malformed("\(what) declares \(raw) bytes but only \(remaining) remain", offset: opStart)
        }
        let n = Int(raw)
        guard n <= limits.maxStringBytes else { throw PickleError.limit("\(what) of \(n) bytes", offset: opStart) }
        stringBytes += n
        guard stringBytes <= limits.maxStringBytes else {
            throw PickleError.limit("strings and bytes of more than \(limits.maxStringBytes) bytes in all", offset: opStart)
        }
        return n
    }

    /// A protocol-0 text argument, up to (not including) the newline.
    private mutating func line() throws -> [UInt8] {
        let start = pos
        while pos < input.count {
            if input[pos] == 0x0A {
                let l = Array(input[start..<pos])
                pos += 1
                return l
            }
            pos += 1
            if pos - start > 65536 { throw PickleError.limit("text argument longer than 64 KiB", offset: opStart) }
        }
        throw PickleError.truncated(offset: pos)
    }

    private func utf8(_ bytes: UnsafeRawBufferPointer) throws -> String {
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw PickleError.malformed("string is not valid UTF-8", offset: opStart)
        }
        return s
    }

    // MARK: stack

    private mutating func push(_ v: PickleValue) throws {
        guard stack.count < limits.maxStack else { throw PickleError.limit("more than \(limits.maxStack) stack values", offset: opStart) }
        stack.append(v)
    }

    private mutating func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw PickleError.malformed("stack underflow", offset: opStart) }
        if let m = marks.last, stack.count < m { throw PickleError.malformed("stack underflow across a MARK", offset: opStart) }
        return v
    }

    private func top() throws -> PickleValue {
        guard let v = stack.last else { throw PickleError.malformed("stack underflow", offset: opStart) }
        if let m = marks.last, stack.count <= m { throw PickleError.malformed("stack underflow across a MARK", offset: opStart) }
        return v
    }

    /// Pops everything above the innermost MARK.
    private mutating func popToMark() throws -> [PickleValue] {
        guard let m = marks.popLast() else { throw PickleError.malformed("no MARK on the stack", offset: opStart) }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private mutating func node<T: PickleNode>(_ n: T) throws -> T {
        guard arena.count < limits.maxNodes else { throw PickleError.limit("more than \(limits.maxNodes) container nodes", offset: opStart) }
        return arena.adopt(n)
    }

    private mutating func tuple(_ items: [PickleValue]) throws -> PickleValue {
        .tuple(try node(PickleTuple(items)))
    }

    private mutating func memoPut(_ index: Int, _ v: PickleValue) throws {
        guard memo.count < limits.maxMemo || memo[index] != nil else {
            throw PickleError.limit("more than \(limits.maxMemo) memo entries", offset: opStart)
        }
        memo[index] = v
    }

    private func memoGet(_ index: Int) throws -> PickleValue {
        guard let v = memo[index] else { throw PickleError.malformed("memo key \(index) is not defined", offset: opStart) }
        return v
    }

    // MARK: the loop

    private mutating func run() throws -> PickleValue {
        while true {
            opStart = pos
            let code = try byte()
            guard let op = PickleOpcode(rawValue: code) else { throw PickleError.unsupportedOpcode(code, offset: opStart) }
            switch op {
            case .proto:
                let v = try byte()
                guard v <= 5 else { throw PickleError.malformed("unsupported protocol \(v)", offset: opStart) }
            case .frame:
                let n = try uint(8)
                guard n <= UInt64(remaining) else { throw PickleError.truncated(offset: pos) }
            case .stop:
                guard marks.isEmpty else { throw PickleError.malformed("STOP with an open MARK", offset: opStart) }
                guard stack.count == 1 else {
                    throw PickleError.malformed("STOP with \(stack.count) values on the stack (expected 1)", offset: opStart)
                }
                return stack[0]

            // Scalars
            case .none: try push(.none)
            case .newTrue: try push(.bool(true))
            case .newFalse: try push(.bool(false))
            case .binInt: try push(.int(Int(Int32(bitPattern: UInt32(try uint(4))))))
            case .binInt1: try push(.int(Int(try byte())))
            case .binInt2: try push(.int(Int(try uint(2))))
            case .long1:
                let n = Int(try byte())
                try push(integer(try take(n)))
            case .long4:
                let n = try length(4, what: "LONG4")
                guard n <= 4096 else { throw PickleError.limit("LONG4 of \(n) bytes", offset: opStart) }
                try push(integer(try take(n)))
            case .int:
                let text = String(decoding: try line(), as: UTF8.self)
                if text == "00" { try push(.bool(false)) } else if text == "01" { try push(.bool(true)) } else {
                    guard let v = Int(text) else { throw PickleError.malformed("INT argument \(TerminalText.quoted(text))", offset: opStart) }
                    try push(.int(v))
                }
            case .long:
                // Protocols 0 and 1 write every long as decimal text (`L1234...L`), the legacy
                // magic number 0x1950a86a20f9469cfc6c among them.
                var text = String(decoding: try line(), as: UTF8.self)
                if text.hasSuffix("L") { text.removeLast() }
                try push(try decimalInteger(text))
            case .binFloat:
                try push(.float(Double(bitPattern: try uint(8).byteSwapped)))
            case .float:
                let text = String(decoding: try line(), as: UTF8.self)
                guard let v = Double(text) else { throw PickleError.malformed("FLOAT argument \(TerminalText.quoted(text))", offset: opStart) }
                try push(.float(v))

            // Strings and bytes
            case .binUnicode:
                let n = try length(4, what: "BINUNICODE")
                try push(.string(try utf8(try take(n))))
            case .shortBinUnicode:
                let n = try length(1, what: "SHORT_BINUNICODE")
                try push(.string(try utf8(try take(n))))
            case .binUnicode8:
                let n = try length(8, what: "BINUNICODE8")
                try push(.string(try utf8(try take(n))))
            case .binString:
                let n = try length(4, what: "BINSTRING")
                try push(.string(python2String(try take(n))))
            case .shortBinString:
                let n = try length(1, what: "SHORT_BINSTRING")
                try push(.string(python2String(try take(n))))
            case .binBytes:
                let n = try length(4, what: "BINBYTES")
                try push(.bytes(Array(try take(n))))
            case .shortBinBytes:
                let n = try length(1, what: "SHORT_BINBYTES")
                try push(.bytes(Array(try take(n))))
            case .binBytes8:
                let n = try length(8, what: "BINBYTES8")
                try push(.bytes(Array(try take(n))))
            case .byteArray8:
                let n = try length(8, what: "BYTEARRAY8")
                try push(.bytes(Array(try take(n))))
            case .string:
                try push(.string(try quotedString(try line())))
            case .unicode:
                try push(.string(try rawUnicodeEscape(try line())))

            // Containers
            case .emptyTuple: try push(try tuple([]))
            case .tuple1:
                let a = try pop()
                try push(try tuple([a]))
            case .tuple2:
                let b = try pop(), a = try pop()
                try push(try tuple([a, b]))
            case .tuple3:
                let c = try pop(), b = try pop(), a = try pop()
                try push(try tuple([a, b, c]))
            case .tuple:
                let items = try popToMark()
                try push(try tuple(items))
            case .emptyList:
                try push(.list(try node(PickleList())))
            case .list:
                let items = try popToMark()
                let l = try node(PickleList())
                l.items = items
                try push(.list(l))
            case .emptyDict:
                try push(.dict(try node(PickleDict(ordered: false))))
            case .dict:
                let items = try popToMark()
                let d = try node(PickleDict(ordered: false))
                try setItems(d, items)
                try push(.dict(d))
            case .emptySet:
                try push(.set(try node(PickleSet(frozen: false))))
            case .frozenSet:
                let items = try popToMark()
                let s = try node(PickleSet(frozen: true))
                s.items = items
                try push(.set(s))
            case .append:
                let v = try pop()
                guard case .list(let l) = try top() else { throw PickleError.malformed("APPEND to a \(try top().typeName)", offset: opStart) }
                l.items.append(v)
            case .appends:
                let items = try popToMark()
                guard case .list(let l) = try top() else { throw PickleError.malformed("APPENDS to a \(try top().typeName)", offset: opStart) }
                l.items.append(contentsOf: items)
            case .setItem:
                let v = try pop(), k = try pop()
                guard case .dict(let d) = try top() else { throw PickleError.malformed("SETITEM on a \(try top().typeName)", offset: opStart) }
                try setItems(d, [k, v])
            case .setItems:
                let items = try popToMark()
                guard case .dict(let d) = try top() else { throw PickleError.malformed("SETITEMS on a \(try top().typeName)", offset: opStart) }
                try setItems(d, items)
            case .addItems:
                let items = try popToMark()
                guard case .set(let s) = try top(), !s.isFrozen else { throw PickleError.malformed("ADDITEMS on a \(try top().typeName)", offset: opStart) }
                s.items.append(contentsOf: items)

            // Stack manipulation
            case .mark:
                guard marks.count < limits.maxMarkDepth else { throw PickleError.limit("more than \(limits.maxMarkDepth) nested MARKs", offset: opStart) }
                marks.append(stack.count)
            case .pop:
                if let m = marks.last, m == stack.count { marks.removeLast() } else { _ = try pop() }
            case .popMark:
                _ = try popToMark()
            case .dup:
                try push(try top())

            // Memo
            case .put:
                let text = String(decoding: try line(), as: UTF8.self)
                guard let i = Int(text), i >= 0 else { throw PickleError.malformed("PUT argument \(TerminalText.quoted(text))", offset: opStart) }
                try memoPut(i, try top())
            case .binPut: try memoPut(Int(try byte()), try top())
            case .longBinPut: try memoPut(Int(try uint(4)), try top())
            case .memoize: try memoPut(memo.count, try top())
            case .get:
                let text = String(decoding: try line(), as: UTF8.self)
                guard let i = Int(text) else { throw PickleError.malformed("GET argument \(TerminalText.quoted(text))", offset: opStart) }
                try push(try memoGet(i))
            case .binGet: try push(try memoGet(Int(try byte())))
            case .longBinGet: try push(try memoGet(Int(try uint(4))))

            // Globals and calls
            case .global:
                let module = String(decoding: try line(), as: UTF8.self)
                let name = String(decoding: try line(), as: UTF8.self)
                try push(.global(try resolve(module, name)))
            case .stackGlobal:
                let n = try pop(), m = try pop()
                guard case .string(let name) = n, case .string(let module) = m else {
                    throw PickleError.malformed("STACK_GLOBAL needs two strings", offset: opStart)
                }
                try push(.global(try resolve(module, name)))
            case .reduce:
                let args = try pop()
                let callable = try pop()
                guard case .tuple(let t) = args else { throw PickleError.malformed("REDUCE arguments are a \(args.typeName), not a tuple", offset: opStart) }
                try push(try call(callable, t.items, newObject: false))
            case .newObj:
                let args = try pop()
                let cls = try pop()
                guard case .tuple(let t) = args else { throw PickleError.malformed("NEWOBJ arguments are a \(args.typeName), not a tuple", offset: opStart) }
                try push(try call(cls, t.items, newObject: true))
            case .newObjEx:
                let kwargs = try pop(), args = try pop(), cls = try pop()
                guard case .tuple(let t) = args, case .dict(let kw) = kwargs, kw.items.isEmpty else {
                    throw PickleError.forbiddenCall("NEWOBJ_EX with keyword arguments", offset: opStart)
                }
                try push(try call(cls, t.items, newObject: true))
            case .inst:
                let module = String(decoding: try line(), as: UTF8.self)
                let name = String(decoding: try line(), as: UTF8.self)
                let g = try resolve(module, name)
                let args = try popToMark()
                try push(try call(.global(g), args, newObject: true))
            case .obj:
                var items = try popToMark()
                guard !items.isEmpty else { throw PickleError.malformed("OBJ without a class", offset: opStart) }
                let cls = items.removeFirst()
                try push(try call(cls, items, newObject: true))
            case .build:
                let state = try pop()
                try build(try top(), state)
            case .binPersID:
                let pid = try pop()
                try push(try persistentLoad(pid))
            case .persID:
                throw PickleError.forbiddenCall("text persistent id (PERSID); torch writes BINPERSID", offset: opStart)
            case .ext1, .ext2, .ext4:
                throw PickleError.forbiddenCall("extension-registry global (EXT\(op == .ext1 ? 1 : op == .ext2 ? 2 : 4))", offset: opStart)
            case .nextBuffer, .readOnlyBuffer:
                throw PickleError.forbiddenCall("out-of-band buffer", offset: opStart)
            }
        }
    }

    // MARK: helpers

    private func integer(_ b: UnsafeRawBufferPointer) -> PickleValue {
        if b.isEmpty { return .int(0) }
        if b.count <= 8 {
            var v: UInt64 = 0
            for k in (0..<b.count).reversed() { v = v << 8 | UInt64(b[k]) }
            // Sign-extend from the top byte.
            if b.count < 8, b[b.count - 1] & 0x80 != 0 { v |= ~0 << UInt64(8 * b.count) }
            return .int(Int(Int64(bitPattern: v)))
        }
        return .bigInt(Array(b))
    }

    /// A LONG opcode's decimal text as an `.int`, or as `.bigInt` (little-endian two's complement,
    /// as LONG1 would store it) when it does not fit 64 bits. At most 4,096 digits, like LONG4's
    /// 4,096-byte cap keeps the conversion cheap.
    private func decimalInteger(_ text: String) throws -> PickleValue {
        if let v = Int(text) { return .int(v) }
        var digits = Substring(text)
        let negative = digits.first == "-"
        if negative || digits.first == "+" { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.utf8.count <= 4096, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw PickleError.malformed("LONG argument is not a decimal integer of at most 4096 digits", offset: opStart)
        }
        var magnitude: [UInt8] = [0]   // little-endian
        for d in digits.utf8 {
            var carry = Int(d - 0x30)
            for k in magnitude.indices {
                let v = Int(magnitude[k]) * 10 + carry
                magnitude[k] = UInt8(v & 0xFF)
                carry = v >> 8
            }
            while carry > 0 { magnitude.append(UInt8(carry & 0xFF)); carry >>= 8 }
        }
        // Two's complement, shortest form with the sign in the top bit (Python's LONG1 encoding).
        if magnitude.last! & 0x80 != 0 { magnitude.append(0) }
        if negative {
            var carry = 1
            for k in magnitude.indices {
                let v = Int(~magnitude[k]) + carry
                magnitude[k] = UInt8(truncatingIfNeeded: v)
                carry = v >> 8
            }
            while magnitude.count > 1, magnitude[magnitude.count - 1] == 0xFF, magnitude[magnitude.count - 2] & 0x80 != 0 { magnitude.removeLast() }
        }
        return .bigInt(magnitude)
    }

    private func python2String(_ b: UnsafeRawBufferPointer) -> String {
        if let s = String(validating: b, as: UTF8.self) { return s }
        return String(b.map { Character(Unicode.Scalar($0)) })
    }

    private func quotedString(_ l: [UInt8]) throws -> String {
        guard l.count >= 2, let q = l.first, q == l.last, q == UInt8(ascii: "'") || q == UInt8(ascii: "\"") else {
            throw PickleError.malformed("STRING argument is not quoted", offset: opStart)
        }
        var out = [UInt8]()
        var i = 1
        let end = l.count - 1
        while i < end {
            let c = l[i]
            if c == UInt8(ascii: "\\"), i + 1 < end {
                let e = l[i + 1]
                i += 2
                switch e {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): out.append(e)
                case UInt8(ascii: "x"):
                    guard i + 2 <= end, let v = UInt8(String(decoding: l[i..<(i + 2)], as: UTF8.self), radix: 16) else {
                        throw PickleError.malformed("bad \\x escape in STRING", offset: opStart)
                    }
                    out.append(v)
                    i += 2
                default: out.append(UInt8(ascii: "\\")); out.append(e)
                }
            } else {
                out.append(c)
                i += 1
            }
        }
        return out.withUnsafeBytes { python2String($0) }
    }

    private func rawUnicodeEscape(_ l: [UInt8]) throws -> String {
        var s = String.UnicodeScalarView()
        var i = 0
        while i < l.count {
            if l[i] == UInt8(ascii: "\\"), i + 1 < l.count, l[i + 1] == UInt8(ascii: "u") || l[i + 1] == UInt8(ascii: "U") {
                let width = l[i + 1] == UInt8(ascii: "u") ? 4 : 8
                guard i + 2 + width <= l.count,
                      let v = UInt32(String(decoding: l[(i + 2)..<(i + 2 + width)], as: UTF8.self), radix: 16),
                      let u = Unicode.Scalar(v) else {
                    throw PickleError.malformed("bad escape in UNICODE", offset: opStart)
                }
                s.append(u)
                i += 2 + width
            } else {
                s.append(Unicode.Scalar(l[i]))
                i += 1
            }
        }
        return String(s)
    }

    private func resolve(_ module: String, _ name: String) throws -> PickleGlobal {
        guard let g = PickleAllowlist.resolve(module: module, name: name) else {
            throw PickleError.forbiddenGlobal(module: module, name: name, offset: opStart)
        }
        return g
    }

    private func setItems(_ d: PickleDict, _ items: [PickleValue]) throws {
        guard items.count % 2 == 0 else { throw PickleError.malformed("odd number of items for a dict", offset: opStart) }
        var k = 0
        while k < items.count {
            d.items.append((key: items[k], value: items[k + 1]))
            k += 2
        }
    }

    private func int(_ v: PickleValue, _ what: String) throws -> Int {
        if case .bigInt(let b) = v {
            throw PickleError.malformed("\(what) \(PythonRepr.bigInteger(b)) does not fit in 64 bits", offset: opStart)
        }
        guard case .int(let i) = v else { throw PickleError.malformed("\(what) is a \(v.typeName), expected int", offset: opStart) }
        return i
    }

    private func ints(_ v: PickleValue, _ what: String) throws -> [Int] {
        guard case .tuple(let t) = v else { throw PickleError.malformed("\(what) is a \(v.typeName), expected a tuple", offset: opStart) }
        return try t.items.map { try int($0, what) }
    }

    private func bool(_ v: PickleValue, _ what: String) throws -> Bool {
        switch v {
        case .bool(let b): return b
        case .int(let i): return i != 0
        default: throw PickleError.malformed("\(what) is a \(v.typeName), expected bool", offset: opStart)
        }
    }

    private func expectArgs(_ g: PickleGlobal, _ args: [PickleValue], _ counts: ClosedRange<Int>) throws {
        guard counts.contains(args.count) else {
            throw PickleError.malformed("\(g.pythonName) called with \(args.count) arguments (expected \(counts.lowerBound == counts.upperBound ? "\(counts.lowerBound)" : "\(counts.lowerBound)-\(counts.upperBound)"))", offset: opStart)
        }
    }

    /// Counts `items` copied items and `bytes` copied bytes against `maxCopiedBytes`.
    private mutating func copying(items: Int = 0, bytes: Int = 0) throws {
        copiedBytes += items * 32 + bytes
        guard copiedBytes <= limits.maxCopiedBytes else {
            throw PickleError.limit("calls copy more than \(limits.maxCopiedBytes) bytes of values (memo references multiplied by calls)", offset: opStart)
        }
    }

    /// Interprets a call of an allowlisted callable; refuses anything else.
    private mutating func call(_ callable: PickleValue, _ args: [PickleValue], newObject: Bool) throws -> PickleValue {
        guard case .global(let g) = callable else {
            throw PickleError.forbiddenCall("calling a \(callable.typeName)", offset: opStart)
        }
        switch g {
        case .rebuildTensorV2:
            try expectArgs(g, args, 6...7)
            guard case .storage(let s) = args[0] else { throw PickleError.malformed("_rebuild_tensor_v2 storage argument is a \(args[0].typeName)", offset: opStart) }
            guard let dtype = s.dtype else { throw PickleError.malformed("_rebuild_tensor_v2 with an untyped storage", offset: opStart) }
            return .tensor(try tensor(s, dtype: dtype, args))
        case .rebuildTensorV3:
            try expectArgs(g, args, 7...8)
            guard case .storage(let s) = args[0] else { throw PickleError.malformed("_rebuild_tensor_v3 storage argument is a \(args[0].typeName)", offset: opStart) }
            guard case .global(.dtype(let dtype)) = args[6] else { throw PickleError.malformed("_rebuild_tensor_v3 dtype argument is a \(args[6].typeName)", offset: opStart) }
            return .tensor(try tensor(s, dtype: dtype, args))
        case .rebuildParameter:
            try expectArgs(g, args, 3...3)
            guard case .tensor = args[0] else { throw PickleError.malformed("_rebuild_parameter of a \(args[0].typeName)", offset: opStart) }
            return args[0]
        case .rebuildParameterWithState:
            try expectArgs(g, args, 4...4)
            guard case .tensor = args[0] else { throw PickleError.malformed("_rebuild_parameter_with_state of a \(args[0].typeName)", offset: opStart) }
            return args[0]
        case .rebuildFromTypeV2:
            try expectArgs(g, args, 4...4)
            guard case .global(let inner) = args[0], [.rebuildTensorV2, .rebuildTensorV3, .rebuildParameter, .rebuildParameterWithState].contains(inner) else {
                throw PickleError.forbiddenCall("_rebuild_from_type_v2 of \(args[0].typeName)", offset: opStart)
            }
            guard case .global(let type) = args[1], type == .tensorType || type == .parameterType else {
                throw PickleError.forbiddenCall("_rebuild_from_type_v2 to type \(args[1].typeName)", offset: opStart)
            }
            guard case .tuple(let t) = args[2] else { throw PickleError.malformed("_rebuild_from_type_v2 arguments are a \(args[2].typeName)", offset: opStart) }
            return try call(args[0], t.items, newObject: false)
        case .orderedDict:
            let d = try node(PickleDict(ordered: true))
            if args.count == 1 {
                let pairs: [PickleValue]
                switch args[0] {
                case .list(let l): pairs = l.items
                case .tuple(let t): pairs = t.items
                default: throw PickleError.malformed("OrderedDict of a \(args[0].typeName)", offset: opStart)
                }
                try copying(items: pairs.count)
                for p in pairs {
                    let kv: [PickleValue]
                    switch p {
                    case .tuple(let t): kv = t.items
                    case .list(let l): kv = l.items
                    default: throw PickleError.malformed("OrderedDict item is a \(p.typeName)", offset: opStart)
                    }
                    guard kv.count == 2 else { throw PickleError.malformed("OrderedDict item of length \(kv.count)", offset: opStart) }
                    d.items.append((key: kv[0], value: kv[1]))
                }
            } else if !args.isEmpty {
                try expectArgs(g, args, 0...1)
            }
            return .dict(d)
        case .torchSize:
            try expectArgs(g, args, 0...1)
            if args.isEmpty { return try tuple([]) }
            guard case .tuple(let t) = args[0], t.items.count <= limits.maxRank else {
                throw PickleError.malformed("torch.Size of a \(args[0].typeName) (expected a tuple of at most \(limits.maxRank) ints)", offset: opStart)
            }
            _ = try ints(args[0], "torch.Size argument")
            return args[0]
        case .torchDevice:
            try expectArgs(g, args, 1...2)
            return .object(try node(PickleObject(kind: .device, arguments: args)))
        case .codecsEncode:
            try expectArgs(g, args, 2...2)
            guard case .string(let s) = args[0], case .string(let enc) = args[1] else {
                throw PickleError.malformed("_codecs.encode needs (str, str)", offset: opStart)
            }
            try copying(bytes: s.utf8.count)
            switch enc.lowercased() {
            case "latin1", "latin-1", "iso-8859-1":
                var out = [UInt8]()
                for u in s.unicodeScalars {
                    guard u.value < 256 else { throw PickleError.malformed("_codecs.encode: character outside latin-1", offset: opStart) }
                    out.append(UInt8(u.value))
                }
                return .bytes(out)
            case "utf-8", "utf8":
                return .bytes(Array(s.utf8))
            default:
                throw PickleError.forbiddenCall("_codecs.encode with encoding \(TerminalText.quoted(enc))", offset: opStart)
            }
        case .set, .frozenset:
            try expectArgs(g, args, 0...1)
            let s = try node(PickleSet(frozen: g == .frozenset))
            if let a = args.first {
                switch a {
                case .list(let l): s.items = l.items
                case .tuple(let t): s.items = t.items
                case .set(let o): s.items = o.items
                default: throw PickleError.malformed("set of a \(a.typeName)", offset: opStart)
                }
                try copying(items: s.items.count)
            }
            return .set(s)
        case .namespace:
            guard args.isEmpty else { throw PickleError.malformed("argparse.Namespace with positional arguments", offset: opStart) }
            return .object(try node(PickleObject(kind: .namespace, arguments: [])))
        case .numpyScalar:
            try expectArgs(g, args, 1...2)
            return .object(try node(PickleObject(kind: .numpyScalar, arguments: args)))
        case .numpyDType:
            try expectArgs(g, args, 1...3)
            return .object(try node(PickleObject(kind: .numpyDType, arguments: args)))
        case .tensorType, .parameterType, .storageType, .dtype:
            throw PickleError.forbiddenCall("\(newObject ? "instantiating" : "calling") \(g.pythonName)", offset: opStart)
        }
    }

    private mutating func tensor(_ s: StorageReference, dtype: DType, _ args: [PickleValue]) throws -> TensorRecord {
        tensorCount += 1
        guard tensorCount <= limits.maxTensors else { throw PickleError.limit("more than \(limits.maxTensors) tensors", offset: opStart) }
        for (a, what) in [(args[2], "tensor size"), (args[3], "tensor stride")] {
            if case .tuple(let t) = a, t.items.count > limits.maxRank {
                throw PickleError.limit("\(what) has \(t.items.count) dimensions (at most \(limits.maxRank))", offset: opStart)
            }
        }
        let offset = try int(args[1], "storage offset")
        let shape = try ints(args[2], "tensor size")
        let strides = try ints(args[3], "tensor stride")
        let rg = try bool(args[4], "requires_grad")
        guard shape.count == strides.count else {
            throw PickleError.malformed("tensor has \(shape.count) sizes but \(strides.count) strides", offset: opStart)
        }
        guard offset >= 0, shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }) else {
            throw PickleError.malformed("negative storage offset, size or stride", offset: opStart)
        }
        if case .dict(let d) = args[5], !d.items.isEmpty {
            throw PickleError.forbiddenCall("tensor with backward hooks", offset: opStart)
        }
        return TensorRecord(storage: s, dtype: dtype, storageOffset: offset, shape: shape, strides: strides, requiresGrad: rg)
    }

    private mutating func build(_ target: PickleValue, _ state: PickleValue) throws {
        switch target {
        case .dict(let d):
            d.attributes = state
        case .object(let o):
            switch (o.kind, state) {
            case (.namespace, .dict(let sd)):
                try copying(items: sd.items.count)
                for (k, v) in sd.items {
                    guard case .string(let name) = k else { throw PickleError.malformed("Namespace field name is a \(k.typeName)", offset: opStart) }
                    o.fields.append((name: name, value: v))
                }
            case (.numpyDType, _), (.numpyScalar, _):
                o.state = state
            default:
                throw PickleError.forbiddenCall("BUILD of \(o.typeName) with a \(state.typeName)", offset: opStart)
            }
        case .tensor:
            // Tensor and Parameter state (`_is_param` flags and the like) carries no data we use.
            break
        default:
            throw PickleError.forbiddenCall("BUILD on a \(target.typeName)", offset: opStart)
        }
    }

    private func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        guard case .tuple(let t) = pid, let first = t.items.first else {
            throw PickleError.malformed("persistent id is a \(pid.typeName), expected a tuple", offset: opStart)
        }
        guard case .string("storage") = first else {
            throw PickleError.forbiddenCall("persistent id of kind \(first.typeName == "str" ? "\(TerminalText.quoted(stringValue(first)))" : first.typeName) (only 'storage' is allowed)", offset: opStart)
        }
        let items = t.items
        guard items.count == storageIDs.fields else {
            let layout = storageIDs == .archive
                ? "5 in a torch.save zip archive: ('storage', type, key, location, size)"
                : "6 in a legacy torch.save stream: ('storage', type, root key, location, size, view)"
            throw PickleError.malformed("storage persistent id has \(items.count) fields (torch expects \(layout))", offset: opStart)
        }
        guard case .global(.storageType(let dtype)) = items[1] else {
            throw PickleError.malformed("storage type is a \(items[1].typeName)", offset: opStart)
        }
        guard case .string(let key) = items[2], Self.isStorageKey(key) else {
            throw PickleError.malformed("storage key must be a short alphanumeric string", offset: opStart)
        }
        guard case .string(let location) = items[3] else { throw PickleError.malformed("storage location is a \(items[3].typeName)", offset: opStart) }
        let count = try int(items[4], "storage size")
        guard count >= 0 else { throw PickleError.malformed("negative storage size", offset: opStart) }
        var ref = StorageReference(key: key, dtype: dtype, count: count, location: location, legacyView: nil)
        if items.count == 6 {
            switch items[5] {
            case .none: break
            case .tuple(let v):
                guard v.items.count == 3 else { throw PickleError.malformed("legacy storage view of length \(v.items.count)", offset: opStart) }
                guard case .string(let viewKey) = v.items[0], Self.isStorageKey(viewKey) else {
                    throw PickleError.malformed("legacy storage view key must be a short alphanumeric string", offset: opStart)
                }
                let off = try int(v.items[1], "view offset"), n = try int(v.items[2], "view size")
                guard off >= 0, n >= 0 else { throw PickleError.malformed("negative legacy view", offset: opStart) }
                ref.legacyView = LegacyStorageView(key: viewKey, offset: off, count: n)
            default: throw PickleError.malformed("legacy view metadata is a \(items[5].typeName)", offset: opStart)
            }
        }
        return .storage(ref)
    }

    /// Storage keys are what torch writes: decimal record numbers, or `_cdata` addresses in the
    /// legacy stream. Anything else (path separators, control characters) is refused.
    private static func isStorageKey(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.count <= 64
            && key.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F }
    }

    private func stringValue(_ v: PickleValue) -> String {
        if case .string(let s) = v { return s }
        return v.typeName
    }
}
