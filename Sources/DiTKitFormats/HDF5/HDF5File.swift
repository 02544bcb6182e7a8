// HDF5 files through libhdf5: reading reference activations and noise, writing latents and exports.
// Datasets are read as float32 or int64 whatever their stored type (HDF5 converts), with their
// shape checked against a cap before anything is allocated.
import CHDF5
import DiTKitCore

/// Why an HDF5 file could not be used.
public enum HDF5Error: Error, CustomStringConvertible, Sendable, Equatable {
    case open(String)
    case missing(String)
    case badDataset(String, String)
    case write(String)
    /// The isolated reader refused the file; its reason, verbatim.
    case reader(String)

    public var description: String {
        switch self {
        case .open(let s): return "cannot open as HDF5: \(s)"
        case .missing(let p): return "no dataset '\(p)'"
        case let .badDataset(p, why): return "dataset '\(p)': \(why)"
        case .write(let s): return "HDF5 write failed: \(s)"
        case .reader(let s): return s
        }
    }
}

/// An open HDF5 file.
public final class HDF5File: @unchecked Sendable {
    public let path: String
    private let id: hid_t
    /// Largest dataset read, in elements (1 G values).
    public static let maxElements = 1 << 30

    private init(path: String, id: hid_t) {
        self.path = path
        self.id = id
    }

