// `distillctl report`: the figures that say whether a student learned from its teacher and where
// it fails, for one labelled test set: accuracy with a 95% Wilson interval, agreement of the two
// models' top classes, per-class precision / recall / F1, confusion matrices, calibration
// (expected calibration error over 15 equal-width confidence bins, as Guo et al. 2017 and most
// tools compute it, and the bins of a reliability diagram), sizes and measured speed.
//
// Predictions are the argmax of the model's logits (the same class as the argmax of its softmax
// output, which is what Keras's accuracy takes); the confidence is the largest softmax
// probability of the logits, in Double.
import Foundation
import Graph

/// A proportion with its 95% Wilson score interval.
public struct Proportion: Sendable, Codable, Equatable {
    public var value: Double
    public var low: Double
    public var high: Double
    public var count: Int
    public var total: Int

    public init(_ count: Int, of total: Int) {
        self.count = count
        self.total = total
        guard total > 0 else { value = .nan; low = .nan; high = .nan; return }
        let z = 1.959963984540054, n = Double(total), p = Double(count) / n
        let denominator = 1 + z * z / n
        let centre = (p + z * z / (2 * n)) / denominator
        let half = z * (p * (1 - p) / n + z * z / (4 * n * n)).squareRoot() / denominator
        value = p
        low = max(0, centre - half)
        high = min(1, centre + half)
    }
}

public struct ClassFigures: Sendable, Codable, Equatable {
    public var name: String
    public var precision: Double
    public var recall: Double
    public var f1: Double
    /// Labelled images of this class.
    public var support: Int
}

/// One bin of a reliability diagram: images whose confidence is in (lower, upper].
public struct CalibrationBin: Sendable, Codable, Equatable {
    public var lower: Double
    public var upper: Double
    public var count: Int
    /// Fraction right among the bin's images (nil when empty).
    public var accuracy: Double?
    public var confidence: Double?
}

/// Measured speed on this machine (random inputs of the model's shape).
public struct SpeedFigures: Sendable, Codable, Equatable {
    public var imagesPerSecond: Double
    public var throughputBatchSize: Int
    public var latencyMedianMs: Double
    public var latencyP90Ms: Double
    public var threads: Int

    enum CodingKeys: String, CodingKey {
        case imagesPerSecond = "images_per_second", throughputBatchSize = "throughput_batch_size"
        case latencyMedianMs = "latency_median_ms", latencyP90Ms = "latency_p90_ms", threads
    }
}

/// One model's figures on the test set.
public struct ModelFigures: Sendable, Codable, Equatable {
    public var file: String
    public var name: String
    public var fileBytes: Int
    public var parameters: Int
    public var accuracy: Double
    public var accuracyInterval: Proportion
    public var macroF1: Double
    public var perClass: [ClassFigures]
    /// Rows: the true class; columns: the predicted class.
    public var confusion: [[Int]]
    public var expectedCalibrationError: Double
    public var reliability: [CalibrationBin]
    public var speed: SpeedFigures?

    enum CodingKeys: String, CodingKey {
        case file, name, fileBytes = "file_bytes", parameters, accuracy, accuracyInterval = "accuracy_95"
        case macroF1 = "macro_f1", perClass = "per_class", confusion, expectedCalibrationError = "ece"
        case reliability, speed
    }
}

public struct TestSetFigures: Sendable, Codable, Equatable {
    public var source: String
    public var images: Int
    public var labelled: Int
}

/// Everything the report shows; `--json` writes this.
public struct ReportFigures: Sendable, Encodable, Equatable {
    public var classes: [String]
    public var test: TestSetFigures
    public var teacher: ModelFigures
    public var student: ModelFigures
    /// Fraction of all test images (labelled or not) on which both models pick the same class.
    public var agreement: Double
    public var agreementInterval: Proportion
    /// The training history drawn on the page (not in the JSON as records: see `history`).
    public var historyRecords: [EpochRecord]?
    public var calibrationBins: Int

    /// Each epoch's metrics under Keras's names (`epoch`, `loss`, `val_accuracy`, ...), as in the CSV.
    public var history: [[String: Double]]? {
        historyRecords?.map { r in
            var row = ["epoch": Double(r.epoch)]
            for name in EpochRecord.metricNames { if let v = r.metric(name), v.isFinite { row[name] = v } }
            if let rate = r.learningRate { row["learning_rate"] = rate }
            return row
        }
    }

    enum CodingKeys: String, CodingKey {
        case classes, test, teacher, student, agreement, agreementInterval = "agreement_95", history
        case calibrationBins = "calibration_bins"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(classes, forKey: .classes)
        try c.encode(test, forKey: .test)
        try c.encode(teacher, forKey: .teacher)
        try c.encode(student, forKey: .student)
        try c.encode(agreement, forKey: .agreement)
        try c.encode(agreementInterval, forKey: .agreementInterval)
        try c.encodeIfPresent(history, forKey: .history)
        try c.encode(calibrationBins, forKey: .calibrationBins)
    }
}

