// The run's controls: EarlyStopping against tf-keras 2.21 and Keras 3 (the callback fed scripted
// metric sequences, fixtures/make_training_math_fixtures.py), checkpoints that round-trip every
// number a resume needs, the Keras-style progress line, the SVG plot, and divergence detection.
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Graph
import H5Model
import TestSupport
import XCTest
@testable import Runtime

final class RunControlTests: XCTestCase {
    func testEarlyStoppingMatchesKeras() throws {
        var checked = 0
        for (file, _) in kerasFlavors {
            let cases = try loadTrainingFixture("schedules_\(file)")["early_stopping"] as! [[String: Any]]
            XCTAssertEqual(cases.count, 5)
            for c in cases {
                let config = c["config"] as! [String: Any]
                var early = try EarlyStopping(monitor: config["monitor"] as! String, patience: config["patience"] as! Int,
                                              minDelta: double(config["min_delta"])!,
                                              mode: MonitorMode(rawValue: config["mode"] as! String)!, restoreBestWeights: true)
                let stops = c["stop"] as! [Bool], best = ints(c["best_epoch"])
                for (epoch, value) in floats(c["metric"]).enumerated() {
                    let r = early.epochEnded(epoch, monitored: Double(value))
                    XCTAssertEqual(r.stop, stops[epoch], "\(file) \(c["name"]!) epoch \(epoch)")
                    XCTAssertEqual(early.bestEpoch, best[epoch], "\(file) \(c["name"]!) epoch \(epoch)")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 100)
    }

    func testBestValueIsStrictAndFollowsTheMode() {
        var loss = BestValue(monitor: "val_loss")
        XCTAssertTrue(loss.update(0, 1.0))
        XCTAssertFalse(loss.update(1, 1.0))
        XCTAssertTrue(loss.update(2, 0.5))
        XCTAssertFalse(loss.update(3, .nan))
        XCTAssertEqual(loss.epoch, 2)
        var acc = BestValue(monitor: "val_accuracy")
        XCTAssertTrue(acc.update(0, 0.5))
        XCTAssertFalse(acc.update(1, 0.4))
        XCTAssertTrue(acc.update(2, 0.6))
    }

    /// A checkpoint is a Keras file whose weights are the model's, plus the run state and every
    /// optimizer slot, read back exactly.
    func testCheckpointRoundTripsModelStateAndOptimizer() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_seed_mini" })
        let model = try LoadedModel.load(path: c.forms[0].model, archPath: c.forms[0].arch)
        let io = try H5Arrays.read(path: c.path(c.io)!)
        let x = Tensor(shape: io["input"]!.shape, data: io["input"]!.floats)
        let distiller = try Distiller(student: model, teacher: nil, optimizer: Adam(learningRate: .constant(1e-3)),
                                      config: DistillConfig())
        var labels = [Float](repeating: 0, count: x.batch * distiller.classes)
        for r in 0..<x.batch { labels[r * distiller.classes + r % distiller.classes] = 1 }
        for step in 0..<3 { _ = try distiller.step(x, labels: labels, index: step) }
        var state = RunState(identity: RunIdentity(kind: "train", dataFingerprint: "abc", images: 4, batchSize: 2, seed: 7,
                                                   augment: nil, alpha: nil, temperature: nil, teacher: nil))
        state.position = DataPosition(epoch: 1, batch: 1)
        state.step = 3
        state.sums.loss = 1.25
        state.history = [EpochRecord(epoch: 0, loss: 2, hardLoss: 2, softLoss: nil, accuracy: 0.5, valLoss: .infinity,
                                     valAccuracy: nil, seconds: 1, learningRate: 1e-3)]
        state.earlyStopping = try EarlyStopping(monitor: "loss", patience: 2)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("last.h5").path
        let checkpoint = TrainingCheckpoint(model: distiller.trainedModel(), state: state, optimizer: distiller.optimizer.state())
        try checkpoint.write(to: path)
        let back = try TrainingCheckpoint.read(path: path)
        XCTAssertEqual(back.state, state)
        XCTAssertEqual(back.optimizer, distiller.optimizer.state())
        XCTAssertEqual(back.optimizer.iterations, 3)
        let trained = distiller.trainedModel()
        // The export writes a nested Normalization's statistics into its config (Keras 3 needs that),
        // so the checkpoint's WeightStore lacks them; every other weight is there.
        let missing = Set(trained.weights.byLayer.keys).subtracting(back.model.weights.byLayer.keys)
        XCTAssertEqual(missing, ["efficientnet_mini/normalization"])
        for node in trained.graph.uniqueLayers where !missing.contains(node.layerKey) {
            XCTAssertEqual(back.model.weights.weights(of: node).map(\.floats), trained.weights.weights(of: node).map(\.floats),
                           node.layerKey)
        }
        // Not a checkpoint: a plain Keras file.
        XCTAssertThrowsError(try TrainingCheckpoint.read(path: c.forms[0].model)) {
            XCTAssertTrue("\($0)".contains("not a distillctl checkpoint"), "\($0)")
        }
        XCTAssertThrowsError(try TrainingCheckpoint.read(path: dir.appendingPathComponent("none.h5").path)) {
            XCTAssertTrue("\($0)".contains("no checkpoint there"), "\($0)")
        }
    }

    func testNonFiniteDetection() {
        var v = [Float](repeating: 1, count: 37)
        XCTAssertFalse(v.withUnsafeBufferPointer { hasNonFinite($0.baseAddress!, 37) })
        for i in [0, 8, 35, 36] {
            for bad in [Float.nan, .infinity, -.infinity] {
                v[i] = bad
                XCTAssertTrue(v.withUnsafeBufferPointer { hasNonFinite($0.baseAddress!, 37) }, "\(bad) at \(i)")
                v[i] = 1
            }
        }
        v[0] = .greatestFiniteMagnitude
        XCTAssertFalse(v.withUnsafeBufferPointer { hasNonFinite($0.baseAddress!, 37) })
    }

    /// A learning rate that blows the weights up stops the step with the step named, before the
    /// optimizer state is saved anywhere.
    func testDivergenceIsReportedWithTheStep() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_seed_mini" })
        let model = try LoadedModel.load(path: c.forms[0].model, archPath: c.forms[0].arch)
        let io = try H5Arrays.read(path: c.path(c.io)!)
        let x = Tensor(shape: io["input"]!.shape, data: io["input"]!.floats)
        let distiller = try Distiller(student: model, teacher: nil, optimizer: SGD(learningRate: .constant(1e30)),
                                      config: DistillConfig())
        var labels = [Float](repeating: 0, count: x.batch * distiller.classes)
        for r in 0..<x.batch { labels[r * distiller.classes + r % distiller.classes] = 1 }
        var stopped: TrainingDiverged?
        for step in 0..<20 {
            do { _ = try distiller.step(x, labels: labels, index: step) } catch let e as TrainingDiverged {
                stopped = e
                break
            }
        }
        let e = try XCTUnwrap(stopped, "a learning rate of 1e30 must diverge within 20 steps")
        XCTAssertTrue(e.description.contains("at step \(e.step + 1)"), e.description)
        XCTAssertTrue(["loss became", "gradient of", "weights exploded"].contains { e.reason.contains($0) }, e.reason)
    }

