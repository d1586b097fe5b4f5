/// A Keras-style summary table: layer (type), output shape, parameters; then the totals.
extension ModelGraph {
    public func summary() -> String {
        let rows: [(String, String, String)] = topLevel.compactMap { top in
            // Keras lists a Sequential's layers without its implicit InputLayer.
            if className == "Sequential" && top.className == "InputLayer" { return nil }
            let counts = parameterCounts(nodeIDs: top.nodeIDs)
            let shapes = top.outputNodeIDs.map { fmt(nodes[$0].outputShape) }
            let shape = shapes.count == 1 ? shapes[0] : "[" + shapes.joined(separator: ", ") + "]"
            return ("\(top.name) (\(top.className))", shape, String(counts.total))
        }
        let w0 = max(28, (rows.map(\.0.count).max() ?? 0) + 2)
        let w1 = max(26, (rows.map(\.1.count).max() ?? 0) + 2)
        let width = w0 + w1 + 12
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        var lines = ["Model: \"\(name)\"", String(repeating: "_", count: width),
                     pad("Layer (type)", w0) + pad("Output Shape", w1) + "Param #",
                     String(repeating: "=", count: width)]
        for (i, row) in rows.enumerated() {
            lines.append(pad(row.0, w0) + pad(row.1, w1) + row.2)
            if i < rows.count - 1 { lines.append(String(repeating: "_", count: width)) }
        }
        let totals = parameterCounts()
        lines += [String(repeating: "=", count: width),
                  "Total params: \(grouped(totals.total))",
                  "Trainable params: \(grouped(totals.trainable))",
                  "Non-trainable params: \(grouped(totals.nonTrainable))",
                  String(repeating: "_", count: width)]
        return lines.joined(separator: "\n")
    }
}

/// 4061096 -> "4,061,096", as Keras prints totals.
func grouped(_ n: Int) -> String {
    let digits = Array(String(n))
    var out = ""
    for (i, d) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(d)
    }
    return out
}
