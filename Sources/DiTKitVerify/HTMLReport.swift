// `verify --report FILE.html`: one self-contained page (inline SVG, data-URI PNGs, no scripts,
// no network) with the verdict, a per-layer SQNR chart against the threshold, the layer table,
// the tensor-level quantization errors from the manifest, and sample images side by side.
// The markup is well-formed XML, so it can be checked by an XML parser.
import DiTKitCore
import DiTKitFormats

extension OutputKind {
    /// A report written by `ditkit verify --report`: HTML whose head names DiTKit as its generator.
    public static let htmlReport = OutputKind("a DiTKit HTML report", directory: false) { path in
        guard let file = try? MappedFile(path: path),
              String(decoding: file.bytes.prefix(1024), as: UTF8.self).contains(HTMLReport.generatorTag) else {
            return "a file that is not a DiTKit report"
        }
        return nil
    }
}

public enum HTMLReport {
    /// The tag that marks a report as DiTKit's own.
    static let generatorTag = "<meta name=\"generator\" content=\"DiTKit\"/>"

    static func escape(_ s: String) -> String {
        var o = ""
        for ch in s {
            switch ch {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            default: o.append(ch)
            }
        }
        return o
    }

    static func num(_ v: Double, _ digits: Int = 2) -> String {
        v.isInfinite && v > 0 ? "∞" : NumberFormat.compact(v, digits)
    }

    static func fixed(_ v: Double, _ d: Int) -> String { NumberFormat.fixed(v, d) }

    /// SQNR of a threshold given as relative L2.
    static func sqnr(ofRelL2 r: Double) -> Double { r > 0 ? -20 * log10(r) : .infinity }

