// safetensors validation: the reference implementation's invalid and valid cases, plus the
// cases it lets through that DiTKit refuses.
import Testing
import DiTKitCore
import DiTKitFormats
#if canImport(Glibc)
import Glibc
#endif

/// Writes `bytes` to a temporary file and opens it as safetensors.
func openSafetensors(_ bytes: [UInt8]) throws -> SafetensorsFile {
    let path = "/tmp/ditkit-st-test-\(getpid())-\(Int.random(in: 0..<1_000_000_000)).safetensors"
    try FileSystem.writeFile(path, bytes)
    defer { unlink(path) }
    return try SafetensorsFile(file: try MappedFile(path: path))
}

/// A safetensors file from a header string and a data buffer.
func safetensorsBytes(_ header: String, data: [UInt8] = [], lengthOverride: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    let n = lengthOverride ?? UInt64(h.count)
    return (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) } + h + data
}

@Suite struct SafetensorsTests {
    func refusal(_ bytes: [UInt8]) -> String {
        do {
            let f = try openSafetensors(bytes)
            return "accepted \(f.tensors.count) tensors"
        } catch { return String(describing: error) }
    }

    @Test func referenceInvalidCases() {
        // Empty file; an N with 0xff high bytes; a header with no body; non-UTF-8; a lone '{'.
        #expect(refusal([]).contains("too small"))
        #expect(refusal([0, 0, 0, 0, 0, 0, 0, 0xFF] + Array("{}".utf8)).contains("exceeds the limit"))
        #expect(refusal(safetensorsBytes("", lengthOverride: 64)).contains("runs past the end"))
        #expect(refusal(safetensorsBytes("\u{00}") .dropLast(0).map { $0 } + []).contains("invalid"))
        #expect(refusal([1, 0, 0, 0, 0, 0, 0, 0, 0xFF]).contains("not valid UTF-8"))
        #expect(refusal(safetensorsBytes("{")).contains("invalid safetensors header JSON"))
        // Offsets [0,4] for I32 [2,2] (needs 16 bytes).
        #expect(refusal(safetensorsBytes(#"{"x":{"dtype":"I32","shape":[2,2],"data_offsets":[0,4]}}"#, data: [UInt8](repeating: 0, count: 4)))
            .contains("span 4 bytes but dtype and shape need 16"))
        // Shapes that overflow.
        #expect(refusal(safetensorsBytes(#"{"x":{"dtype":"F32","shape":[2,18446744073709551614],"data_offsets":[0,16]}}"#)).contains("not a non-negative integer"))
        #expect(refusal(safetensorsBytes(#"{"x":{"dtype":"F32","shape":[2,9223372036854775807],"data_offsets":[0,16]}}"#)).contains("not a non-negative integer"))
        #expect(refusal(safetensorsBytes(#"{"x":{"dtype":"F32","shape":[65536,65536,65536,65536],"data_offsets":[0,16]}}"#)).contains("overflows"))
        // Ten tensors all at [0,16] (the JSON attack).
        let ten = (0..<10).map { #""t\#($0)":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}"# }.joined(separator: ",")
        #expect(refusal(safetensorsBytes("{" + ten + "}", data: [UInt8](repeating: 0, count: 16))).contains("must begin at 16"))
        // Trailing bytes; bytes missing.
        let ok = #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        #expect(refusal(safetensorsBytes(ok, data: [UInt8](repeating: 0, count: 8) + Array("extra_bogus_data_for_polyglot_file".utf8))).contains("tensor data ends at byte"))
        #expect(refusal(safetensorsBytes(ok, data: [UInt8](repeating: 0, count: 6))).contains("tensor data ends at byte"))
        // A hole between tensors.
        #expect(refusal(safetensorsBytes(#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}"#,
                                         data: [UInt8](repeating: 0, count: 6))).contains("must begin at 2"))
    }

    @Test func casesTheReferenceLetsThroughAreRefused() {
        #expect(refusal(safetensorsBytes(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                                         data: [UInt8](repeating: 0, count: 8))).contains("duplicate member name 'x'"))
        #expect(refusal(safetensorsBytes(#"{"x":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}}"#, data: [0])).contains("unknown dtype 'F7'"))
        #expect(refusal(safetensorsBytes(#"{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])).contains("not a non-negative integer"))
        #expect(refusal(safetensorsBytes(#"{"x":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])).contains("not a non-negative integer"))
        #expect(refusal(safetensorsBytes(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}"#, data: [0, 0, 0, 0])).contains("unknown field 'extra'"))
        #expect(refusal(safetensorsBytes(#"{"__metadata__":{"a":1}}"#)).contains("not a string"))
        #expect(refusal(safetensorsBytes(#"{"x":{"dtype":"F32","shape":[1]}}"#)).contains("missing data_offsets"))
    }

    @Test func referenceValidCases() throws {
        // A 0-rank tensor with 4 bytes; an empty [2,0] tensor at [0,0]; '{}' with whitespace padding.
        let scalar = try openSafetensors(safetensorsBytes(#"{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#, data: [0, 0, 0x80, 0x3F]))
        #expect(scalar.tensors.first?.shape == [])
        #expect(try scalar.bytes(of: 0).withElements(of: Float.self) { Array($0) } == [1.0])
        let empty = try openSafetensors(safetensorsBytes(#"{"e":{"dtype":"F32","shape":[2,0],"data_offsets":[0,0]}}"#))
        #expect(empty.tensors.first?.elementCount == 0)
        let padded = try openSafetensors(safetensorsBytes(" \r\t\n{}\n  "))
        #expect(padded.tensors.isEmpty)
        let meta = try openSafetensors(safetensorsBytes(#"{"__metadata__":{"format":"pt","k":"v"}}"#))
        #expect(meta.metadata.map(\.key) == ["format", "k"])
    }

    @Test func misalignedDataIsCopiedNotReadUnaligned() throws {
        // Header of odd length: the F32 data starts at an odd offset.
        let f = try openSafetensors(safetensorsBytes(#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} "#,
                                                     data: [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40]))
        let raw = try f.bytes(of: 0)
        #expect(!raw.isAligned(to: 4))
        #expect(raw.withElements(of: Float.self) { Array($0) } == [1.0, 2.0])
    }

    @Test func tensorsAreListedInDataOrder() throws {
        let f = try openSafetensors(safetensorsBytes(#"{"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, data: [5, 6]))
        #expect(f.tensors.map(\.name) == ["a", "b"])
        #expect(try f.bytes(of: 1).array == [6])
    }
}

@Suite(.serialized) struct HDF5IsolationTests {
    @Test func snapshotRoundTripsAndRejectsMalformedFrames() throws {
        let frames = try HDF5Snapshot.encode(Fixtures.path("verify/dit_cfg.h5"))
        let s = try HDF5Snapshot.decode(frames)
        #expect(try s.readFloats("/inputs/x").shape == [4, 4, 8, 8])
        #expect(try s.readInt64("/inputs/y").values == [3, 7, 1000, 1000])
        #expect(s.exists("/output"))
        #expect(throws: HDF5Error.self) { try HDF5Snapshot.decode(Array(frames.dropLast(7))) }
        var wrongSize = frames
        wrongSize[5 + 1 + 4 + 9 + 4] = 0xFF   // rank of the first dataset
        #expect(throws: HDF5Error.self) { try HDF5Snapshot.decode(wrongSize) }
        #expect(throws: HDF5Error.reader("cannot open as HDF5: not an HDF5 file")) {
            try HDF5Snapshot.decode(HDF5Snapshot.refusal("cannot open as HDF5: not an HDF5 file"))
        }
    }

    @Test func aCrashingReaderRefusesTheFileInsteadOfCrashingUs() throws {
        HDF5Snapshot.helper = ["/bin/sh", "-c", "kill -SEGV $$", "sh"]
        defer { HDF5Snapshot.helper = nil }
        do {
            _ = try HDF5Snapshot.read(Fixtures.path("verify/dit_cfg.h5"))
            Issue.record("accepted")
        } catch {
            #expect(String(describing: error).contains("libhdf5 crashed (signal 11)"))
        }
        HDF5Snapshot.helper = ["/bin/sh", "-c", "exit 3", "sh"]
        #expect(throws: HDF5Error.self) { try HDF5Snapshot.read(Fixtures.path("verify/dit_cfg.h5")) }
    }
}
