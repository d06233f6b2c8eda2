/// The vowel plane (F2 across, F1 down, as phoneticians draw it), one panel per trained mixture: each test
/// token is coloured by the expert whose gate is largest, with opacity by that gate's value, and each vowel
/// is labelled at its mean position per speaker group.
public enum ClassicPlot {
    public static func render(_ results: [(title: String, result: ClassicResult, report: LocalizationReport)]) -> SVGDocument {
        let panelW = 460.0, panelH = 400.0, margin = 50.0
        var svg = SVGDocument(width: margin + Double(results.count) * (panelW + margin), height: panelH + 2.6 * margin)
        let f2Range = (700.0, 3900.0), f1Range = (200.0, 1200.0)
        for (k, item) in results.enumerated() {
            let x0 = margin + Double(k) * (panelW + margin), y0 = 1.3 * margin
            func px(_ f2: Double) -> Double { x0 + panelW * (1 - (f2 - f2Range.0) / (f2Range.1 - f2Range.0)) }
            func py(_ f1: Double) -> Double { y0 + panelH * (f1 - f1Range.0) / (f1Range.1 - f1Range.0) }
            svg.rect(x: x0, y: y0, w: panelW, h: panelH, fill: "none", stroke: "#999")
            svg.text(item.title, x: x0 + panelW / 2, y: y0 - 22, size: 15, anchor: "middle", weight: "bold")
            svg.text(
                String(format: "test accuracy %.1f%%, mean max gate %.2f, %d experts in use",
                       item.result.testAccuracy * 100, item.report.meanMaxGate, item.report.expertsInUse()),
                x: x0 + panelW / 2, y: y0 - 6, size: 11, anchor: "middle")
            for (s, gate) in zip(item.result.testSamples, item.result.testGates) {
                let w = gate.indices.max { gate[$0] < gate[$1] } ?? 0
                svg.circle(x: px(s.formants[1]), y: py(s.formants[0]), r: 2.6, fill: SVGDocument.color(w), opacity: 0.25 + 0.6 * gate[w])
            }
            for v in VowelData.vowels.indices {
                for g in VowelData.groups.indices {
                    let m = VowelData.meanFormants[g][v]
                    let label = String(VowelData.vowels[v].prefix(1)) + ["m", "w", "c"][g]
                    svg.text(label, x: px(m[1]), y: py(m[0]), size: 10, anchor: "middle", weight: "bold")
                }
            }
            for t in stride(from: 1000.0, through: 3500, by: 500) {
                svg.text("\(Int(t))", x: px(t), y: y0 + panelH + 14, size: 10, anchor: "middle")
            }
            for t in stride(from: 200.0, through: 1200, by: 200) {
                svg.text("\(Int(t))", x: x0 - 4, y: py(t) + 4, size: 10, anchor: "end")
            }
            svg.text("F2 (Hz)", x: x0 + panelW / 2, y: y0 + panelH + 30, size: 12, anchor: "middle")
            svg.text("F1 (Hz)", x: x0 - 34, y: y0 + panelH / 2, size: 12, anchor: "middle", rotate: -90)
            for e in 0..<item.report.experts {
                let lx = x0 + Double(e) * 70
                svg.circle(x: lx + 5, y: y0 + panelH + 48, r: 5, fill: SVGDocument.color(e))
                svg.text(String(format: "E%d %.0f%%", e, item.report.winShare[e] * 100), x: lx + 14, y: y0 + panelH + 52, size: 11)
            }
        }
        return svg
    }
}
