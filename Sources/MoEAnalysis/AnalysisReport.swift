import Foundation
import MoEIO

/// `moe analyze`'s result: the static and dynamic analyses, a summary written from their numbers, and the
/// self-contained HTML report (inline SVG, no scripts, no network).
public struct AnalysisReport: Codable, Sendable {
    public var model: String
    public var family: String
    public var summary: [String] = []
    public var staticAnalysis: StaticAnalysis
    public var dynamicAnalysis: DynamicAnalysis?

    enum CodingKeys: String, CodingKey {
        case model, family, summary
        case staticAnalysis = "static", dynamicAnalysis = "dynamic"
    }

    public init(model: String, family: String, staticAnalysis: StaticAnalysis, dynamicAnalysis: DynamicAnalysis?) {
        self.model = model
        self.family = family
        self.staticAnalysis = staticAnalysis
        self.dynamicAnalysis = dynamicAnalysis
        summary = Self.summarize(staticAnalysis, dynamicAnalysis)
    }

    static func pct(_ x: Double) -> String { String(format: "%.0f %%", 100 * x) }

    /// Sentences stating what the numbers show, in the terms of the paper's three observations.
    static func summarize(_ s: StaticAnalysis, _ d: DynamicAnalysis?) -> [String] {
        var out: [String] = []
        if let d {
            let e = d.routing.first?.load.count ?? 0
            if !d.rankCounts.isEmpty {
                out.append("The top-scored expert has the largest output norm for \(pct(d.topScoreLargestNorm)) of tokens over the analysed layers (chance: \(pct(1 / Double(Swift.max(e, 1))))).")
            }
            let div = d.outputSimilarity.map { ($0.layer, $0.meanAngular) }
            if div.count >= 2, let first = div.first, let last = div.last {
                let lowest = div.min { $0.1 < $1.1 }!
                var sentence = String(format: "Expert outputs' mean angular similarity goes from %.3f at layer %d to %.3f at layer %d (lowest, i.e. most diverse, %.3f at layer %d)",
                                      first.1, first.0, last.1, last.0, lowest.1, lowest.0)
                let before = div[div.count - 2]
                sentence += last.1 > before.1
                    ? String(format: "; the last layer is less diverse than the one before it (%.3f against %.3f).", last.1, before.1)
                    : String(format: "; the last layer is at least as diverse as the one before it (%.3f against %.3f).", last.1, before.1)
                out.append(sentence)
            }
            if let k1 = d.topK.first(where: { $0.k == 1 })?.loss {
                out.append(String(format: "Cross-entropy on the text %.4f nats/token with the model's own routing; %.4f with top-1 everywhere.", d.loss, k1))
            }
            if let worst = d.removal.max(by: { $0.loss < $1.loss }) {
                out.append(String(format: "Removing expert %d of layer %d costs the most: %+.4f nats/token.", worst.expert, worst.layer, worst.loss - d.loss))
            }
        }
        let neuron = s.neuronSimilarity.filter { $0.matrix == "gate" }.map { ($0.layer, WeightStatistics.offDiagonalMean($0.cosine)) }
        if let lo = neuron.min(by: { $0.1 < $1.1 }), let hi = neuron.max(by: { $0.1 < $1.1 }) {
            out.append(String(format: "Neuron-level similarity of the gate matrices (mean over pairs of experts) ranges from %.3f (layer %d) to %.3f (layer %d).", lo.1, lo.0, hi.1, hi.0))
        }
        if !s.routerRegression.isEmpty {
            let r2 = s.routerRegression.map(\.r2).reduce(0, +) / Double(s.routerRegression.count)
            out.append(String(format: "Router-row similarity regressed on neuron-level expert similarity: mean R² %.2f over %d layer-matrix pairs.", r2, s.routerRegression.count))
        }
        if let why = s.alignmentSkipped { out.append("Neuron alignment not run: \(why).") }
        return out
    }

    // MARK: HTML

