// CSV as pandas' read_csv and R's read.csv take it (RFC 4180 quoting, blank lines skipped, CRLF or
// LF, a UTF-8 byte-order mark ignored), with every record's line number kept so that an error
// names the file, the line and the column, and shows at most that one line.
import Foundation

/// A CSV with a header row.
public struct CSVTable: Sendable {
    public var path: String
    public var header: [String]
    public var rows: [[String: String]]
    /// The line (1-based) each row starts on.
    public var lines: [Int]

    public static func read(path: String) throws -> CSVTable {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            var isFolder: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder)
            throw RuntimeError("\(path): cannot read the CSV (\(exists ? (isFolder.boolValue ? "a folder" : "unreadable") : "no such file"))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw RuntimeError("\(path): cannot read the CSV (not UTF-8 text)")
        }
        return try parse(text, path: path)
    }

    /// Parses CSV text; `path` names it in errors.
    public static func parse(_ text: String, path: String) throws -> CSVTable {
        var records = try CSVRecords.split(Array(text.utf8), path: path)
        guard !records.isEmpty else { throw RuntimeError("\(path): the CSV is empty (no header row)") }
        let head = records.removeFirst()
        // Names as written: pandas keeps the spaces around a header name (" label" is not
        // "label" to Keras), so a lookup that misses says which name differs only by them.
        let header = head.fields
        // Rows are looked up by name with String ==, which takes "é" and "e" + U+0301 for one name,
        // and a name twice would be one column here; pandas keeps two columns (renaming a repeated
        // name's second "name.1"), so such a header is refused rather than read as one column.
        // Empty names are not: pandas calls each "Unnamed: <index>" (a spreadsheet's trailing
        // commas), and no label or file-name column is looked up by an empty name.
        for (k, name) in header.enumerated() where !name.isEmpty {
            guard let j = header[..<k].firstIndex(where: { $0 == name }) else { continue }
            if header[j].utf8.elementsEqual(name.utf8) {
                throw RuntimeError("\(path): columns \(j + 1) and \(k + 1) are both named '\(name)' (pandas would read the "
                                   + "second as '\(name).1'); rename one")
            }
            throw RuntimeError("\(path): columns \(j + 1) and \(k + 1) ('\(header[j])', '\(name)') differ only in "
                               + "Unicode normalisation (precomposed or decomposed accents); rename one")
        }
        var rows: [[String: String]] = [], lines: [Int] = []
        rows.reserveCapacity(records.count)
        for record in records {
            guard record.fields.count <= header.count else {
                throw RuntimeError("\(path) line \(record.line), column \(header.count + 1): \(record.fields.count) fields, "
                                   + "the header has \(header.count): \(CSVRecords.context(record.text))")
            }
            var row: [String: String] = [:]
            for (k, name) in header.enumerated() where row[name] == nil {
                row[name] = k < record.fields.count ? record.fields[k] : ""   // a short row: the rest missing, as pandas
            }
            rows.append(row)
            lines.append(record.line)
        }
        return CSVTable(path: path, header: header, rows: rows, lines: lines)
    }

    public func column(_ name: String) throws -> [String] {
        guard header.contains(name) else { throw missing([name], what: "column") }
        return rows.map { $0[name] ?? "" }
    }

    /// The error for columns `names` not in the header (`what`: "column", "label column"),
    /// naming the header's columns, and any column whose name is one of them with spaces around it.
    func missing(_ names: [String], what: String) -> RuntimeError {
        let quoted = names.map { "'\($0)'" }.joined(separator: ", ")
        let columns = header.map { $0.trimmingCharacters(in: .whitespaces) == $0 ? $0 : "'\($0)'" }.joined(separator: ", ")
        let spaced = names.compactMap { name in
            header.firstIndex { $0 != name && $0.trimmingCharacters(in: .whitespaces) == name }.map { k in
                "column \(k + 1) is '\(header[k])', with spaces that pandas keeps in the name"
            }
        }
        let hint = spaced.isEmpty ? "" : "; " + spaced.joined(separator: "; ") + " (remove them)"
        return RuntimeError("\(path): no \(what)\(names.count > 1 ? "s" : "") \(quoted) (columns: \(columns))\(hint)")
    }
}

/// Splits CSV bytes into records.
enum CSVRecords {
    struct Record {
        var fields: [String]
        var line: Int
        /// The record's first line, for an error's context.
        var text: String
    }

    static func split(_ bytes: [UInt8], path: String) throws -> [Record] {
        let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), newline = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")
        var i = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var line = 1
        var records: [Record] = []
        func lineText(from start: Int) -> String {
            var end = start
            while end < bytes.count && bytes[end] != newline && bytes[end] != cr { end += 1 }
            return String(decoding: bytes[start..<end], as: UTF8.self)
        }
        while i < bytes.count {
            let recordStart = i, recordLine = line
            var fields: [String] = []
            var field: [UInt8] = []
            var column = 1
            var endOfRecord = false
            while !endOfRecord {
                if i < bytes.count && bytes[i] == quote && field.isEmpty {
                    // A quoted field: up to the closing quote, "" standing for one quote, newlines kept.
                    let openLine = line, openColumn = column
                    i += 1
                    var closed = false
                    while i < bytes.count {
                        if bytes[i] == quote {
                            if i + 1 < bytes.count && bytes[i + 1] == quote { field.append(quote); i += 2; continue }
                            i += 1
                            closed = true
                            break
                        }
                        if bytes[i] == newline { line += 1 }
                        field.append(bytes[i])
                        i += 1
                    }
                    guard closed else {
                        throw RuntimeError("\(path) line \(openLine), column \(openColumn): unterminated quote (no closing \" "
                                           + "before the end of the file): \(context(lineText(from: recordStart)))")
                    }
                    guard i >= bytes.count || bytes[i] == comma || bytes[i] == newline || bytes[i] == cr else {
                        throw RuntimeError("\(path) line \(line), column \(openColumn): text after the closing quote of a "
                                           + "quoted field: \(context(lineText(from: recordStart)))")
                    }
                    continue
                }
                if i >= bytes.count || bytes[i] == newline || bytes[i] == cr {
                    fields.append(String(decoding: field, as: UTF8.self))
                    if i < bytes.count && bytes[i] == cr { i += 1 }
                    if i < bytes.count && bytes[i] == newline { i += 1 }
                    line += 1
                    endOfRecord = true
                } else if bytes[i] == comma {
                    fields.append(String(decoding: field, as: UTF8.self))
                    field = []
                    column += 1
                    i += 1
                } else {
                    field.append(bytes[i])
                    i += 1
                }
            }
            // Blank lines are skipped, as pandas (skip_blank_lines) and R's read.csv do.
            if fields.count == 1 && fields[0].allSatisfy({ $0 == " " || $0 == "\t" }) && bytes[recordStart] != quote { continue }
            records.append(Record(fields: fields, line: recordLine, text: lineText(from: recordStart)))
        }
        return records
    }

    /// One line of context, shortened: an unterminated quote must not print the rest of the file.
    static func context(_ text: String) -> String {
        let shown = text.count > 80 ? String(text.prefix(77)) + "..." : text
        return "'\(shown)'"
    }
}