/// The logits (or whatever the model outputs) of `session` for every image of `dataset`, in
/// order, [count, outputs]: images loaded as for training, never augmented.
public func predictions(of session: InferenceSession, on dataset: ImageDataset, batchSize: Int = 32) throws -> (values: [Float], outputs: Int) {
    let shape = session.inputShapes[0]
    guard shape.count == 3 else { throw RuntimeError("an image model is needed; the input is \(shape)") }
    let loader = try BatchLoader(dataset: dataset, options: LoaderOptions(height: shape[0], width: shape[1], channels: shape[2],
                                                                          batchSize: batchSize, shuffle: false))
    var values: [Float] = []
    var outputs = 0
    let stream = loader.epoch(0)
    while let batch = try stream.next() {
        let out = try session.run([batch.images], batchSize: batchSize)[0]
        outputs = out.itemCount
        values += out.data
    }
    return (values, outputs)
}

public enum ClassifierReport {
    public static let calibrationBins = 15

    /// Figures of one model from its logits [n, k] and the dataset's labels.
    static func figures(logits: [Float], dataset: ImageDataset, file: String, model: LoadedModel,
                        speed: SpeedFigures?) -> ModelFigures {
        let k = dataset.classCount, n = dataset.count
        let predicted = predictedClasses(logits, classes: k)
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: k), count: k)
        var correct = 0, labelled = 0
        var binCount = [Int](repeating: 0, count: calibrationBins), binRight = binCount
        var binConfidence = [Double](repeating: 0, count: calibrationBins)
        for i in 0..<n {
            guard let truth = label(dataset, i) else { continue }
            labelled += 1
            confusion[truth][predicted[i]] += 1
            let right = truth == predicted[i]
            if right { correct += 1 }
            let confidence = topProbability(logits, row: i, classes: k)
            let bin = calibrationBin(confidence)
            binCount[bin] += 1
            binConfidence[bin] += confidence
            if right { binRight[bin] += 1 }
        }
        var perClass: [ClassFigures] = []
        for c in 0..<k {
            let tp = confusion[c][c]
            let predictedAs = (0..<k).reduce(0) { $0 + confusion[$1][c] }
            let support = confusion[c].reduce(0, +)
            // Zero where undefined (no image predicted as, or of, the class), as scikit-learn.
            let precision = predictedAs > 0 ? Double(tp) / Double(predictedAs) : 0
            let recall = support > 0 ? Double(tp) / Double(support) : 0
            let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
            perClass.append(ClassFigures(name: dataset.classNames[c], precision: precision, recall: recall, f1: f1, support: support))
        }
        var ece = 0.0
        var bins: [CalibrationBin] = []
        for b in 0..<calibrationBins {
            let count = binCount[b]
            let accuracy = count > 0 ? Double(binRight[b]) / Double(count) : nil
            let confidence = count > 0 ? binConfidence[b] / Double(count) : nil
            if let accuracy, let confidence { ece += Double(count) / Double(max(1, labelled)) * abs(accuracy - confidence) }
            bins.append(CalibrationBin(lower: Double(b) / Double(calibrationBins), upper: Double(b + 1) / Double(calibrationBins),
                                       count: count, accuracy: accuracy, confidence: confidence))
        }
        let interval = Proportion(correct, of: labelled)
        return ModelFigures(file: file, name: model.graph.name, fileBytes: TeacherCache.fileSize(file),
                            parameters: model.graph.parameterCounts().total, accuracy: interval.value,
                            accuracyInterval: interval, macroF1: perClass.map(\.f1).reduce(0, +) / Double(max(1, k)),
                            perClass: perClass, confusion: confusion, expectedCalibrationError: ece, reliability: bins,
                            speed: speed)
    }

    /// The bin (lower, upper] holding a confidence; bin 0 also takes 0.
    static func calibrationBin(_ confidence: Double) -> Int {
        let scaled = confidence * Double(calibrationBins)
        return min(calibrationBins - 1, max(0, Int(scaled.rounded(.up)) - 1))
    }

    static func label(_ dataset: ImageDataset, _ i: Int) -> Int? {
        guard dataset.hasLabel[i] else { return nil }
        return Array(dataset.labelRow(i)).withUnsafeBufferPointer { Metrics.argmax($0.baseAddress!, dataset.classCount) }
    }

    static func predictedClasses(_ logits: [Float], classes k: Int) -> [Int] {
        logits.withUnsafeBufferPointer { p in (0..<logits.count / k).map { Metrics.argmax(p.baseAddress! + $0 * k, k) } }
    }

    /// The largest softmax probability of one row of logits: exp(max - logsumexp).
    static func topProbability(_ logits: [Float], row: Int, classes k: Int) -> Double {
        logits.withUnsafeBufferPointer { p in
            let x = p.baseAddress! + row * k
            return exp(Double(x[Metrics.argmax(x, k)]) - logSumExp(x, k))
        }
    }

    /// Runs both models over the test set and measures them. `speedIterations` 0 skips the timing.
    public static func make(teacher: LoadedModel, teacherFile: String, student: LoadedModel, studentFile: String,
                            test: ImageDataset, batchSize: Int, speedIterations: Int,
                            history: [EpochRecord]?) throws -> ReportFigures {
        let k = test.classCount
        guard test.labelledCount > 0 else { throw RuntimeError("\(test.source): no labelled images to measure accuracy on") }
        var figures: [ModelFigures] = []
        var predicted: [[Int]] = []
        for (model, file) in [(teacher, teacherFile), (student, studentFile)] {
            let session = try InferenceSession(model: model, logits: true)
            let (logits, outputs) = try predictions(of: session, on: test, batchSize: batchSize)
            guard outputs == k else { throw RuntimeError("\(file): the model gives \(outputs) outputs, \(test.source) has \(k) classes") }
            let speed = try speedIterations > 0 ? measure(session, batchSize: batchSize, iterations: speedIterations) : nil
            figures.append(Self.figures(logits: logits, dataset: test, file: file, model: model, speed: speed))
            predicted.append(predictedClasses(logits, classes: k))
        }
        let same = zip(predicted[0], predicted[1]).filter { $0 == $1 }.count
        let agreement = Proportion(same, of: test.count)
        return ReportFigures(classes: test.classNames,
                             test: TestSetFigures(source: test.source, images: test.count, labelled: test.labelledCount),
                             teacher: figures[0], student: figures[1], agreement: agreement.value,
                             agreementInterval: agreement, historyRecords: history, calibrationBins: calibrationBins)
    }

    /// Latency at batch 1 and throughput at `batchSize`, after a warm-up.
    static func measure(_ session: InferenceSession, batchSize: Int, iterations: Int) throws -> SpeedFigures {
        let single = try Benchmark.inference(session: session, batchSize: 1, iterations: iterations)
        let batched = try Benchmark.inference(session: session, batchSize: batchSize, iterations: max(3, iterations / 4))
        return SpeedFigures(imagesPerSecond: batched.imagesPerSecond, throughputBatchSize: batchSize,
                            latencyMedianMs: single.percentile(0.5) * 1000, latencyP90Ms: single.percentile(0.9) * 1000,
                            threads: RuntimeThreads.count)
    }

    /// The figures as JSON (keys sorted; nested: {"teacher": {"accuracy": ...}}).
    public static func json(_ figures: ReportFigures) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try encoder.encode(figures), as: UTF8.self) + "\n"
    }
}