    /// Diverging blue-white-red colour of v in [lo, hi].
    static func color(_ v: Double, _ lo: Double, _ hi: Double) -> String {
        guard hi > lo, v.isFinite else { return "#dddddd" }
        let t = Swift.min(1, Swift.max(0, (v - lo) / (hi - lo)))
        // viridis-like ramp through five anchors
        let anchors: [(Double, Double, Double)] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
        let x = t * Double(anchors.count - 1), i = Swift.min(anchors.count - 2, Int(x)), f = x - Double(i)
        let a = anchors[i], b = anchors[i + 1]
        return String(format: "#%02x%02x%02x", Int(a.0 + (b.0 - a.0) * f), Int(a.1 + (b.1 - a.1) * f), Int(a.2 + (b.2 - a.2) * f))
    }

    /// A heat map of m (rows x columns) with its colour scale [lo, hi] and axis labels.
    static func heatmap(_ m: [[Double]], title: String, lo: Double? = nil, hi: Double? = nil, cell: Double = 0, rowLabel: String = "", colLabel: String = "") -> String {
        let rows = m.count, cols = m.first?.count ?? 0
        guard rows > 0, cols > 0 else { return "" }
        let size = cell > 0 ? cell : Swift.max(2, Swift.min(24, 240 / Double(Swift.max(rows, cols))))
        let flat = m.flatMap { $0 }.filter(\.isFinite)
        let low = lo ?? (flat.min() ?? 0), high = hi ?? (flat.max() ?? 1)
        let w = 40 + Double(cols) * size + 60, h = 30 + Double(rows) * size + 30
        var svg = SVGDocument(width: w, height: h)
        svg.text(title, x: 4, y: 14, size: 11, weight: "bold")
        for r in 0..<rows {
            for c in 0..<cols { svg.rect(x: 36 + Double(c) * size, y: 22 + Double(r) * size, w: size, h: size, fill: color(m[r][c], low, high)) }
        }
        if rows <= 16 { for r in 0..<rows { svg.text("\(r)", x: 32, y: 22 + (Double(r) + 0.75) * size, size: 8, anchor: "end") } }
        if cols <= 16 { for c in 0..<cols { svg.text("\(c)", x: 36 + (Double(c) + 0.5) * size, y: 32 + Double(rows) * size, size: 8, anchor: "middle") } }
        if !rowLabel.isEmpty { svg.text(rowLabel, x: 4, y: 30 + Double(rows) * size / 2, size: 9, rotate: -90) }
        if !colLabel.isEmpty { svg.text(colLabel, x: 36 + Double(cols) * size / 2, y: h - 2, size: 9, anchor: "middle") }
        // The colour bar.
        let bx = 44 + Double(cols) * size
        for i in 0..<20 {
            let v = high - (high - low) * Double(i) / 19
            svg.rect(x: bx, y: 22 + Double(i) * Double(rows) * size / 20, w: 10, h: Double(rows) * size / 20 + 0.5, fill: color(v, low, high))
        }
        svg.text(String(format: "%.3g", high), x: bx + 12, y: 28, size: 8)
        svg.text(String(format: "%.3g", low), x: bx + 12, y: 22 + Double(rows) * size, size: 8)
        return svg.rendered
    }

