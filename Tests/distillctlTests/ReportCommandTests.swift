// `distillctl report` on the bundled example against Keras: the accuracies equal tf-keras's
// `evaluate` of the same files on the same test CSV, and the agreement, confusion matrices,
// per-class figures and calibration error equal what numpy computes from Keras's predictions
// (fixtures/make_report_fixture.py). The page is one self-contained file.
import Foundation
import TestSupport
import XCTest

final class ReportCommandTests: ExampleCommandCase {


    func report(_ extra: [String]) -> [String] {
        ["report", "--teacher", example.appendingPathComponent("teacher.h5").path,
         "--student", example.appendingPathComponent("student.h5").path,
         "--test", example.appendingPathComponent("data/test.csv").path,
         "--images", example.appendingPathComponent("data/images").path, "--speed-iterations", "3"] + extra
    }

    func testFiguresEqualKerasOnTheExample() throws {
        let history = "epoch,accuracy,hard_loss,learning_rate,loss,soft_loss,val_accuracy,val_loss\n"
            + "0,0.5,1.5,0.001,2.5,10,0.4,1.7\n1,0.7,0.9,0.001,1.5,6,0.6,1.1\n2,0.8,0.6,0.001,1.1,4,0.7,0.9\n"
        try history.write(toFile: path("h.csv"), atomically: true, encoding: .utf8)
        let r = try CLI.run(report(["--history", path("h.csv"), "--output", path("r.html"), "--json", path("r.json")]))
        XCTAssertEqual(r.status, 0, r.stderr)
        let ours = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("r.json")))) as! [String: Any]
        let keras = try JSONSerialization.jsonObject(with: Data(contentsOf: fixturesDirectory.appendingPathComponent("report/example_keras.json"))) as! [String: Any]
        for name in ["teacher", "student"] {
            let o = ours[name] as! [String: Any], k = keras[name] as! [String: Any]
            let accuracy = (o["accuracy"] as! NSNumber).doubleValue
            // Keras's evaluate reports a float32 mean: equal to ours to float32 precision.
            XCTAssertEqual(accuracy, (k["keras_evaluate_accuracy"] as! NSNumber).doubleValue, accuracy: 1e-7, name)
            XCTAssertEqual(accuracy, (k["accuracy"] as! NSNumber).doubleValue, name)
            XCTAssertEqual((o["accuracy_95"] as! [String: Any])["count"] as? Int, k["correct"] as? Int, name)
            XCTAssertEqual(o["confusion"] as! [[Int]], k["confusion"] as! [[Int]], name)
            XCTAssertEqual((o["ece"] as! NSNumber).doubleValue, (k["ece"] as! NSNumber).doubleValue, accuracy: 1e-6, "\(name) ECE")
            for (c, (oc, kc)) in zip(o["per_class"] as! [[String: Any]], k["per_class"] as! [[String: Any]]).enumerated() {
                for key in ["precision", "recall", "f1"] {
                    XCTAssertEqual((oc[key] as! NSNumber).doubleValue, (kc[key] as! NSNumber).doubleValue, accuracy: 1e-12, "\(name) class \(c) \(key)")
                }
            }
            // Sizes and a measured speed are there.
            XCTAssertGreaterThan(o["parameters"] as! Int, 0)
            XCTAssertEqual(o["file_bytes"] as? Int,
                           (try FileManager.default.attributesOfItem(atPath: example.appendingPathComponent("\(name).h5").path)[.size] as! NSNumber).intValue)
            XCTAssertGreaterThan(((o["speed"] as! [String: Any])["images_per_second"] as! NSNumber).doubleValue, 0)
        }
        XCTAssertEqual((ours["agreement"] as! NSNumber).doubleValue, (keras["agreement"] as! NSNumber).doubleValue)
        // 95% Wilson intervals: SciPy's (in the fixture) for both accuracies and the agreement.
        for (o, k) in [((ours["teacher"] as! [String: Any])["accuracy_95"], (keras["teacher"] as! [String: Any])["wilson_95"]),
                       ((ours["student"] as! [String: Any])["accuracy_95"], (keras["student"] as! [String: Any])["wilson_95"]),
                       (ours["agreement_95"], keras["agreement_wilson_95"])] {
            let interval = o as! [String: Any], expected = (k as! [NSNumber]).map(\.doubleValue)
            XCTAssertEqual((interval["low"] as! NSNumber).doubleValue, expected[0], accuracy: 1e-12)
            XCTAssertEqual((interval["high"] as! NSNumber).doubleValue, expected[1], accuracy: 1e-12)
        }

        let html = try String(contentsOfFile: path("r.html"), encoding: .utf8)
        for needle in ["87.0%", "6.4%", "Confusion matrices", "Calibration", "class=\"bin\"", "data-metric=\"loss\"", "val_accuracy"] {
            XCTAssertTrue(html.contains(needle), "the page should show \(needle)")
        }
        // Self-contained: nothing to fetch, nothing to run.
        for banned in ["<script", "src=", "href=", "@import", "url(", "<link"] {
            XCTAssertFalse(html.lowercased().contains(banned), "the page should not contain \(banned)")
        }
        let addresses = html.components(separatedBy: "http").count - 1
        XCTAssertEqual(addresses, html.components(separatedBy: "http://www.w3.org/2000/svg").count - 1,
                       "only SVG namespace URIs may appear")
    }

    /// Keras's own CSVLogger file (fixtures/make_report_fixture.py) is a history the report draws.
    func testKerasCSVLoggerHistory() throws {
        let csv = fixturesDirectory.appendingPathComponent("report/keras_csvlogger.csv").path
        let r = try CLI.run(report(["--history", csv, "--speed-iterations", "0", "--output", path("r.html"), "--json", path("r.json")]))
        XCTAssertEqual(r.status, 0, r.stderr)
        let ours = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("r.json")))) as! [String: Any]
        let history = ours["history"] as! [[String: Any]]
        XCTAssertEqual(history.map { $0["epoch"] as? Int }, [0, 1])
        let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n").dropFirst()
        for (record, line) in zip(history, lines) {
            let cells = line.split(separator: ",").map { Double($0)! }   // epoch,accuracy,loss,val_accuracy,val_loss
            XCTAssertEqual((record["accuracy"] as! NSNumber).doubleValue, cells[1])
            XCTAssertEqual((record["loss"] as! NSNumber).doubleValue, cells[2])
            XCTAssertEqual((record["val_accuracy"] as! NSNumber).doubleValue, cells[3])
            XCTAssertEqual((record["val_loss"] as! NSNumber).doubleValue, cells[4])
        }
        XCTAssertNil((ours["teacher"] as! [String: Any])["speed"], "--speed-iterations 0 leaves the timing out")
        let html = try String(contentsOfFile: path("r.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("data-metric=\"accuracy\""))
        XCTAssertFalse(html.contains("images per second"))
    }

    func testBadInputsFailInOneLineBeforeWork() throws {
        assertCleanFailure(try CLI.run(report(["--history", path("none.csv"), "--output", path("r.html")])),
                           mentions: ["none.csv"])
        try "loss,accuracy\n1,0.5\n".write(toFile: path("bad.csv"), atomically: true, encoding: .utf8)
        assertCleanFailure(try CLI.run(report(["--history", path("bad.csv"), "--output", path("r.html")])),
                           mentions: ["bad.csv", "'epoch'"])
        let overInput = example.appendingPathComponent("data/test.csv").path
        assertCleanFailure(try CLI.run(report(["--output", path("r.html"), "--json", overInput])),
                           mentions: ["refusing to write over the input"])
        var wrongClasses = "image_id,a,b\n"
        for line in try String(contentsOf: example.appendingPathComponent("data/test.csv"), encoding: .utf8).split(separator: "\n").dropFirst().prefix(4) {
            wrongClasses += line.split(separator: ",")[0] + ",1,0\n"
        }
        try wrongClasses.write(toFile: path("two.csv"), atomically: true, encoding: .utf8)
        assertCleanFailure(try CLI.run(report(["--output", path("r.html")]).map { $0.hasSuffix("data/test.csv") ? path("two.csv") : $0 }),
                           mentions: ["teacher.h5", "10 outputs", "2 classes"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("r.html")))
    }
}
