// 2-D convolution (NCHW, OIHW weights) as GEMM over im2col columns, built in row blocks so the
// column buffer stays small whatever the image size.
import Dispatch

/// Zero padding on each side.
public struct Padding: Sendable, Equatable {
    public var top, left, bottom, right: Int
    public init(top: Int, left: Int, bottom: Int, right: Int) {
        self.top = top; self.left = left; self.bottom = bottom; self.right = right
    }
    /// The same padding on every side.
    public static func same(_ p: Int) -> Padding { Padding(top: p, left: p, bottom: p, right: p) }
}

public enum Convolution {
    /// Largest im2col buffer, in floats (16 MiB).
    static let columnBudget = 4 << 20

    /// Output side length.
    public static func outputSize(_ input: Int, kernel: Int, stride: Int, padBefore: Int, padAfter: Int) -> Int {
        (input + padBefore + padAfter - kernel) / stride + 1
    }

    /// `y[n, co, oy, ox] = b[co] + sum w[co, ci, ky, kx] * x[n, ci, oy*s - pt + ky, ox*s - pl + kx]`.
    public static func conv2d(_ x: UnsafePointer<Float>, batch: Int, channels cin: Int, height h: Int, width w: Int,
                              weight: UnsafePointer<Float>, outChannels cout: Int, kernel kh: Int, _ kw: Int,
                              bias: UnsafePointer<Float>?, stride s: Int, padding p: Padding,
                              into y: UnsafeMutablePointer<Float>) {
        let oh = outputSize(h, kernel: kh, stride: s, padBefore: p.top, padAfter: p.bottom)
        let ow = outputSize(w, kernel: kw, stride: s, padBefore: p.left, padAfter: p.right)
        let plane = oh * ow
        let kdim = cin * kh * kw
        for n in 0..<batch {
            let xin = x + n * cin * h * w
            let yout = y + n * cout * plane
            if kh == 1 && kw == 1 && s == 1 && p == .same(0) {
                Gemm.multiply(weight, xin, yout, m: cout, n: plane, k: cin)
            } else {
                let rowsPerChunk = max(1, min(oh, columnBudget / max(1, kdim * ow)))
                let cols = UnsafeMutablePointer<Float>.allocate(capacity: kdim * rowsPerChunk * ow)
                defer { cols.deallocate() }
                var oy0 = 0
                while oy0 < oh {
                    let rows = min(rowsPerChunk, oh - oy0)
                    let width = rows * ow
                    // im2col for output rows oy0 ..< oy0+rows, split over cores by input channel.
                    DispatchQueue.concurrentPerform(iterations: min(cin, 8)) { part in
                        var ci = part
                        while ci < cin {
                            let src = xin + ci * h * w
                            for ky in 0..<kh {
                                for kx in 0..<kw {
                                    let dst = cols + ((ci * kh + ky) * kw + kx) * width
                                    for r in 0..<rows {
                                        let iy = (oy0 + r) * s - p.top + ky
                                        let out = dst + r * ow
                                        if iy < 0 || iy >= h {
                                            out.update(repeating: 0, count: ow)
                                            continue
                                        }
                                        let line = src + iy * w
                                        if s == 1 {
                                            // ix = ox + shift; copy the in-range run, zero the rest.
                                            let shift = kx - p.left
                                            let lo = min(ow, max(0, -shift)), hi = max(lo, min(ow, w - shift))
                                            if lo > 0 { out.update(repeating: 0, count: lo) }
                                            if hi > lo { (out + lo).update(from: line + lo + shift, count: hi - lo) }
                                            if hi < ow { (out + hi).update(repeating: 0, count: ow - hi) }
                                        } else {
                                            for ox in 0..<ow {
                                                let ix = ox &* s &- p.left &+ kx
                                                out[ox] = ix >= 0 && ix < w ? line[ix] : 0
                                            }
                                        }
                                    }
                                }
                            }
                            ci += 8
                        }
                    }
                    Gemm.multiply(weight, cols, yout + oy0 * ow, m: cout, n: width, k: kdim, ldc: plane)
                    oy0 += rows
                }
            }
            if let bias {
                for co in 0..<cout {
                    let b = bias[co]
                    let o = yout + co &* plane
                    for i in 0..<plane { o[i] += b }
                }
            }
        }
    }
}