    static func lineChart(_ series: [(name: String, points: [(Double, Double)])], title: String, xLabel: String, yLabel: String) -> String {
        let all = series.flatMap(\.points)
        guard !all.isEmpty else { return "" }
        let w = 420.0, h = 240.0, m = 44.0
        let xs = all.map(\.0), ys = all.map(\.1)
        var (x0, x1, y0, y1) = (xs.min()!, xs.max()!, ys.min()!, ys.max()!)
        if x1 == x0 { x0 -= 1; x1 += 1 }
        if y1 == y0 { y0 -= 0.5; y1 += 0.5 }
        let pad = (y1 - y0) * 0.08
        y0 -= pad; y1 += pad
        func px(_ x: Double) -> Double { m + (w - 1.5 * m) * (x - x0) / (x1 - x0) }
        func py(_ y: Double) -> Double { h - m + (m * 1.5 - h) * (y - y0) / (y1 - y0) + 0 }
        var svg = SVGDocument(width: w, height: h)
        svg.text(title, x: 4, y: 14, size: 11, weight: "bold")
        svg.line(x1: m, y1: h - m, x2: w - m / 2, y2: h - m)
        svg.line(x1: m, y1: h - m, x2: m, y2: m / 2)
        for i in 0...4 {
            let y = y0 + (y1 - y0) * Double(i) / 4
            svg.text(String(format: "%.3g", y), x: m - 4, y: py(y) + 3, size: 8, anchor: "end")
        }
        // x ticks: whole numbers when every x is one (layers, k), else five even steps.
        let whole = xs.allSatisfy { $0 == $0.rounded() }
        let step = whole ? Swift.max(1, ((x1 - x0) / 8).rounded(.up)) : (x1 - x0) / 4
        for x in stride(from: whole ? x0.rounded(.up) : x0, through: x1 + 1e-9, by: step) {
            svg.text(whole ? String(Int(x)) : String(format: "%.3g", x), x: px(x), y: h - m + 12, size: 8, anchor: "middle")
        }
        svg.text(xLabel, x: (w + m) / 2, y: h - 8, size: 9, anchor: "middle")
        svg.text(yLabel, x: 10, y: h / 2, size: 9, anchor: "middle", rotate: -90)
        for (i, s) in series.enumerated() {
            let c = SVGDocument.color(i)
            svg.polyline(s.points.map { (px($0.0), py($0.1)) }, stroke: c)
            for p in s.points { svg.circle(x: px(p.0), y: py(p.1), r: 2.5, fill: c) }
            if series.count > 1 { svg.text(s.name, x: w - m / 2 - 4, y: m / 2 + 12 * Double(i + 1), size: 9, anchor: "end", fill: c) }
        }
        return svg.rendered
    }

    static func scatter(_ points: [[Double]], groups: [Int], title: String, labels: Bool) -> String {
        guard !points.isEmpty else { return "" }
        let w = 260.0, h = 240.0, m = 24.0
        let xs = points.map { $0[0] }, ys = points.map { $0.count > 1 ? $0[1] : 0 }
        let (x0, x1) = (xs.min()!, Swift.max(xs.max()!, xs.min()! + 1e-12)), (y0, y1) = (ys.min()!, Swift.max(ys.max()!, ys.min()! + 1e-12))
        func px(_ x: Double) -> Double { m + (w - 2 * m) * (x - x0) / (x1 - x0) }
        func py(_ y: Double) -> Double { h - m - (h - 2 * m) * (y - y0) / (y1 - y0) }
        var svg = SVGDocument(width: w, height: h)
        svg.text(title, x: 4, y: 14, size: 11, weight: "bold")
        svg.rect(x: m, y: m, w: w - 2 * m, h: h - 2 * m, fill: "none", stroke: "#999")
        for (i, p) in points.enumerated() {
            svg.circle(x: px(p[0]), y: py(p.count > 1 ? p[1] : 0), r: labels ? 4 : 1.6, fill: SVGDocument.color(groups[i]), opacity: labels ? 1 : 0.6)
            if labels { svg.text("\(groups[i])", x: px(p[0]) + 5, y: py(p.count > 1 ? p[1] : 0) - 4, size: 9) }
        }
        return svg.rendered
    }

    static func bars(_ values: [Double], title: String, flagged: Set<Int> = [], yLabel: String) -> String {
        guard !values.isEmpty else { return "" }
        let w = 40 + Double(values.count) * 18 + 20, h = 170.0, m = 30.0
        let top = Swift.max(values.max() ?? 1, 1e-12)
        var svg = SVGDocument(width: Swift.max(w, 200), height: h)
        svg.text(title, x: 4, y: 14, size: 11, weight: "bold")
        for (i, v) in values.enumerated() {
            let bh = (h - 2 * m) * Swift.max(v, 0) / top
            svg.rect(x: 40 + Double(i) * 18, y: h - m - bh, w: 14, h: bh, fill: flagged.contains(i) ? "#e15759" : "#4e79a7")
            svg.text("\(i)", x: 47 + Double(i) * 18, y: h - m + 11, size: 8, anchor: "middle")
        }
        svg.text(String(format: "%.3g", top), x: 36, y: m + 4, size: 8, anchor: "end")
        svg.text(yLabel, x: 4, y: h - 6, size: 9)
        return svg.rendered
    }

