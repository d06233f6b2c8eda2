import Foundation
import MoETraining

/// An experiment's plot: one panel per measured figure, the arms along x, each seed's value as a dot and the
/// mean as a bar across them, so the spread the verdict rests on is visible.
public enum ExperimentPlot {
    /// `metrics`: (label, value of a run); a metric that is NaN for every run is left out.
    public static func render(_ report: ExperimentReport, arms: [String], metrics: [(String, (ArmRun) -> Double)]) -> SVGDocument {
        let shown = metrics.filter { m in arms.contains { a in (report.runs[a] ?? []).contains { m.1($0).isFinite } } }
        // Each arm's column is wide enough for its label at about 6.5 px a character.
        let column = max(70.0, 6.5 * Double(arms.map(\.count).max() ?? 0) + 12)
        let panelW = max(360.0, column * Double(arms.count) + 90), panelH = 300.0, top = 70.0, m = 70.0
        let x00 = max(0, (720 - Double(max(1, shown.count)) * panelW - 20) / 2)  // centres a lone narrow panel
        let w = max(720, max(1, Double(shown.count)) * panelW + 20)
        // The finding, wrapped to the width at about 6 px a character.
        let finding = wrap(report.finding, columns: Int((w - 40) / 6))
        let h = top + panelH + 70 + 15 * Double(finding.count)
        var svg = SVGDocument(width: w, height: h)
        svg.text("moe experiment \(report.experiment): \(report.reproduced ? "reproduced" : "not reproduced") (\(report.seeds.count) seed\(report.seeds.count == 1 ? "" : "s"), \(report.steps) steps)",
                 x: w / 2, y: 26, size: 15, anchor: "middle", weight: "bold")
        for (p, metric) in shown.enumerated() {
            let x0 = x00 + Double(p) * panelW + m, pw = panelW - m - 20
            let values = arms.flatMap { (report.runs[$0] ?? []).map(metric.1) }.filter(\.isFinite)
            var lo = values.min() ?? 0, hi = values.max() ?? 1
            let pad = max((hi - lo) * 0.1, abs(hi) * 0.01, 1e-6)
            lo -= pad
            hi += pad
            func py(_ v: Double) -> Double { top + panelH - panelH * (v - lo) / (hi - lo) }
            svg.rect(x: x0, y: top, w: pw, h: panelH, fill: "none", stroke: "#999")
            svg.text(metric.0, x: x0 + pw / 2, y: top - 10, size: 13, anchor: "middle", weight: "bold")
            for i in 0...4 {
                let v = lo + (hi - lo) * Double(i) / 4
                svg.line(x1: x0 - 4, y1: py(v), x2: x0, y2: py(v), stroke: "#999")
                svg.text(String(format: abs(hi) >= 100 ? "%.0f" : "%.3f", v), x: x0 - 6, y: py(v) + 4, size: 10, anchor: "end")
            }
            let step = pw / Double(arms.count)
            for (i, arm) in arms.enumerated() {
                let cx = x0 + step * (Double(i) + 0.5)
                let v = (report.runs[arm] ?? []).map(metric.1).filter(\.isFinite)
                svg.text(arm, x: cx, y: top + panelH + 18, size: 11, anchor: "middle")
                guard !v.isEmpty else { continue }
                let mean = v.reduce(0, +) / Double(v.count)
                svg.line(x1: cx - step * 0.3, y1: py(mean), x2: cx + step * 0.3, y2: py(mean), stroke: SVGDocument.color(i), width: 3)
                for (j, y) in v.enumerated() {
                    svg.circle(x: cx + (Double(j) - Double(v.count - 1) / 2) * 7, y: py(y), r: 3.5, fill: SVGDocument.color(i), opacity: 0.75)
                }
            }
        }
        let below = top + panelH + 48
        svg.text("dots: one per seed; bar: mean over seeds", x: w / 2, y: below, size: 11, anchor: "middle")
        for (i, line) in finding.enumerated() {
            svg.text(line, x: w / 2, y: below + 20 + 15 * Double(i), size: 10, anchor: "middle")
        }
        return svg
    }

    /// Words of `text` in lines of at most `columns` characters.
    static func wrap(_ text: String, columns: Int) -> [String] {
        var lines: [String] = [], line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty && line.count + 1 + word.count > columns {
                lines.append(line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        if !line.isEmpty { lines.append(line) }
        return lines
    }
}
