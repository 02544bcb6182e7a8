import Testing
import DiTKitCore

@Suite struct FloatConversionTests {
    @Test func float16RoundsToNearestEven() {
        // 1 + 2^-11 is exactly between 1 and the next half (1 + 2^-10): ties to even -> 1.
        #expect(HalfPrecision.f16Bits(1 + 0x1p-11) == 0x3C00)
        // 1 + 3*2^-11 is between 1+2^-10 and 1+2^-9: ties to even -> 1 + 2^-9 (mantissa 2).
        #expect(HalfPrecision.f16Bits(1 + 3 * 0x1p-11) == 0x3C02)
        #expect(HalfPrecision.f16Bits(65504) == 0x7BFF)
        #expect(HalfPrecision.f16Bits(65520) == 0x7C00)          // rounds to infinity
        #expect(HalfPrecision.f16Bits(0x1p-24) == 0x0001)        // smallest subnormal
        #expect(HalfPrecision.f16Bits(0x1p-26) == 0x0000)        // flushes to zero
        #expect(HalfPrecision.float(f16: 0x3555) == 0.333251953125)
    }

    @Test func bfloat16MatchesTorch() {
        // torch.tensor([1/3, 1+2^-8, 1+3*2^-8, -2.5e38, nan]).bfloat16().view(torch.int16)
        #expect(HalfPrecision.bf16Bits(1.0 / 3.0) == 0x3EAB)
        #expect(HalfPrecision.bf16Bits(1 + 0x1p-8) == 0x3F80)    // tie -> even
        #expect(HalfPrecision.bf16Bits(1 + 3 * 0x1p-8) == 0x3F82) // tie -> even (up)
        #expect(HalfPrecision.bf16Bits(.nan) == 0x7FC0)
        #expect(HalfPrecision.float(bf16: 0x3F80) == 1)
    }

    @Test func byteSwap() {
        var v: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        v.withUnsafeMutableBytes { ByteSwap.swap($0, unit: 4) }
        #expect(v == [4, 3, 2, 1, 8, 7, 6, 5])
    }

    @Test func checkedArithmetic() throws {
        #expect(throws: ArithmeticOverflow.self) { try Checked.product([1 << 40, 1 << 40]) }
        #expect(throws: ArithmeticOverflow.self) { try Checked.product([-1]) }
        #expect(try Checked.product([]) == 1)
        #expect(try Checked.alignUp(17, 16) == 32)
    }
}

/// torch's widening of every float8 code (tools/make_float8_table.py).
@Suite struct Float8WideningTests {
    static func table(_ type: String) throws -> [UInt32] {
        var p = #filePath
        for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
        let json = try JSONReader.parse(try FileSystem.readFile(p + "/Tests/Fixtures/float8/float8_to_float32.json"))
        let hex = try #require(json[type]?.arrayValue)
        return try hex.map { try #require(UInt32($0.stringValue ?? "", radix: 16)) }
    }

    @Test(arguments: [DType.f8e4m3, .f8e5m2])
    func everyCodeWidensAsTorchDoes(_ dtype: DType) throws {
        let expected = try Self.table(dtype.name)
        #expect(expected.count == 256)
        #expect(dtype.isConvertibleFloat && dtype.itemSize == 1)
        let codes = (0...255).map { UInt8($0) }
        var out = [Float](repeating: 0, count: 256)
        codes.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { ElementConversion.toFloat32(src.baseAddress!, dtype: dtype, count: 256, into: $0.baseAddress!) }
        }
        // Bit for bit: signed zeros, subnormals, the largest finite values, infinities and NaN payloads.
        for c in 0..<256 { #expect(out[c].bitPattern == expected[c], "code 0x\(String(c, radix: 16)): \(out[c])") }
    }

    @Test func landmarks() {
        #expect(Float8.e4m3fn(0x7E) == 448 && Float8.e4m3fn(0x01) == 0x1p-9 && Float8.e4m3fn(0x7F).isNaN && Float8.e4m3fn(0x38) == 1)
        #expect(Float8.e5m2(0x7B) == 57344 && Float8.e5m2(0x7C) == .infinity && Float8.e5m2(0x01) == 0x1p-16 && Float8.e5m2(0x3C) == 1)
    }
}