    /// Heat maps of per-layer similarity matrices twice: each layer on its own colour scale, then all on one.
    static func similaritySection(_ items: [(layer: Int, matrix: String, m: [[Double]])], id: String, title: String, note: String) -> String {
        guard !items.isEmpty else { return "" }
        let flat = items.flatMap { $0.m.flatMap { $0 } }.filter(\.isFinite)
        let lo = flat.min() ?? 0, hi = flat.max() ?? 1
        var html = "<section id=\"\(id)\"><h2>\(SVGDocument.esc(title))</h2><p>\(SVGDocument.esc(note))</p>"
        for scale in ["per-layer colour scale", "global colour scale"] {
            html += "<h3>\(scale)</h3><div class=\"grid\">"
            for l in Array(Set(items.map(\.layer))).sorted() {
                let layerItems = items.filter { $0.layer == l }
                let lflat = layerItems.flatMap { $0.m.flatMap { $0 } }.filter(\.isFinite)
                let (a, b) = scale.hasPrefix("per") ? (lflat.min() ?? 0, lflat.max() ?? 1) : (lo, hi)
                for it in layerItems {
                    html += "<figure class=\"plot\">" + heatmap(it.m, title: "layer \(l) \(it.matrix)", lo: a, hi: b) + "</figure>"
                }
            }
            html += "</div>"
        }
        return html + "</section>"
    }

    public func html() -> String {
        var h = """
            <!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>moe analyze: \(SVGDocument.esc(model))</title>
            <style>body{font-family:sans-serif;margin:24px;max-width:1400px;color:#222}h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-top:8px}
            h3{font-size:14px;color:#555}.grid{display:flex;flex-wrap:wrap;gap:6px}figure.plot{margin:0}table{border-collapse:collapse;font-size:12px}
            td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}.tok{padding:1px 0;border-radius:2px;white-space:pre-wrap;font-family:monospace}
            .text{line-height:1.9;max-width:1100px}</style></head><body>
            <h1>MoE analysis of \(SVGDocument.esc(model)) (\(SVGDocument.esc(family)))</h1>
            <p>Analyses of Lo et al. 2024, "A Closer Look into Mixture-of-Experts in Large Language Models", by <code>moe analyze</code>.
            Layers: \(staticAnalysis.layers.map(String.init).joined(separator: ", ")); \(staticAnalysis.experts) experts.</p>
            <section id="summary"><h2>Summary</h2><ul>
            """
        for s in summary { h += "<li>\(SVGDocument.esc(s))</li>" }
        h += "</ul></section>"
        let s = staticAnalysis
        let denseNote = s.denseIndex.map { " Row and column \($0) are the dense model's FFN (--dense)." } ?? ""
        h += Self.similaritySection(s.weightSimilarity.map { ($0.layer, $0.matrix, $0.cosine) }, id: "weight-similarity", title: "Expert weight similarity (matrix level)",
                                    note: "Cosine similarity between the experts' flattened gate, up and down matrices." + denseNote)
        h += Self.similaritySection(s.neuronSimilarity.map { ($0.layer, $0.matrix, $0.cosine) }, id: "neuron-similarity", title: "Neuron-level similarity",
                                    note: "Each matrix averaged over its input axis (gate, up) or output axis (down): one value per neuron, compared by cosine." + denseNote)
        h += Self.similaritySection(s.alignedSimilarity.map { ($0.layer, $0.matrix, $0.cosine) }, id: "aligned-similarity", title: "Similarity after neuron alignment",
                                    note: "For each pair, the second expert's neurons permuted by linear sum assignment to maximize the summed cosine similarity; then the flattened matrices' cosine.")
        h += Self.similaritySection(s.alignedSimilarity.map { ($0.layer, $0.matrix, $0.kendallTau) }, id: "kendall", title: "Kendall's tau of the alignment",
                                    note: "Rank correlation between the best permutation and the identity (1: already aligned).")
        h += Self.similaritySection(s.routerSimilarity.map { ($0.layer, "router", $0.cosine) }, id: "router-similarity", title: "Router similarity",
                                    note: "Cosine similarity between the router's rows (one embedding per expert).")
        if !s.routerRegression.isEmpty {
            h += "<section id=\"router-regression\"><h2>Router similarity against expert similarity</h2><p>Linear regression of the router-row similarities (y) on the neuron-level similarities (x), over the pairs of distinct experts.</p><table><tr><th>layer</th><th>matrix</th><th>slope</th><th>intercept</th><th>R²</th></tr>"
            for r in s.routerRegression {
                h += "<tr><td>\(r.layer)</td><td>\(r.matrix)</td>" + String(format: "<td>%.4f</td><td>%.4f</td><td>%.3f</td></tr>", r.slope, r.intercept, r.r2)
            }
            h += "</table></section>"
        }
        if !s.pcaExperts.isEmpty {
            h += "<section id=\"pca\"><h2>PCA</h2><p>Experts (flattened, z-normalized) and neurons (coloured by expert), projected on their two leading principal axes (share of variance in the titles).</p><div class=\"grid\">"
            for p in s.pcaExperts {
                h += "<figure class=\"plot\">" + Self.scatter(p.points, groups: p.expert, title: "experts, layer \(p.layer) \(p.matrix) " + String(format: "(%.0f%%, %.0f%%)", 100 * p.explained[0], 100 * (p.explained.count > 1 ? p.explained[1] : 0)), labels: true) + "</figure>"
            }
            for p in s.pcaNeurons {
                h += "<figure class=\"plot\">" + Self.scatter(p.points, groups: p.expert, title: "neurons, layer \(p.layer) \(p.matrix) " + String(format: "(%.0f%%, %.0f%%)", 100 * p.explained[0], 100 * (p.explained.count > 1 ? p.explained[1] : 0)), labels: false) + "</figure>"
            }
            h += "</div></section>"
        }
        if let d = dynamicAnalysis { h += dynamicHTML(d) }
        return h + "</body></html>\n"
    }

