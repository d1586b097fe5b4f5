import Foundation
import H5Model
import TestSupport
import XCTest

/// Runs the built `distillctl` binary as a user would and captures what it prints.
struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String
    /// The signal that ended the process, if one did.
    var signal: Int32? = nil
}

enum CLI {
    /// The folder holding the built products (the test bundle sits next to the executable).
    static var productsDirectory: URL {
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            return bundle.bundleURL.deletingLastPathComponent()
        }
        return Bundle.main.bundleURL
    }

    /// `environment`: variables set for this run on top of the test's own.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> CLIResult {
        let process = Process()
        process.executableURL = productsDirectory.appendingPathComponent("distillctl")
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return CLIResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self),
                         signal: process.terminationReason == .uncaughtSignal ? process.terminationStatus : nil)
    }
}

/// A bad input must end in exactly one line on stderr, naming `mentions`, and a non-zero exit.
func assertCleanFailure(_ r: CLIResult, mentions: [String], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertNotEqual(r.status, 0, "exit status", file: file, line: line)
    let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: true)
    XCTAssertEqual(lines.count, 1, "stderr should be one line, got:\n\(r.stderr)", file: file, line: line)
    XCTAssertTrue(r.stderr.hasPrefix("distillctl: error: "), r.stderr, file: file, line: line)
    for m in mentions { XCTAssertTrue(r.stderr.contains(m), "stderr should mention '\(m)': \(r.stderr)", file: file, line: line) }
    XCTAssertFalse(r.stderr.contains("HDF5-DIAG"), "HDF5 error stack leaked: \(r.stderr)", file: file, line: line)
}

/// Every weight of a Keras file, by "layer/weight" name (for comparing students).
func kerasWeights(_ path: String) throws -> [String: [Float]] {
    var out: [String: [Float]] = [:]
    for layer in try KerasH5File.read(path: path).weights.layers {
        for w in layer.weights { out[layer.name + "/" + w.name] = w.floats }
    }
    return out
}

/// Command tests on the bundled example: a temporary folder for each test, the example's teacher
/// and student, and CSVs listing the example's first training images.
class ExampleCommandCase: XCTestCase {
    var temp: URL!
    let example = fixturesDirectory.deletingLastPathComponent().appendingPathComponent("example")

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("example-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: temp) }

    func path(_ name: String) -> String { temp.appendingPathComponent(name).path }
    var teacher: String { example.appendingPathComponent("teacher.h5").path }
    var student: String { example.appendingPathComponent("student.h5").path }

    /// A CSV in `temp` listing the example's first `rows` training images (paths relative to its images).
    func subsetCSV(_ rows: Int) throws -> String {
        let out = path("train\(rows).csv")
        let lines = try String(contentsOf: example.appendingPathComponent("data/train.csv"), encoding: .utf8)
            .split(separator: "\n").prefix(rows + 1)
        try (lines.joined(separator: "\n") + "\n").write(toFile: out, atomically: true, encoding: .utf8)
        return out
    }
}
