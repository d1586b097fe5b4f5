// Reading a split from a CSV: the seed's layout (image_id + one-hot columns, or image_id + label).
import Foundation

extension ImageDataset {
    /// Cells that mean "no label": pandas's default na_values (what read_csv makes NaN, so that
    /// Keras never sees them as a class name; pandas writes NaN as empty, R writes NA).
    static let missingMarkers: Set<String> = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                                              "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None",
                                              "n/a", "nan", "null"]

    public static func fromCSV(_ path: String, options: DatasetOptions = DatasetOptions()) throws -> ImageDataset {
        let table = try CSVTable.read(path: path)
        guard !table.rows.isEmpty else { throw RuntimeError("\(path): the CSV has no rows") }
        let names = try table.column(options.xColumn)
        let base = options.imageDirectory ?? URL(fileURLWithPath: path).deletingLastPathComponent().path
        var files: [ImageFile] = []
        files.reserveCapacity(names.count)
        for (i, name) in names.enumerated() {
            // Taken as written: pandas keeps spaces around a name, so Keras looks for " a.jpg".
            guard !name.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw RuntimeError("\(path) line \(table.lines[i]): empty '\(options.xColumn)'")
            }
            files.append(ImageFile(name: name, path: ImageList.path(of: name, under: base)))
        }
        let place = { (i: Int) in "\(path) line \(table.lines[i]) (\(files[i].name))" }

        // A " label" column is not the "label" column to Keras; taking the other columns for the
        // labels (or none) instead would read another data set than the user meant.
        if options.labels == .automatic, !table.header.contains("label"),
           table.header.contains(where: { $0.trimmingCharacters(in: .whitespaces) == "label" }) {
            throw table.missing(["label"], what: "column")
        }
        let spec = resolvedLabelSpec(options.labels, header: table.header, classNames: options.classNames,
                                     xColumn: options.xColumn)
        // Columns taken as every column but the file name (not named by --y-cols, nor the training
        // split's classes) must hold probabilities: a `width` column beside them would be a class.
        let guessed = options.labels == .automatic && spec != .oneHot(options.classNames ?? [])
        var classes: [String], labels: [Float], hasLabel: [Bool]
        switch spec {
        case .oneHot(var columns):
            if let given = options.classNames {
                // Matched by name, in any order; read in the given (training) order.
                let known = Set(given.map(classKey)), present = Set(columns.map(classKey))
                if let extra = columns.first(where: { !known.contains(classKey($0)) }) {
                    throw RuntimeError("\(path): label column '\(extra)' is not a class of the training set "
                                       + "(\(given.joined(separator: ", ")))")
                }
                if let missing = given.first(where: { !present.contains(classKey($0)) }) {
                    throw RuntimeError("\(path): no label column '\(missing)', a class of the training set "
                                       + "(columns: \(table.header.joined(separator: ", ")))")
                }
                columns = given
            }
            (labels, hasLabel) = try oneHotRows(table, columns: columns, path: path,
                                                guessedBeside: guessed ? options.xColumn : nil, place)
            classes = columns
        case .column(let column):
            let values = try table.column(column)
            classes = try options.classNames ?? inferredClasses(values)
            (labels, hasLabel) = try labelColumnRows(values, classes: classes, place)
        case .unlabelled, .automatic:
            classes = options.classNames ?? []
            labels = [Float](repeating: 0, count: files.count * classes.count)
            hasLabel = [Bool](repeating: false, count: files.count)
        }
        if options.requireFiles { try checkFilesExist(files, source: path, base: base) }
        return ImageDataset(source: path, files: files, classNames: classes, labels: labels, hasLabel: hasLabel)
    }

    /// `.automatic`: a `label` column; else the given class names as one-hot columns; else every
    /// column but the file-name one (the seed's CSV: image_id, CBB, CBSD, CGM, CMD, Healthy).
    static func resolvedLabelSpec(_ spec: LabelSpec, header: [String], classNames: [String]?,
                                  xColumn: String = "image_id") -> LabelSpec {
        guard spec == .automatic else { return spec }
        if header.contains("label") { return .column("label") }
        if let names = classNames, !names.isEmpty, names.allSatisfy(header.contains) { return .oneHot(names) }
        let others = header.filter { $0 != xColumn && !$0.isEmpty }
        // Several other columns are label columns, also when they are not the classes expected:
        // then they are refused by name rather than read as an unlabelled split.
        if others.count >= 2 { return .oneHot(others) }
        return .unlabelled
    }

    /// One-hot (or soft) label columns. All cells empty/NA: unlabelled. Otherwise every cell must
    /// be a number >= 0, and not all 0; a probability (0 to 1) when the columns were guessed as
    /// every column but `guessedBeside` (the file-name column), since Keras's one-hot columns are.
    static func oneHotRows(_ table: CSVTable, columns: [String], path: String, guessedBeside xColumn: String? = nil,
                           _ place: (Int) -> String) throws -> ([Float], [Bool]) {
        let missing = columns.filter { !table.header.contains($0) }
        guard missing.isEmpty else { throw table.missing(missing, what: "label column") }
        var labels: [Float] = [], hasLabel: [Bool] = []
        labels.reserveCapacity(table.rows.count * columns.count)
        for (i, row) in table.rows.enumerated() {
            let cells = columns.map { (row[$0] ?? "").trimmingCharacters(in: .whitespaces) }
            let empty = cells.map { missingMarkers.contains($0) }
            if empty.allSatisfy({ $0 }) {
                labels.append(contentsOf: repeatElement(0, count: columns.count))
                hasLabel.append(false)
                continue
            }
            if let k = empty.firstIndex(of: true) {
                throw RuntimeError("\(place(i)): label column '\(columns[k])' is empty but the others are not")
            }
            var sum: Float = 0
            for (k, cell) in cells.enumerated() {
                guard let v = Float(cell), v.isFinite, v >= 0, xColumn == nil || v <= 1 else {
                    if let xColumn {
                        throw RuntimeError("\(place(i)): column '\(columns[k])' holds '\(cell)', not a probability (0 to 1), "
                                           + "yet it was taken as a class (every column but '\(xColumn)'); "
                                           + "name the label columns", remedy: .labelColumns)
                    }
                    throw RuntimeError("\(place(i)): label column '\(columns[k])' holds '\(cell)', not a number >= 0")
                }
                labels.append(v)
                sum += v
            }
            guard sum > 0 else {
                throw RuntimeError("\(place(i)): every label column is 0; leave them empty (or NA) for an unlabelled image")
            }
            hasLabel.append(true)
        }
        return (labels, hasLabel)
    }

    /// A label column: a class name, or a class index ("3", "3.0"); empty/NA: unlabelled.
    static func labelColumnRows(_ values: [String], classes: [String],
                                _ place: (Int) -> String) throws -> ([Float], [Bool]) {
        let index = Dictionary(classes.enumerated().map { (classKey($1), $0) }, uniquingKeysWith: { a, _ in a })
        var labels = [Float](repeating: 0, count: values.count * classes.count)
        var hasLabel = [Bool](repeating: false, count: values.count)
        for (i, raw) in values.enumerated() {
            let v = raw.trimmingCharacters(in: .whitespaces)
            if missingMarkers.contains(v) { continue }
            // pandas keeps the spaces of a name ("cat " is a class of its own to Keras) but reads
            // " 3" as the number 3; a name with spaces around it is surely a typo, so refused.
            guard v == raw || integralIndex(v) != nil else {
                throw RuntimeError("\(place(i)): label '\(raw)' has spaces around it, which Keras reads as a class "
                                   + "of its own, not '\(v)'; remove the spaces")
            }
            guard let k = index[classKey(v)] ?? integralIndex(v).flatMap({ $0 < classes.count ? $0 : nil }) else {
                let range = classes.isEmpty ? "" : " (or an index 0-\(classes.count - 1))"
                throw RuntimeError("\(place(i)): unknown label '\(v)'; classes: \(classes.joined(separator: ", "))\(range)")
            }
            labels[i * classes.count + k] = 1
            hasLabel[i] = true
        }
        return (labels, hasLabel)
    }

    /// Classes of a label column when none are given: "0"..."max" when every label is an
    /// integer (an index), else the distinct labels sorted (as Keras sorts class names).
    static func inferredClasses(_ values: [String]) throws -> [String] {
        let present = values.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !missingMarkers.contains($0) }
        let indices = present.compactMap(integralIndex)
        if !present.isEmpty && indices.count == present.count {
            return (0...indices.max()!).map(String.init)
        }
        var seen = Set<[UInt8]>()
        return present.filter { seen.insert(classKey($0)).inserted }.sorted(by: kerasOrder)
    }

    /// "3" or "3.0" as 3; nil for anything else (negative, fractional, huge, not a number).
    static func integralIndex(_ s: String) -> Int? {
        if let i = Int(s) { return i >= 0 && i < 1_000_000 ? i : nil }
        guard let d = Double(s), d.isFinite, d >= 0, d < 1_000_000, d == d.rounded() else { return nil }
        return Int(d)
    }

    static func checkFilesExist(_ files: [ImageFile], source: String, base: String) throws {
        let fm = FileManager.default
        let missing = files.filter { !fm.fileExists(atPath: $0.path) }
        guard let first = missing.first else { return }
        let more = missing.count > 1 ? " (and \(missing.count - 1) more: \(missing.dropFirst().prefix(4).map(\.name).joined(separator: ", "))\(missing.count > 5 ? ", ..." : ""))" : ""
        throw RuntimeError("\(source): image file not found: \(first.path)\(more)")
    }
}