    func dynamicHTML(_ d: DynamicAnalysis) -> String {
        var h = Self.similaritySection(d.outputSimilarity.map { ($0.layer, "outputs (cosine)", $0.cosine) }, id: "output-similarity", title: "Expert output similarity",
                                       note: "Every expert run on every token of the layer's true input; cosine between two experts' outputs on the same token, averaged over the text.")
        h += "<section id=\"diversity\"><h2>Diversity across layers</h2><figure class=\"plot\">"
            + Self.lineChart([("mean angular similarity", d.outputSimilarity.map { (Double($0.layer), $0.meanAngular) })], title: "Mean angular similarity of expert outputs (lower: more diverse)", xLabel: "layer", yLabel: "angular similarity")
            + "</figure></section>"
        if !d.rankCounts.isEmpty {
            h += "<section id=\"rank\"><h2>Router score rank against output norm rank</h2><p>counts[i][j]: tokens whose i-th highest router score went to the expert with the j-th largest output norm. Top-scored expert with the largest norm: "
                + d.rankCounts.map { String(format: "layer %d %.0f%%", $0.layer, 100 * $0.topScoreLargestNorm) }.joined(separator: ", ") + ".</p><div class=\"grid\">"
            for r in d.rankCounts {
                h += "<figure class=\"plot\">" + Self.heatmap(r.counts.map { $0.map(Double.init) }, title: "layer \(r.layer)", rowLabel: "score rank", colLabel: "norm rank") + "</figure>"
            }
            h += "</div></section>"
        }
        if !d.activations.isEmpty {
            h += "<section id=\"activations\"><h2>Intermediate activations</h2><p>act(gate·x) per expert (rows) and neuron (columns; neurons averaged in groups where the width exceeds 256).</p><div class=\"grid\">"
            for a in d.activations {
                let piece = a.token < d.pieces.count ? d.pieces[a.token] : ""
                h += "<figure class=\"plot\">" + Self.heatmap(a.values, title: "layer \(a.layer), token \(a.token) \(piece.debugDescription)", cell: Swift.max(1, 360 / Double(Swift.max(a.values.first?.count ?? 1, 1))), rowLabel: "expert", colLabel: "neuron") + "</figure>"
            }
            h += "</div></section>"
        }
        if !d.routing.isEmpty {
            h += "<section id=\"routing\"><h2>Chosen experts</h2><div class=\"grid\">"
            for r in d.routing {
                h += "<figure class=\"plot\">" + Self.heatmap(r.weights, title: "layer \(r.layer): routing weights", cell: 0, rowLabel: "token", colLabel: "expert") + "</figure>"
            }
            h += "</div><h3>The text coloured by each token's first choice</h3>"
            for r in d.routing {
                h += "<p><b>layer \(r.layer)</b></p><div class=\"text\">"
                for (i, e) in r.firstChoice.enumerated() where i < d.pieces.count {
                    h += "<span class=\"tok\" title=\"expert \(e)\" style=\"background:\(SVGDocument.color(e))55\">\(SVGDocument.esc(d.pieces[i]))</span>"
                }
                h += "</div>"
            }
            h += "<h3>Load per expert (red: unused or more than twice the mean)</h3><div class=\"grid\">"
            for r in d.routing {
                h += "<figure class=\"plot\">" + Self.bars(r.load.map(Double.init), title: "layer \(r.layer) load", flagged: Set(r.unused + r.overloaded), yLabel: "tokens") + "</figure>"
            }
            h += "</div><h3>REAP saliency (mean over routed tokens of weight × output norm)</h3><div class=\"grid\">"
            for r in d.routing { h += "<figure class=\"plot\">" + Self.bars(r.saliency, title: "layer \(r.layer) saliency", yLabel: "saliency") + "</figure>" }
            h += "</div></section>"
        }
        if !d.removal.isEmpty {
            let layers = Array(Set(d.removal.map(\.layer))).sorted(), e = (d.removal.map(\.expert).max() ?? 0) + 1
            var m = [[Double]](repeating: [Double](repeating: .nan, count: e), count: layers.count)
            for r in d.removal { m[layers.firstIndex(of: r.layer)!][r.expert] = r.loss - d.loss }
            h += "<section id=\"removal\"><h2>Loss when one expert is removed</h2><p>Increase in cross-entropy (nats/token) over the text with the expert out of the router's choice (rows: the analysed layers in order \(layers.map(String.init).joined(separator: ", "))).</p><figure class=\"plot\">"
                + Self.heatmap(m, title: "Δ loss", rowLabel: "layer", colLabel: "expert") + "</figure></section>"
        }
        let ks = d.topK.compactMap { t in t.loss.map { (Double(t.k), $0) } }
        if !ks.isEmpty {
            h += "<section id=\"topk\"><h2>Loss against top-k</h2><figure class=\"plot\">" + Self.lineChart([("loss", ks)], title: "Cross-entropy with top-k in every MoE layer", xLabel: "k", yLabel: "nats/token") + "</figure></section>"
        }
        return h
    }

    /// The JSON contract (README's table): keys sorted, a non-finite number as the string "nan", "inf" or "-inf".
    public func json() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try enc.encode(self)
    }

    /// Writes REPORT_DIR/analysis.json, then REPORT_DIR/report.html, each atomically (temp file, fsync, rename),
    /// after removing the previous run's: a failure part-way leaves no report.html at all.
    public func write(to dir: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // An earlier report goes first: a failure below leaves no report.html that would pass for this run's.
        for name in ["report.html", "analysis.json"] where fm.fileExists(atPath: dir + "/" + name) { try fm.removeItem(atPath: dir + "/" + name) }
        try AtomicFile.write(try json(), to: dir + "/analysis.json")
        try AtomicFile.write(Data(html().utf8), to: dir + "/report.html")
    }
}
