// PNG images through libpng (png_image simplified API), and the [-1, 1] -> 8-bit mapping and
// grid layout torchvision's save_image uses.
import CPNG
import DiTKitCore
#if canImport(Glibc)
import Glibc
#endif

/// An 8-bit image, row-major, interleaved channels (RGB or gray).
public struct Image8: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// `save_image(normalize=True, value_range=(-1, 1))` of image `n` of a `[N, 3, H, W]` batch:
    /// clamp to [-1, 1], map to [0, 1], then `uint8(x * 255 + 0.5)`, in float32.
    public static func fromSignedUnit(_ data: [Float], batchIndex n: Int, channels c: Int, height h: Int, width w: Int) -> Image8 {
        var px = [UInt8](repeating: 0, count: h * w * c)
        let plane = h * w
        for ch in 0..<c {
            let base = (n * c + ch) * plane
            for i in 0..<plane {
                let v = (min(max(data[base + i], -1), 1) - -1) / 2
                px[i * c + ch] = UInt8(min(max(v * 255 + 0.5, 0), 255))
            }
        }
        return Image8(width: w, height: h, channels: c, pixels: px)
    }

    /// `make_grid(nrow, padding=2, pad_value=0)` of same-sized images.
    public static func grid(_ images: [Image8], columns nrow: Int = 4, padding: Int = 2) -> Image8 {
        guard let first = images.first else { return Image8(width: 0, height: 0, channels: 3, pixels: []) }
        let cols = min(nrow, images.count), rows = (images.count + cols - 1) / cols
        let cellH = first.height + padding, cellW = first.width + padding
        let gw = cols * cellW + padding, gh = rows * cellH + padding, c = first.channels
        var px = [UInt8](repeating: 0, count: gw * gh * c)
        for (k, im) in images.enumerated() {
            let oy = (k / cols) * cellH + padding, ox = (k % cols) * cellW + padding
            for y in 0..<im.height {
                let dst = ((oy + y) * gw + ox) * c
                let src = y * im.width * c
                px.replaceSubrange(dst..<(dst + im.width * c), with: im.pixels[src..<(src + im.width * c)])
            }
        }
        return Image8(width: gw, height: gh, channels: c, pixels: px)
    }

    /// Encodes as PNG (8-bit RGB or gray; deterministic: no time chunk). The one text chunk,
    /// `Software: DiTKit`, marks the file as DiTKit's own (`--force` replaces only such files).
    public func png() throws -> [UInt8] {
        var out: UnsafeMutablePointer<UInt8>?
        var len = 0
        let r = pixels.withUnsafeBufferPointer { ditkit_png_encode($0.baseAddress, Int32(width), Int32(height), Int32(channels), &out, &len) }
        guard r == 0, let out else { throw CheckpointError.inconsistent("PNG encoding failed") }
        defer { free(out) }
        var bytes = Array(UnsafeBufferPointer(start: out, count: len))
        // The text chunk goes just before IEND, the last 12 bytes libpng writes.
        guard bytes.count >= 20, bytes.suffix(8).prefix(4).elementsEqual(Array("IEND".utf8)) else {
            throw CheckpointError.inconsistent("PNG encoding failed: no IEND chunk")
        }
        bytes.insert(contentsOf: PNGChunks.chunk("tEXt", Array(PNGChunks.softwareText.utf8)), at: bytes.count - 12)
        return bytes
    }

    /// Decodes a PNG to 8-bit RGB.
    public static func decodePNG(_ data: [UInt8]) throws -> Image8 {
        var px: UnsafeMutablePointer<UInt8>?
        var w: Int32 = 0, h: Int32 = 0
        let r = data.withUnsafeBufferPointer { ditkit_png_decode_rgb($0.baseAddress, $0.count, &px, &w, &h) }
        guard r == 0, let px else { throw CheckpointError.inconsistent("not a PNG DiTKit can decode") }
        defer { free(px) }
        return Image8(width: Int(w), height: Int(h), channels: 3, pixels: Array(UnsafeBufferPointer(start: px, count: Int(w) * Int(h) * 3)))
    }

    /// PSNR in dB of `self` against `reference` (8-bit: 20·log10(255 / RMSE)); infinite when equal.
    public func psnr(against reference: Image8) -> Double {
        var se = 0.0
        for (a, b) in zip(pixels, reference.pixels) { let d = Double(a) - Double(b); se += d * d }
        let mse = se / Double(max(pixels.count, 1))
        return mse == 0 ? .infinity : 20 * log10(255 / mse.squareRoot())
    }

    /// A gray map of |self − other| per pixel (max over channels), scaled by `gain`.
    public func differenceMap(_ other: Image8, gain: Double = 8) -> Image8 {
        var px = [UInt8](repeating: 0, count: width * height)
        for i in 0..<(width * height) {
            var m = 0
            for ch in 0..<channels { m = max(m, abs(Int(pixels[i * channels + ch]) - Int(other.pixels[i * channels + ch]))) }
            px[i] = UInt8(min(255, Double(m) * gain))
        }
        return Image8(width: width, height: height, channels: 1, pixels: px)
    }
}

/// Base64 (RFC 4648) for data URIs.
public func base64(_ bytes: [UInt8]) -> String {
    let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var out = [UInt8]()
    out.reserveCapacity((bytes.count + 2) / 3 * 4)
    var i = 0
    while i < bytes.count {
        let b0 = Int(bytes[i]), b1 = i + 1 < bytes.count ? Int(bytes[i + 1]) : 0, b2 = i + 2 < bytes.count ? Int(bytes[i + 2]) : 0
        out.append(table[b0 >> 2])
        out.append(table[((b0 & 3) << 4) | (b1 >> 4)])
        out.append(i + 1 < bytes.count ? table[((b1 & 15) << 2) | (b2 >> 6)] : UInt8(ascii: "="))
        out.append(i + 2 < bytes.count ? table[b2 & 63] : UInt8(ascii: "="))
        i += 3
    }
    return String(decoding: out, as: UTF8.self)
}

/// The chunk structure of PNG files: length (u32 big-endian), type, data, CRC-32 of type and data.
public enum PNGChunks {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    /// The `tEXt` data of the chunk DiTKit writes into every PNG (keyword, NUL, text).
    static let softwareText = "Software\u{0}DiTKit"

    /// One chunk: length, type, data, CRC.
    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return bigEndian(UInt32(data.count)) + body + bigEndian(crc32(body))
    }

    static func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    /// CRC-32 (ISO 3309, as PNG and zlib use it).
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return c ^ 0xFFFF_FFFF
    }

    /// Whether `bytes` are a PNG that carries DiTKit's `Software` text chunk. Walks the chunks,
    /// checking every length against the bytes that remain.
    public static func isDiTKitPNG(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= 8, bytes.prefix(8).elementsEqual(signature) else { return false }
        let marker = Array(softwareText.utf8)
        var p = 8
        while bytes.count - p >= 12 {
            let n = Int(bytes[p]) << 24 | Int(bytes[p + 1]) << 16 | Int(bytes[p + 2]) << 8 | Int(bytes[p + 3])
            guard n <= bytes.count - p - 12 else { return false }
            let type = String(decoding: bytes[(p + 4)..<(p + 8)], as: UTF8.self)
            if type == "tEXt" && bytes[(p + 8)..<(p + 8 + n)].elementsEqual(marker) { return true }
            if type == "IEND" { return false }
            p += 12 + n
        }
        return false
    }
}
