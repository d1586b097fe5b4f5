// `--plot`: the history as an SVG in the look of the seed's ggplot2 figures (grey panels, white
// grid, ggplot's default hues): one panel of losses (total, hard, soft, validation) and one of
// accuracies (training, validation), epochs along the bottom.
import Foundation

public enum TrainingPlot {
    struct Series {
        var name: String
        var colour: String
        var values: [(Int, Double)]
    }

    struct Panel {
        var title: String
        var series: [Series]
    }

    static func panels(_ history: [EpochRecord]) -> [Panel] {
        func series(_ name: String, _ colour: String, _ pick: (EpochRecord) -> Double?) -> Series? {
            let v = history.compactMap { r in pick(r).flatMap { $0.isFinite ? (r.epoch + 1, $0) : nil } }
            return v.isEmpty ? nil : Series(name: name, colour: colour, values: v)
        }
        let distilled = history.contains { $0.softLoss != nil }
        let losses = [
            series(distilled ? "total loss" : "loss", "#1aff8c", { $0.loss }),
            distilled ? series("hard (student) loss", "#F8766D", { $0.hardLoss }) : nil,
            series("soft (distillation) loss", "#DE8C00", { $0.softLoss }),
            series("val_loss", "#00BFC4", { $0.valLoss }),
        ].compactMap { $0 }
        let accuracies = [
            series("accuracy", "#F8766D", { $0.accuracy }),
            series("val_accuracy", "#00BFC4", { $0.valAccuracy }),
        ].compactMap { $0 }
        return [Panel(title: "loss", series: losses), Panel(title: "accuracy", series: accuracies)]
            .filter { !$0.series.isEmpty }
    }

    /// Round tick values covering [lo, hi] (about five of them).
    static func ticks(_ lo: Double, _ hi: Double) -> [Double] {
        let span = max(hi - lo, 1e-9)
        let raw = span / 5
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        var out: [Double] = []
        var t = (lo / step).rounded(.up) * step
        while t <= hi + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return out
    }

    static func label(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e6 { return String(Int(v)) }
        var s = String(format: "%.4f", v)
        while s.hasSuffix("0") { s.removeLast() }
        return s
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }

    public static func svg(_ history: [EpochRecord]) -> String {
        let panels = panels(history)
        let width = 720.0, panelHeight = 260.0, left = 60.0, right = 190.0, top = 20.0, strip = 22.0, gap = 24.0
        let bottom = 50.0
        let height = top + Double(panels.count) * (strip + panelHeight + gap) - gap + bottom
        let plotWidth = width - left - right
        let epochs = max(1, history.map { $0.epoch + 1 }.max() ?? 1)
        let xLo = 1.0, xHi = Double(max(epochs, 2))
        func x(_ e: Double) -> Double { left + (e - xLo) / (xHi - xLo) * plotWidth }
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="Helvetica, Arial, sans-serif">
        <rect width="100%" height="100%" fill="white"/>

        """
        let xTicks = ticks(xLo, xHi).filter { $0 == $0.rounded() }
        for (p, panel) in panels.enumerated() {
            let y0 = top + Double(p) * (strip + panelHeight + gap)
            let py = y0 + strip
            let all = panel.series.flatMap { $0.values.map(\.1) }
            var lo = all.min()!, hi = all.max()!
            if hi - lo < 1e-9 { lo -= 0.5; hi += 0.5 }
            let pad = (hi - lo) * 0.05
            lo -= pad; hi += pad
            func y(_ v: Double) -> Double { py + panelHeight - (v - lo) / (hi - lo) * panelHeight }
            out += "<g class=\"panel\" data-metric=\"\(panel.title)\">\n"
            out += "<rect x=\"\(left)\" y=\"\(y0)\" width=\"\(plotWidth)\" height=\"\(strip)\" fill=\"#D9D9D9\"/>\n"
            out += "<text x=\"\(left + plotWidth / 2)\" y=\"\(y0 + 15)\" font-size=\"12\" text-anchor=\"middle\" fill=\"#1A1A1A\">\(panel.title)</text>\n"
            out += "<rect x=\"\(left)\" y=\"\(py)\" width=\"\(plotWidth)\" height=\"\(panelHeight)\" fill=\"#EBEBEB\"/>\n"
            for t in ticks(lo, hi) {
                let yy = y(t)
                out += "<line x1=\"\(left)\" x2=\"\(left + plotWidth)\" y1=\"\(yy)\" y2=\"\(yy)\" stroke=\"white\" stroke-width=\"1.1\"/>\n"
                out += "<text x=\"\(left - 5)\" y=\"\(yy + 4)\" font-size=\"10\" text-anchor=\"end\" fill=\"#4D4D4D\">\(label(t))</text>\n"
            }
            for t in xTicks {
                out += "<line x1=\"\(x(t))\" x2=\"\(x(t))\" y1=\"\(py)\" y2=\"\(py + panelHeight)\" stroke=\"white\" stroke-width=\"1.1\"/>\n"
            }
            for s in panel.series {
                let points = s.values.map { String(format: "%.2f,%.2f", x(Double($0.0)), y($0.1)) }.joined(separator: " ")
                out += "<polyline class=\"series\" data-name=\"\(escape(s.name))\" fill=\"none\" stroke=\"\(s.colour)\" stroke-width=\"1.6\" points=\"\(points)\"/>\n"
                for (e, v) in s.values {
                    out += String(format: "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.4\" fill=\"%@\"/>\n", x(Double(e)), y(v), s.colour)
                }
            }
            // Legend.
            out += "<text x=\"\(left + plotWidth + 14)\" y=\"\(py + 14)\" font-size=\"11\" fill=\"#1A1A1A\">\(panel.title)</text>\n"
            for (i, s) in panel.series.enumerated() {
                let ly = py + 30 + Double(i) * 20
                out += "<line x1=\"\(left + plotWidth + 14)\" x2=\"\(left + plotWidth + 34)\" y1=\"\(ly)\" y2=\"\(ly)\" stroke=\"\(s.colour)\" stroke-width=\"1.6\"/>\n"
                out += "<text x=\"\(left + plotWidth + 40)\" y=\"\(ly + 4)\" font-size=\"10\" fill=\"#1A1A1A\">\(escape(s.name))</text>\n"
            }
            out += "</g>\n"
        }
        let axisY = top + Double(panels.count) * (strip + panelHeight + gap) - gap
        for t in xTicks {
            out += "<text x=\"\(x(t))\" y=\"\(axisY + 14)\" font-size=\"10\" text-anchor=\"middle\" fill=\"#4D4D4D\">\(label(t))</text>\n"
        }
        out += "<text x=\"\(left + plotWidth / 2)\" y=\"\(axisY + 34)\" font-size=\"12\" text-anchor=\"middle\" fill=\"#1A1A1A\">epoch</text>\n"
        out += "</svg>\n"
        return out
    }
}
