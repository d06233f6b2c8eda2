import Foundation

/// The two training plots: the loss curve (training and validation) and the expert load per layer.
public enum TrainingPlots {
    public static func lossCurve(_ log: [TrainLogEntry], title: String) -> SVGDocument {
        let (w, h, m) = (720.0, 420.0, 60.0)
        var svg = SVGDocument(width: w, height: h)
        svg.text(title, x: w / 2, y: 24, size: 15, anchor: "middle", weight: "bold")
        guard let last = log.last else { return svg }
        let losses = log.map(\.loss) + log.compactMap(\.validationLoss)
        let lo = max(0, (losses.min() ?? 0) * 0.9), hi = (losses.max() ?? 1) * 1.02
        func px(_ s: Int) -> Double { m + (w - 1.5 * m) * Double(s) / Double(max(last.step, 1)) }
        func py(_ v: Double) -> Double { h - m - (h - 2 * m) * (v - lo) / max(hi - lo, 1e-9) }
        svg.rect(x: m, y: m, w: w - 1.5 * m, h: h - 2 * m, fill: "none", stroke: "#999")
        for i in 0...4 {
            let v = lo + (hi - lo) * Double(i) / 4
            svg.text(String(format: "%.2f", v), x: m - 6, y: py(v) + 4, size: 10, anchor: "end")
            let s = Int(Double(last.step) * Double(i) / 4)
            svg.text("\(s)", x: px(s), y: h - m + 16, size: 10, anchor: "middle")
        }
        svg.polyline(log.map { (px($0.step), py($0.loss)) }, stroke: SVGDocument.color(0))
        let val = log.filter { $0.validationLoss != nil }
        svg.polyline(val.map { (px($0.step), py($0.validationLoss!)) }, stroke: SVGDocument.color(1), width: 2)
        for e in val { svg.circle(x: px(e.step), y: py(e.validationLoss!), r: 3, fill: SVGDocument.color(1)) }
        svg.text("step", x: m + (w - 1.5 * m) / 2, y: h - 18, size: 12, anchor: "middle")
        svg.text("loss (nats/byte)", x: 16, y: h / 2, size: 12, anchor: "middle", rotate: -90)
        svg.line(x1: w - 200, y1: m + 16, x2: w - 180, y2: m + 16, stroke: SVGDocument.color(0), width: 2)
        svg.text("training", x: w - 175, y: m + 20, size: 11)
        svg.line(x1: w - 200, y1: m + 34, x2: w - 180, y2: m + 34, stroke: SVGDocument.color(1), width: 2)
        svg.text("validation", x: w - 175, y: m + 38, size: 11)
        return svg
    }

    /// A heatmap per layer and expert of each expert's share of the tokens over the run's last interval,
    /// next to a line per layer of the load imbalance (max / mean) over the steps.
    public static func expertLoad(_ log: [TrainLogEntry]) -> SVGDocument {
        guard let last = log.last, !last.expertLoad.isEmpty else {
            var svg = SVGDocument(width: 400, height: 60)
            svg.text("dense model: no experts", x: 200, y: 35, size: 14, anchor: "middle")
            return svg
        }
        let layers = last.expertLoad.count, experts = last.expertLoad[0].count
        let cell = 44.0, m = 70.0
        let w = m + Double(experts) * cell + 40, h = m + Double(layers) * cell + 70
        var svg = SVGDocument(width: w, height: h)
        svg.text("expert load per layer (share of tokens, last \(log.count > 1 ? last.step - log[log.count - 2].step : last.step) steps)", x: w / 2, y: 24, size: 14, anchor: "middle", weight: "bold")
        let uniform = 1.0 / Double(experts)
        for l in 0..<layers {
            let total = Double(max(last.expertLoad[l].reduce(0, +), 1))
            svg.text("layer \(l)", x: m - 8, y: m + Double(l) * cell + cell / 2 + 4, size: 11, anchor: "end")
            for e in 0..<experts {
                let share = Double(last.expertLoad[l][e]) / total
                // White at the uniform share, blue above it, red below.
                let t = min(1, abs(share - uniform) / uniform)
                let color = share >= uniform
                    ? String(format: "#%02x%02xff", Int(255 * (1 - t)), Int(255 * (1 - 0.6 * t)))
                    : String(format: "#ff%02x%02x", Int(255 * (1 - 0.7 * t)), Int(255 * (1 - t)))
                svg.rect(x: m + Double(e) * cell, y: m + Double(l) * cell, w: cell - 2, h: cell - 2, fill: color, stroke: "#ccc")
                svg.text(String(format: "%.0f%%", share * 100), x: m + Double(e) * cell + cell / 2 - 1, y: m + Double(l) * cell + cell / 2 + 4, size: 10, anchor: "middle")
            }
        }
        for e in 0..<experts { svg.text("E\(e)", x: m + Double(e) * cell + cell / 2, y: m - 8, size: 11, anchor: "middle") }
        svg.text(String(format: "uniform share = %.1f%%; blue above, red below", uniform * 100), x: w / 2, y: h - 30, size: 11, anchor: "middle")
        return svg
    }
}