    /// The per-layer chart: one bar per layer (SQNR, capped at 140 dB), the threshold as a line.
    static func layerChart(_ r: VerificationResult) -> String {
        let rowH = 14, left = 230, width = 460, cap = 140.0
        let height = r.layers.count * rowH + 40
        let first = r.firstFailingLayer
        let th = sqnr(ofRelL2: r.profile.maxRelL2)
        func x(_ db: Double) -> Int { left + Int(min(max(db.isFinite ? db : cap, 0), cap) / cap * Double(width)) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(left + width + 150)\" height=\"\(height)\" role=\"img\" aria-label=\"per-layer SQNR\">\n"
        for tick in stride(from: 0, through: Int(cap), by: 20) {
            s += "<line x1=\"\(x(Double(tick)))\" y1=\"10\" x2=\"\(x(Double(tick)))\" y2=\"\(height - 20)\" stroke=\"#e4e4e4\"/>"
            s += "<text x=\"\(x(Double(tick)))\" y=\"\(height - 6)\" font-size=\"10\" text-anchor=\"middle\">\(tick)</text>\n"
        }
        for (k, l) in r.layers.enumerated() {
            let y = 12 + k * rowH
            let color = l.passed ? "#3b7dd8" : "#d83b3b"
            s += "<text x=\"\(left - 6)\" y=\"\(y + 10)\" font-size=\"10\" text-anchor=\"end\">\(escape(l.name))</text>"
            s += "<rect class=\"bar\" x=\"\(left)\" y=\"\(y + 2)\" width=\"\(x(l.sqnrDB) - left)\" height=\"\(rowH - 4)\" fill=\"\(color)\"><title>\(escape(l.name)): \(num(l.sqnrDB, 1)) dB</title></rect>"
            if l.name == first {
                s += "<text x=\"\(x(l.sqnrDB) + 4)\" y=\"\(y + 10)\" font-size=\"10\" fill=\"#d83b3b\" font-weight=\"bold\">◀ first failing layer</text>"
            }
            s += "\n"
        }
        s += "<line x1=\"\(x(th))\" y1=\"6\" x2=\"\(x(th))\" y2=\"\(height - 20)\" stroke=\"#222\" stroke-dasharray=\"4 3\"/>"
        s += "<text x=\"\(x(th) + 3)\" y=\"9\" font-size=\"10\">threshold \(num(th, 1)) dB</text>\n</svg>"
        return s
    }

    /// Renders the page.
    public static func render(_ r: VerificationResult, title: String, bundle: NativeBundle?, sample: SampleComparison?) throws -> String {
        let overall = r.passed && (sample?.passed ?? true)
        var h = "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\(generatorTag)\n"
        h += "<title>\(escape(title))</title>\n<style>\n"
        h += """
        body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1b1b; max-width: 1000px; margin: 24px auto; padding: 0 16px; }
        h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
        .verdict { font-size: 20px; font-weight: bold; padding: 10px 14px; border-radius: 6px; display: inline-block; }
        .pass { background: #e3f4e6; color: #17612a; } .fail { background: #fbe4e4; color: #8a1c1c; }
        table { border-collapse: collapse; font-size: 12px; width: 100%; } th, td { padding: 3px 6px; border-bottom: 1px solid #eee; text-align: right; }
        th:first-child, td:first-child { text-align: left; } tr.failed td { color: #8a1c1c; font-weight: bold; }
        .meta td { text-align: left; border: none; padding: 1px 8px 1px 0; } .samples td { text-align: center; vertical-align: top; }
        img { image-rendering: pixelated; border: 1px solid #ccc; } figure { margin: 0; } .note { color: #666; font-size: 12px; }
        @media print { body { margin: 0; max-width: none; } h2, table, svg, .samples { page-break-inside: avoid; } }

        """
        h += "</style>\n</head>\n<body>\n"
        h += "<h1>\(escape(title))</h1>\n"
        h += "<p class=\"verdict \(overall ? "pass" : "fail")\" id=\"verdict\">\(overall ? "PASSED" : "FAILED")"
        if let f = r.firstFailingLayer { h += ": first failing layer \(escape(f))" } else if let s = sample, !s.passed { h += ": samples differ" }
        h += "</p>\n<table class=\"meta\">\n"
        h += "<tr><td>model</td><td>\(escape(r.model))</td></tr>\n"
        h += "<tr><td>profile</td><td>\(escape(r.profile.name)): every layer rel L2 ≤ \(num(r.profile.maxRelL2)) (SQNR ≥ \(num(sqnr(ofRelL2: r.profile.maxRelL2), 1)) dB)</td></tr>\n"
        h += "<tr><td>layers</td><td>\(r.layers.count) compared, \(r.layers.filter { !$0.passed }.count) failing</td></tr>\n"
        switch r.baseline {
        case .against(let p): h += "<tr><td>compared against</td><td>\(escape(p))</td></tr>\n"
        case .reference(let p): h += "<tr><td>reference activations</td><td>\(escape(p))</td></tr>\n"
        case nil: break
        }
        if let b = bundle {
            h += "<tr><td>bundle</td><td>\(escape(b.path)) (\(escape(b.manifest.dtypePolicy["dtype"]?.stringValue ?? "")), \(b.manifest.tensors.count) tensors)</td></tr>\n"
            if let src = b.manifest.provenance["source"] {
                h += "<tr><td>converted from</td><td>\(escape(src["file"]?.stringValue ?? "")) sha256 \(escape(src["sha256"]?.stringValue ?? ""))</td></tr>\n"
            }
        }
        h += "</table>\n"

        if let s = sample {
            h += "<h2 id=\"samples\">Samples: source and converted models from identical noise</h2>\n"
            h += "<p>\(escape(s.converted.sampler.description)), seed \(s.options.seed). "
            h += "Final-latent relative L2 error <b id=\"latent-rel-l2\">\(num(s.latentRelL2))</b> (≤ \(num(s.thresholds.maxLatentRelL2)) required); "
            h += "image PSNR ≥ \(num(s.thresholds.minPSNR, 0)) dB required.</p>\n"
            if s.source.images.isEmpty {
                h += "<p class=\"note\">No VAE was given (--vae), so only latents were compared.</p>\n"
            } else {
                h += "<table class=\"samples\">\n<tr><th>sample</th><th>source</th><th>converted</th><th>|difference| × 8</th><th>PSNR</th></tr>\n"
                for k in 0..<min(s.labels.count, s.source.images.count, s.converted.images.count) {
                    let a = s.source.images[k], b = s.converted.images[k]
                    let scale = max(1, 160 / max(a.width, 1))
                    func img(_ i: Image8, _ alt: String) throws -> String {
                        "<img alt=\"\(alt)\" width=\"\(i.width * scale)\" height=\"\(i.height * scale)\" src=\"data:image/png;base64,\(base64(try i.png()))\"/>"
                    }
                    h += "<tr><td>\(escape(s.labels[k]))</td><td>\(try img(a, "source \(k)"))</td><td>\(try img(b, "converted \(k)"))</td>"
                    h += "<td>\(try img(b.differenceMap(a), "difference \(k)"))</td><td class=\"psnr\">\(num(s.psnr[k], 1)) dB</td></tr>\n"
                }
                h += "</table>\n"
            }
        }

        h += "<h2 id=\"chart\">Per-layer SQNR against the threshold</h2>\n"
        h += "<p class=\"note\">SQNR = 20·log10(‖reference‖ / ‖converted − reference‖), in execution order; bars capped at 140 dB (identical layers). Red bars fail.</p>\n"
        h += layerChart(r) + "\n"

        h += "<h2 id=\"layers\">Layers</h2>\n<table id=\"layer-table\">\n<tr><th>layer</th><th>max abs</th><th>mean abs</th><th>rel L2</th><th>cosine</th><th>SQNR dB</th><th>threshold</th><th>result</th></tr>\n"
        for l in r.layers {
            h += "<tr class=\"\(l.passed ? "layer" : "layer failed")\"><td>\(escape(l.name))</td><td>\(num(l.maxAbs))</td><td>\(num(l.meanAbs))</td><td>\(num(l.relL2))</td>"
            h += "<td>\(fixed(l.cosine, 6))</td><td>\(num(l.sqnrDB, 1))</td><td>\(num(l.threshold))</td><td>\(l.passed ? "ok" : "FAIL")</td></tr>\n"
        }
        h += "</table>\n"
        if !r.skipped.isEmpty { h += "<p class=\"note\">Skipped (not produced by DiTKit): \(escape(r.skipped.joined(separator: ", ")))</p>\n" }

        if let b = bundle {
            let lossy = b.manifest.tensors.filter { $0.error != nil }
            h += "<h2 id=\"quantization\">Tensor-level conversion errors (from the manifest)</h2>\n"
            if lossy.isEmpty {
                h += "<p>Every tensor is stored exactly.</p>\n"
            } else {
                h += "<table id=\"quantization-table\">\n<tr><th>tensor</th><th>stored</th><th>SQNR dB</th><th>rel L2</th><th>max abs</th><th>overflow</th><th>flushed to 0</th></tr>\n"
                for t in lossy {
                    guard let e = t.error else { continue }
                    h += "<tr class=\"tensor\"><td>\(escape(t.name))</td><td>\(escape(t.stored.dtype.name))</td><td>\(e.sqnrDB.map { num($0, 1) } ?? "∞")</td>"
                    h += "<td>\(num(e.relL2))</td><td>\(num(e.maxAbs))</td><td>\(e.overflow)</td><td>\(e.flushedToZero)</td></tr>\n"
                }
                h += "</table>\n"
            }
        }
        h += "<p class=\"note\">Written by ditkit \(escape(DiTKitVersion.string)). Self-contained: no scripts, no network.</p>\n</body>\n</html>\n"
        return h
    }
}

#if canImport(Glibc)
import Glibc
#endif