    func testProgressBarDrawsAsKeras() {
        XCTAssertEqual(KerasProgress.bar(0, 10), " 0/10 [..............................]")
        XCTAssertEqual(KerasProgress.bar(5, 10), " 5/10 [==============>...............]")
        XCTAssertEqual(KerasProgress.bar(10, 10), "10/10 [==============================]")
        XCTAssertEqual(KerasProgress.eta(42), "42s")
        XCTAssertEqual(KerasProgress.eta(125), "2:05")
        XCTAssertEqual(KerasProgress.eta(3725), "1:02:05")
        XCTAssertEqual(KerasProgress.format([("loss", 0.51234), ("lr", 0.0001)]), " - loss: 0.5123 - lr: 1.0000e-04")
        var piped = ""
        let p = KerasProgress(terminal: false) { piped += $0 }
        p.epochBegan(0, of: 2, batches: 94)
        p.batchEnded(3, of: 94, secondsPerBatch: 0.1, logs: [("loss", 1)])
        p.epochEnded(EpochRecord(epoch: 0, loss: 0.25, hardLoss: 0.2, softLoss: 0.5, accuracy: 0.75, valLoss: 0.3,
                                 valAccuracy: 0.7, seconds: 12.4), batches: 94)
        XCTAssertEqual(piped, "Epoch 1/2\n94/94 - 12s - loss: 0.2500 - hard_loss: 0.2000 - soft_loss: 0.5000 - accuracy: 0.7500"
                       + " - val_loss: 0.3000 - val_accuracy: 0.7000\n")
        var tty = ""
        let t = KerasProgress(terminal: true) { tty += $0 }
        t.epochBegan(0, of: 1, batches: 94)
        t.batchEnded(47, of: 94, secondsPerBatch: 0.5, logs: [("loss", 1)])
        XCTAssertTrue(tty.contains("\r47/94 [==============>...............] - ETA: 24s - loss: 1.0000"), tty)
    }

    /// The plot is well-formed SVG with one line per measured series, one point per epoch.
    func testPlotHasASeriesPerMetric() throws {
        let history = (0..<4).map {
            EpochRecord(epoch: $0, loss: 2 - Double($0) * 0.3, hardLoss: 1.5, softLoss: 3 - Double($0), accuracy: 0.5 + Double($0) * 0.1,
                        valLoss: 1.9, valAccuracy: nil, seconds: 1)
        }
        let svg = TrainingPlot.svg(history)
        final class Collector: NSObject, XMLParserDelegate {
            var series: [String: Int] = [:]
            func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                        attributes: [String: String] = [:]) {
                if name == "polyline", let n = attributes["data-name"] {
                    series[n] = attributes["points"]!.split(separator: " ").count
                }
            }
        }
        let parser = XMLParser(data: Data(svg.utf8))
        let collector = Collector()
        parser.delegate = collector
        XCTAssertTrue(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "")")
        XCTAssertEqual(collector.series, ["total loss": 4, "hard (student) loss": 4, "soft (distillation) loss": 4,
                                          "val_loss": 4, "accuracy": 4])
    }
}