extension EpochRecord {
    /// Reads a history CSV: distillctl's own (`--history`) or Keras's CSVLogger (`epoch`, `loss`,
    /// `accuracy`, `val_loss`, `val_accuracy`, ... in any order; unknown columns are ignored).
    public static func parseCSV(_ text: String, source: String) throws -> [EpochRecord] {
        let lines = text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
        guard let header = lines.first?.split(separator: ",", omittingEmptySubsequences: false)
                .map({ $0.trimmingCharacters(in: CharacterSet(charactersIn: "\" ")) }),
              let epochColumn = header.firstIndex(of: "epoch") else {
            throw RuntimeError("\(source): not a training history (no 'epoch' column in the first line)")
        }
        func column(_ names: String...) -> Int? { names.lazy.compactMap { header.firstIndex(of: $0) }.first }
        let columns = (loss: column("loss"), hard: column("hard_loss"), soft: column("soft_loss"),
                       accuracy: column("accuracy", "acc"), valLoss: column("val_loss"),
                       valAccuracy: column("val_accuracy", "val_acc"), rate: column("learning_rate", "lr"))
        return try lines.dropFirst().enumerated().map { i, line in
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            func value(_ c: Int?) throws -> Double? {
                guard let c, c < cells.count, !cells[c].isEmpty, cells[c] != "NA" else { return nil }
                guard let v = Double(cells[c]) else {
                    throw RuntimeError("\(source): row \(i + 2), column '\(header[c])': '\(cells[c])' is not a number")
                }
                return v
            }
            guard let epoch = try value(epochColumn) else { throw RuntimeError("\(source): row \(i + 2) has no epoch") }
            return EpochRecord(epoch: Int(epoch), loss: try value(columns.loss) ?? .nan, hardLoss: try value(columns.hard),
                               softLoss: try value(columns.soft), accuracy: try value(columns.accuracy),
                               valLoss: try value(columns.valLoss), valAccuracy: try value(columns.valAccuracy), seconds: 0,
                               learningRate: try value(columns.rate))
        }
    }
}
