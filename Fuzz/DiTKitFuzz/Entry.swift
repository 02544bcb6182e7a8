// Two entry points. Built with `-D FUZZING` and `--sanitize fuzzer`: libFuzzer's entry, the harness
// chosen by $DITKIT_FUZZ_TARGET. Otherwise: a runner that feeds files to a harness, which the test
// suite uses to replay every crash reproducer.
#if canImport(Glibc)
import Glibc
#endif

#if FUZZING
nonisolated(unsafe) let selected: Harness = {
    let name = getenv("DITKIT_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let h = Harness(rawValue: name) else {
        fputs("set DITKIT_FUZZ_TARGET to one of: \(Harness.allCases.map(\.rawValue).joined(separator: ", "))\n", stderr)
        exit(64)
    }
    return h
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selected.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#else
@main
struct Replay {
    static func main() {
        let args = CommandLine.arguments
        guard args.count >= 3, let h = Harness(rawValue: args[1]) else {
            print("usage: ditkit-fuzz TARGET FILE...   (targets: \(Harness.allCases.map(\.rawValue).joined(separator: ", ")))")
            exit(64)
        }
        for path in args.dropFirst(2) {
            guard let f = fopen(path, "rb") else { print("cannot open \(path)"); exit(2) }
            var bytes: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = fread(&buf, 1, buf.count, f)
                if n <= 0 { break }
                bytes += buf[0..<n]
            }
            fclose(f)
            bytes.withUnsafeBytes { h.run($0) }
            print("ok \(path)")
        }
    }
}
#endif
