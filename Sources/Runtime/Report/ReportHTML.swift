// The report as one self-contained HTML page: inline CSS and SVG, no script, no font or image
// from anywhere else, so it opens the same from a mail attachment as from a web server. The
// training curves are the `--plot` figure (TrainingPlot); the reliability diagrams use its axes
// helpers and colours.
import Foundation

extension ClassifierReport {
    static let teacherColour = "#00BFC4", studentColour = "#F8766D"

    public static func html(_ r: ReportFigures, title: String = "Distillation report") -> String {
        var out = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>\(e(title))</title>
        <style>
        body { font-family: Helvetica, Arial, sans-serif; color: #1A1A1A; margin: 24px auto; max-width: 1120px; padding: 0 16px; }
        h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #D9D9D9; }
        table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
        th, td { padding: 4px 8px; border: 1px solid #D9D9D9; text-align: right; }
        th { background: #EBEBEB; } td.name, th.name { text-align: left; }
        .note { color: #4D4D4D; font-size: 12px; } .big { font-size: 20px; font-weight: bold; }
        .pair { display: flex; flex-wrap: wrap; gap: 24px; } .cm td { min-width: 28px; }
        </style></head><body>
        <h1>\(e(title))</h1>
        <p class="note">Teacher <b>\(e(r.teacher.file))</b>, student <b>\(e(r.student.file))</b>; test set \(e(r.test.source)): \(r.test.images) images, \(r.test.labelled) labelled. Made by distillctl on \(e(Self.timestamp())).</p>

        """
        out += summary(r)
        out += perClass(r)
        out += "<h2>Confusion matrices</h2>\n<p class=\"note\">Rows: the true class; columns: the predicted class. Shading: the share of the row.</p>\n<div class=\"pair\">\n"
        out += confusion(r.teacher, "Teacher", r.classes) + confusion(r.student, "Student", r.classes) + "</div>\n"
        out += "<h2>Calibration</h2>\n<p class=\"note\">Expected calibration error (ECE) over \(r.calibrationBins) equal-width bins of the top-class probability: the images' share of each bin times |accuracy - mean confidence|, summed. Bars: accuracy per bin; the diagonal is perfect calibration.</p>\n<div class=\"pair\">\n"
        out += reliabilitySVG(r.teacher, "Teacher", teacherColour) + reliabilitySVG(r.student, "Student", studentColour) + "</div>\n"
        if let history = r.historyRecords, !history.isEmpty {
            out += "<h2>Training</h2>\n" + TrainingPlot.svg(history)
        }
        out += "</body></html>\n"
        return out
    }

    static func timestamp() -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm 'UTC'"
        return f.string(from: Date())
    }

    static func e(_ s: String) -> String { TrainingPlot.escape(s).replacingOccurrences(of: "\"", with: "&quot;") }
    static func pct(_ v: Double, _ digits: Int = 1) -> String { v.isFinite ? String(format: "%.\(digits)f%%", v * 100) : "-" }
    static func bytes(_ n: Int) -> String {
        n < 0 ? "-" : n < 1_048_576 ? String(format: "%.1f KB", Double(n) / 1024) : String(format: "%.2f MB", Double(n) / 1_048_576)
    }

    static func summary(_ r: ReportFigures) -> String {
        func interval(_ p: Proportion) -> String { "\(pct(p.value)) <span class=\"note\">(\(pct(p.low)) - \(pct(p.high)))</span>" }
        func row(_ label: String, _ t: String, _ s: String) -> String {
            "<tr><td class=\"name\">\(label)</td><td>\(t)</td><td>\(s)</td></tr>\n"
        }
        let t = r.teacher, s = r.student
        var out = "<h2>Summary</h2>\n"
        out += "<p><span class=\"big\">Student \(pct(s.accuracy)) vs teacher \(pct(t.accuracy))</span> accuracy; the two agree on \(pct(r.agreement)) of the images <span class=\"note\">(95% interval \(pct(r.agreementInterval.low)) - \(pct(r.agreementInterval.high)))</span>.</p>\n"
        out += "<table>\n<tr><th class=\"name\"></th><th>teacher</th><th>student</th></tr>\n"
        out += row("model", e(t.name), e(s.name))
        out += row("accuracy (95% Wilson interval)", interval(t.accuracyInterval), interval(s.accuracyInterval))
        out += row("right / labelled", "\(t.accuracyInterval.count) / \(t.accuracyInterval.total)", "\(s.accuracyInterval.count) / \(s.accuracyInterval.total)")
        out += row("macro F1", String(format: "%.4f", t.macroF1), String(format: "%.4f", s.macroF1))
        out += row("expected calibration error", String(format: "%.4f", t.expectedCalibrationError), String(format: "%.4f", s.expectedCalibrationError))
        out += row("parameters", "\(t.parameters)", "\(s.parameters)")
        out += row("file size", bytes(t.fileBytes), bytes(s.fileBytes))
        if let ts = t.speed, let ss = s.speed {
            out += row("images per second (batch \(ts.throughputBatchSize), \(ts.threads) threads)", String(format: "%.0f", ts.imagesPerSecond), String(format: "%.0f", ss.imagesPerSecond))
            out += row("latency, one image: median / p90", String(format: "%.2f / %.2f ms", ts.latencyMedianMs, ts.latencyP90Ms), String(format: "%.2f / %.2f ms", ss.latencyMedianMs, ss.latencyP90Ms))
        }
        out += "</table>\n"
        return out
    }

    static func perClass(_ r: ReportFigures) -> String {
        var out = "<h2>Per class</h2>\n<table>\n<tr><th class=\"name\" rowspan=\"2\">class</th><th rowspan=\"2\">images</th><th colspan=\"3\">teacher</th><th colspan=\"3\">student</th></tr>\n"
        out += "<tr>" + String(repeating: "<th>precision</th><th>recall</th><th>F1</th>", count: 2) + "</tr>\n"
        for (t, s) in zip(r.teacher.perClass, r.student.perClass) {
            out += "<tr><td class=\"name\">\(e(t.name))</td><td>\(t.support)</td>"
            for c in [t, s] { out += String(format: "<td>%.3f</td><td>%.3f</td><td>%.3f</td>", c.precision, c.recall, c.f1) }
            out += "</tr>\n"
        }
        return out + "</table>\n"
    }

    static func confusion(_ m: ModelFigures, _ title: String, _ classes: [String]) -> String {
        var out = "<div><b>\(title)</b>\n<table class=\"cm\">\n<tr><th class=\"name\">true \\ predicted</th>"
        for c in classes { out += "<th>\(e(c))</th>" }
        out += "</tr>\n"
        for (i, row) in m.confusion.enumerated() {
            let total = max(1, row.reduce(0, +))
            out += "<tr><th class=\"name\">\(e(classes[i]))</th>"
            for (j, v) in row.enumerated() {
                let share = Double(v) / Double(total)
                // Diagonal in blue, mistakes in red, deeper with the share of the row.
                let (r, g, b) = i == j ? (255 - 200 * share, 255 - 120 * share, 255 - 60 * share)
                                       : (255 - 20 * share, 255 - 200 * min(1, 2 * share), 255 - 200 * min(1, 2 * share))
                let ink = i == j && share > 0.6 ? "white" : "#1A1A1A"
                out += String(format: "<td style=\"background:rgb(%d,%d,%d);color:%@\">%d</td>", Int(r), Int(g), Int(b), ink, v)
            }
            out += "</tr>\n"
        }
        return out + "</table></div>\n"
    }

    /// Accuracy per confidence bin as bars over the diagonal, with the bin counts underneath.
    static func reliabilitySVG(_ m: ModelFigures, _ title: String, _ colour: String) -> String {
        let size = 300.0, left = 50.0, top = 30.0, bottom = 60.0
        let width = left + size + 20, height = top + size + bottom
        func x(_ v: Double) -> Double { left + v * size }
        func y(_ v: Double) -> Double { top + size - v * size }
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"Helvetica, Arial, sans-serif\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(left + size / 2)\" y=\"18\" font-size=\"13\" text-anchor=\"middle\">\(title): ECE \(String(format: "%.4f", m.expectedCalibrationError))</text>\n"
        out += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(size)\" height=\"\(size)\" fill=\"#EBEBEB\"/>\n"
        for t in TrainingPlot.ticks(0, 1) {
            out += "<line x1=\"\(left)\" x2=\"\(left + size)\" y1=\"\(y(t))\" y2=\"\(y(t))\" stroke=\"white\"/>\n"
            out += "<line x1=\"\(x(t))\" x2=\"\(x(t))\" y1=\"\(top)\" y2=\"\(top + size)\" stroke=\"white\"/>\n"
            out += "<text x=\"\(left - 5)\" y=\"\(y(t) + 4)\" font-size=\"10\" text-anchor=\"end\" fill=\"#4D4D4D\">\(TrainingPlot.label(t))</text>\n"
            out += "<text x=\"\(x(t))\" y=\"\(top + size + 14)\" font-size=\"10\" text-anchor=\"middle\" fill=\"#4D4D4D\">\(TrainingPlot.label(t))</text>\n"
        }
        let maxCount = Double(max(1, m.reliability.map(\.count).max() ?? 1))
        for b in m.reliability {
            let w = (b.upper - b.lower) * size
            if let a = b.accuracy {
                out += String(format: "<rect class=\"bin\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%@\" stroke=\"white\"/>\n",
                              x(b.lower), y(a), w, a * size, colour)
            }
            // The share of images in the bin, as a strip under the axis.
            let h = 14 * Double(b.count) / maxCount
            out += String(format: "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#7F7F7F\"/>\n",
                          x(b.lower), top + size + 34 - h, w, h)
        }
        out += "<line x1=\"\(x(0))\" y1=\"\(y(0))\" x2=\"\(x(1))\" y2=\"\(y(1))\" stroke=\"#1A1A1A\" stroke-dasharray=\"4 3\"/>\n"
        out += "<text x=\"\(left + size / 2)\" y=\"\(top + size + 50)\" font-size=\"11\" text-anchor=\"middle\">confidence (images per bin in grey)</text>\n"
        out += "<text x=\"14\" y=\"\(top + size / 2)\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(top + size / 2))\">accuracy</text>\n"
        return out + "</svg>\n"
    }
}
