import Foundation
import TestSupport
import XCTest

/// The libraries never print, never end the process on their own, and Runtime and H5Model name no
/// command-line flag: the command line turns their typed errors into lines.
final class LibraryBoundaryTests: XCTestCase {
    let root = fixturesDirectory.deletingLastPathComponent().appendingPathComponent("Sources")

    /// Code lines (comments dropped) of every Swift file of `target`, with file name and line number.
    func codeLines(_ target: String) throws -> [(file: String, line: Int, text: String)] {
        let folder = root.appendingPathComponent(target)
        let walker = try XCTUnwrap(FileManager.default.enumerator(atPath: folder.path))
        var out: [(String, Int, String)] = []
        while let name = walker.nextObject() as? String {
            guard name.hasSuffix(".swift") else { continue }
            let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let code = line.trimmingCharacters(in: .whitespaces)
                if code.hasPrefix("//") { continue }
                out.append(("\(target)/\(name)", i + 1, code))
            }
        }
        return out
    }

    func testLibrariesNeitherPrintNorExit() throws {
        // Allowed: the forked reading child's _exit (it must not return into the parent's state),
        // and Collective.abort, which ends every rank when the command line asks it to.
        let allowed: [(file: String, text: String)] = [("H5Model/IsolatedRead.swift", "_exit(code)"),
                                                       ("Runtime/Distributed/Collective.swift", "exit(code)"),
                                                       ("Runtime/Distributed/Collective.swift", "func abort(code: Int32)")]
        let call = try NSRegularExpression(pattern: "(^|[^A-Za-z0-9_.])(print|exit|_exit|abort|fputs|puts)\\(|FileHandle\\.standardError|\\bstderr\\b|distillctl: (error|warning)")
        var found: [String] = []
        for target in ["H5Model", "Graph", "Runtime"] {
            for (file, line, text) in try codeLines(target) {
                let hit = call.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
                guard hit, !allowed.contains(where: { $0.file == file && text.contains($0.text) }) else { continue }
                found.append("\(file):\(line): \(text)")
            }
        }
        XCTAssertEqual(found, [], "the libraries print or exit:\n" + found.joined(separator: "\n"))
    }

    /// The libraries' messages name no flag: where the remedy is the caller's choice, a typed
    /// remedy lets the command line name its option.
    func testLibrariesNameNoFlag() throws {
        let flag = try NSRegularExpression(pattern: "\"[^\"]*(^|[ (])--[a-z][a-z0-9-]+")
        var found: [String] = []
        for target in ["H5Model", "Graph", "Runtime"] {
            for (file, line, text) in try codeLines(target) where !text.hasPrefix("///") {
                if flag.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil {
                    found.append("\(file):\(line): \(text)")
                }
            }
        }
        XCTAssertEqual(found, [], "library messages naming flags:\n" + found.joined(separator: "\n"))
    }
}