    /// Opens an existing file read-only. Throws `HDF5Error.open`.
    public static func open(_ path: String) throws -> HDF5File {
        ditkit_h5_silence()
        guard FileSystem.exists(path) else { throw HDF5Error.open("no such file") }
        // libhdf5 opens without O_NONBLOCK: a FIFO would block it forever.
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw HDF5Error.open("not a regular file (\(NotARegularFile.kind(of: st.st_mode)))")
        }
        guard H5Fis_hdf5(path) > 0 else { throw HDF5Error.open("not an HDF5 file") }
        let f = H5Fopen(path, ditkit_h5f_acc_rdonly(), h5Default)
        guard f >= 0 else { throw HDF5Error.open("libhdf5 refused the file") }
        return HDF5File(path: path, id: f)
    }

    /// Creates (truncates) a file for writing. Throws `HDF5Error.write`.
    public static func create(_ path: String) throws -> HDF5File {
        ditkit_h5_silence()
        let fapl = ditkit_h5p_fapl_v18(), fcpl = ditkit_h5p_fcpl_untimed()
        defer { H5Pclose(fapl); H5Pclose(fcpl) }
        let f = H5Fcreate(path, ditkit_h5f_acc_trunc(), fcpl, fapl)
        guard f >= 0 else { throw HDF5Error.write("cannot create \(path)") }
        return HDF5File(path: path, id: f)
    }

    deinit { H5Fclose(id) }

    /// Whether a link (dataset or group) exists at `path` (every parent must exist too).
    public func exists(_ datasetPath: String) -> Bool {
        var prefix = ""
        for part in datasetPath.split(separator: "/") {
            prefix += "/" + part
            if H5Lexists(id, prefix, h5Default) <= 0 { return false }
        }
        return true
    }

    /// Names of the members of a group, in HDF5's (alphabetical) order.
    public func members(of group: String) -> [String] {
        guard exists(group) || group == "/" else { return [] }
        let g = H5Gopen2(id, group, h5Default)
        guard g >= 0 else { return [] }
        defer { H5Gclose(g) }
        var info = H5G_info_t()
        guard H5Gget_info(g, &info) >= 0 else { return [] }
        var names: [String] = []
        for i in 0..<info.nlinks {
            let len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, h5Default)
            guard len > 0, len < 4096 else { continue }
            var buf = [CChar](repeating: 0, count: Int(len) + 1)
            H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(len) + 1, h5Default)
            names.append(String(cString: buf))
        }
        return names
    }

    /// Paths of every dataset under `group`, recursively, e.g. `blocks.0` inside `/layers`.
    public func datasets(under group: String) -> [String] {
        var out: [String] = []
        for m in members(of: group) {
            let p = group == "/" ? "/" + m : group + "/" + m
            var info = H5O_info_t()
            guard H5Oget_info_by_name2(id, p, &info, UInt32(H5O_INFO_BASIC), h5Default) >= 0 else { continue }
            if info.type == H5O_TYPE_GROUP { out += datasets(under: p) } else if info.type == H5O_TYPE_DATASET { out.append(p) }
        }
        return out
    }

    /// The shape of a dataset.
    public func shape(_ datasetPath: String) throws -> [Int] {
        guard exists(datasetPath) else { throw HDF5Error.missing(datasetPath) }
        let d = H5Dopen2(id, datasetPath, h5Default)
        guard d >= 0 else { throw HDF5Error.badDataset(datasetPath, "cannot open") }
        defer { H5Dclose(d) }
        return try shape(of: d, datasetPath)
    }

    private func shape(of d: hid_t, _ p: String) throws -> [Int] {
        let space = H5Dget_space(d)
        guard space >= 0 else { throw HDF5Error.badDataset(p, "no dataspace") }
        defer { H5Sclose(space) }
        let rank = H5Sget_simple_extent_ndims(space)
        guard rank >= 0, rank <= 8 else { throw HDF5Error.badDataset(p, "rank \(rank) is not supported") }
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        H5Sget_simple_extent_dims(space, &dims, nil)
        return dims.map { Int(clamping: $0) }
    }

    private func read<T>(_ p: String, memoryType: hid_t, zero: T, allowedClasses: [H5T_class_t]) throws -> (shape: [Int], values: [T]) {
        guard exists(p) else { throw HDF5Error.missing(p) }
        let d = H5Dopen2(id, p, h5Default)
        guard d >= 0 else { throw HDF5Error.badDataset(p, "cannot open") }
        defer { H5Dclose(d) }
        let type = H5Dget_type(d)
        defer { H5Tclose(type) }
        let cls = H5Tget_class(type)
        guard allowedClasses.contains(cls) else { throw HDF5Error.badDataset(p, "has the wrong element type") }
        let s = try shape(of: d, p)
        let n = try Checked.product(s, "the size of \(p)")
        guard n <= HDF5File.maxElements else { throw HDF5Error.badDataset(p, "\(n) elements exceed the limit of \(HDF5File.maxElements)") }
        var values = [T](repeating: zero, count: n)
        if n > 0 {
            let status = values.withUnsafeMutableBytes { H5Dread(d, memoryType, h5All, h5All, h5Default, $0.baseAddress) }
            guard status >= 0 else { throw HDF5Error.badDataset(p, "read failed") }
        }
        return (s, values)
    }

    /// Reads a float dataset as float32.
    public func readFloats(_ p: String) throws -> (shape: [Int], values: [Float]) {
        try read(p, memoryType: ditkit_h5t_native_float(), zero: Float(0), allowedClasses: [H5T_FLOAT])
    }

    /// Reads an integer dataset as int64.
    public func readInt64(_ p: String) throws -> (shape: [Int], values: [Int64]) {
        try read(p, memoryType: ditkit_h5t_native_int64(), zero: Int64(0), allowedClasses: [H5T_INTEGER])
    }

    /// A string attribute of the root group (or of an object), or `nil`.
    public func stringAttribute(_ name: String, of object: String = "/") -> String? {
        guard H5Aexists_by_name(id, object, name, h5Default) > 0 else { return nil }
        let a = H5Aopen_by_name(id, object, name, h5Default, h5Default)
        guard a >= 0 else { return nil }
        defer { H5Aclose(a) }
        let type = H5Aget_type(a)
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_STRING else { return nil }
        if H5Tis_variable_str(type) > 0 {
            var p: UnsafeMutablePointer<CChar>? = nil
            let mem = H5Tcopy(ditkit_h5t_c_s1())
            defer { H5Tclose(mem) }
            H5Tset_size(mem, ditkit_h5t_variable())
            H5Tset_cset(mem, H5Tget_cset(type))
            guard H5Aread(a, mem, &p) >= 0, let s = p else { return nil }
            defer { free(s) }
            return String(cString: s)
        }
        let size = H5Tget_size(type)
        guard size > 0, size < 1 << 24 else { return nil }
        var buf = [CChar](repeating: 0, count: size + 1)
        guard H5Aread(a, type, &buf) >= 0 else { return nil }
        return String(cString: buf)
    }

    // MARK: writing

    private func linkCreationWithParents() -> hid_t {
        let lcpl = H5Pcreate(ditkit_h5p_link_create())
        H5Pset_create_intermediate_group(lcpl, 1)
        return lcpl
    }

    private func write(_ p: String, shape: [Int], type: hid_t, _ bytes: UnsafeRawPointer?) throws {
        var dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), &dims, nil)
        guard space >= 0 else { throw HDF5Error.write("dataspace for \(p)") }
        defer { H5Sclose(space) }
        let lcpl = linkCreationWithParents(), dcpl = ditkit_h5p_dcpl_untimed()
        defer { H5Pclose(lcpl); H5Pclose(dcpl) }
        let d = H5Dcreate2(id, p, type, space, lcpl, dcpl, h5Default)
        guard d >= 0 else { throw HDF5Error.write("cannot create dataset \(p)") }
        defer { H5Dclose(d) }
        if shape.reduce(1, *) > 0, H5Dwrite(d, type, h5All, h5All, h5Default, bytes) < 0 {
            throw HDF5Error.write("cannot write dataset \(p)")
        }
    }

    /// Writes a float32 dataset (parents created as needed).
    public func writeFloats(_ p: String, shape: [Int], _ values: [Float]) throws {
        try values.withUnsafeBytes { try write(p, shape: shape, type: ditkit_h5t_native_float(), $0.baseAddress) }
    }

    /// Writes an int64 dataset.
    public func writeInt64(_ p: String, shape: [Int], _ values: [Int64]) throws {
        try values.withUnsafeBytes { try write(p, shape: shape, type: ditkit_h5t_native_int64(), $0.baseAddress) }
    }

    /// Writes a raw dataset of a native type given by `dtype` (F32, F16 as uint16 bits are not
    /// native: callers convert), from little-endian bytes.
    public func writeRaw(_ p: String, shape: [Int], dtype: DType, _ bytes: UnsafeRawBufferPointer) throws {
        let type: hid_t
        switch dtype {
        case .f32: type = ditkit_h5t_native_float()
        case .f64: type = ditkit_h5t_native_double()
        case .i64: type = ditkit_h5t_native_int64()
        case .i32: type = ditkit_h5t_native_int32()
        case .i8: type = ditkit_h5t_native_int8()
        case .u8, .bool: type = ditkit_h5t_native_uint8()
        case .u16: type = ditkit_h5t_native_uint16()
        default: throw HDF5Error.write("dtype \(dtype) has no HDF5 mapping")
        }
        try write(p, shape: shape, type: type, bytes.baseAddress)
    }

    /// Writes IEEE half-precision values (numpy float16) from little-endian bytes.
    public func writeHalf(_ p: String, shape: [Int], _ bytes: UnsafeRawBufferPointer) throws {
        let t = H5Tcopy(ditkit_h5t_native_float())
        defer { H5Tclose(t) }
        // sign bit 15, exponent bits 10-14 (bias 15), mantissa bits 0-9.
        guard H5Tset_fields(t, 15, 10, 5, 0, 10) >= 0, H5Tset_size(t, 2) >= 0, H5Tset_ebias(t, 15) >= 0 else {
            throw HDF5Error.write("cannot build a half-precision type")
        }
        try write(p, shape: shape, type: t, bytes.baseAddress)
    }

    /// Sets a string attribute on an object (the root by default): a variable-length UTF-8
    /// string, which h5py reads as `str` (a fixed-length one reads as `bytes`) and h5dump shows as
    /// text. Throws `HDF5Error.write`; a value holding NUL is refused (C strings end there).
    public func setAttribute(_ name: String, _ value: String, on object: String = "/") throws {
        guard !value.utf8.contains(0) else { throw HDF5Error.write("attribute \(name) holds a NUL byte") }
        let type = H5Tcopy(ditkit_h5t_c_s1())
        defer { H5Tclose(type) }
        H5Tset_size(type, ditkit_h5t_variable())
        H5Tset_cset(type, H5T_CSET_UTF8)
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let a = H5Acreate_by_name(id, object, name, type, space, h5Default, h5Default, h5Default)
        guard a >= 0 else { throw HDF5Error.write("cannot create attribute \(name) on \(object)") }
        defer { H5Aclose(a) }
        let written = value.withCString { c -> herr_t in
            var pointer: UnsafePointer<CChar>? = c
            return withUnsafePointer(to: &pointer) { H5Awrite(a, type, $0) }
        }
        guard written >= 0 else { throw HDF5Error.write("cannot write attribute \(name)") }
    }

    /// Flushes everything to the file.
    public func flush() throws {
        guard H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0 else { throw HDF5Error.write("flush failed") }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// `H5P_DEFAULT` and `H5S_ALL` (both `(hid_t)0`).
private let h5Default: hid_t = 0
private let h5All: hid_t = 0
