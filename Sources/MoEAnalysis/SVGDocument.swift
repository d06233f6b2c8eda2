import Foundation
import MoEIO

/// A small SVG document builder for the project's plots (scatter panels, line charts, heatmaps).
public struct SVGDocument {
    public let width: Double
    public let height: Double
    private var body: [String] = []

    public init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    /// A qualitative palette (Tableau 10) indexed cyclically.
    public static func color(_ i: Int) -> String {
        let p = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
        return p[((i % p.count) + p.count) % p.count]
    }

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func f(_ v: Double) -> String { String(format: "%.2f", v) }

    public mutating func rect(x: Double, y: Double, w: Double, h: Double, fill: String, stroke: String = "none", opacity: Double = 1) {
        body.append("<rect x=\"\(Self.f(x))\" y=\"\(Self.f(y))\" width=\"\(Self.f(w))\" height=\"\(Self.f(h))\" fill=\"\(fill)\" stroke=\"\(stroke)\" fill-opacity=\"\(Self.f(opacity))\"/>")
    }

    public mutating func circle(x: Double, y: Double, r: Double, fill: String, opacity: Double = 1) {
        body.append("<circle cx=\"\(Self.f(x))\" cy=\"\(Self.f(y))\" r=\"\(Self.f(r))\" fill=\"\(fill)\" fill-opacity=\"\(Self.f(opacity))\"/>")
    }

    public mutating func line(x1: Double, y1: Double, x2: Double, y2: Double, stroke: String = "#333", width: Double = 1) {
        body.append("<line x1=\"\(Self.f(x1))\" y1=\"\(Self.f(y1))\" x2=\"\(Self.f(x2))\" y2=\"\(Self.f(y2))\" stroke=\"\(stroke)\" stroke-width=\"\(Self.f(width))\"/>")
    }

    public mutating func polyline(_ points: [(Double, Double)], stroke: String, width: Double = 1.5) {
        let pts = points.map { "\(Self.f($0.0)),\(Self.f($0.1))" }.joined(separator: " ")
        body.append("<polyline points=\"\(pts)\" fill=\"none\" stroke=\"\(stroke)\" stroke-width=\"\(Self.f(width))\"/>")
    }

    public mutating func text(
        _ s: String, x: Double, y: Double, size: Double = 12, anchor: String = "start", weight: String = "normal",
        fill: String = "#222", rotate: Double? = nil
    ) {
        let r = rotate.map { " transform=\"rotate(\(Self.f($0)) \(Self.f(x)) \(Self.f(y)))\"" } ?? ""
        body.append("<text x=\"\(Self.f(x))\" y=\"\(Self.f(y))\" font-size=\"\(Self.f(size))\" text-anchor=\"\(anchor)\" font-weight=\"\(weight)\" fill=\"\(fill)\" font-family=\"sans-serif\"\(r)>\(Self.esc(s))</text>")
    }

    public var rendered: String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Self.f(width))\" height=\"\(Self.f(height))\" viewBox=\"0 0 \(Self.f(width)) \(Self.f(height))\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n" + body.joined(separator: "\n") + "\n</svg>\n"
    }

    /// Writes the document atomically (temp file, fsync, rename).
    public func write(to path: String) throws {
        try AtomicFile.write(Data(rendered.utf8), to: path)
    }
}

