import Foundation

/// One epoch's figures, each computed over that epoch only (the seed's R loop never reset its
/// accuracy metric, so its "epoch accuracy" was a running mean).
public struct EpochRecord: Sendable, Equatable {
    public var epoch: Int
    public var loss: Double
    public var hardLoss: Double?
    public var softLoss: Double?
    public var accuracy: Double?
    public var valLoss: Double?
    public var valAccuracy: Double?
    public var seconds: Double
}

public struct TrainingRunOptions: Sendable {
    public var epochs = 10
    public var batchSize = 8
    public var seed: UInt64 = 0
    public var augment: AugmentConfig? = nil
    public var skipBadImages = false
    public init() {}
}

/// The epoch loop: shuffled batches (the last partial one included) through the distiller, the
/// validation set in full after each epoch, and a record per epoch.
public final class TrainingRun {
    public let distiller: Distiller
    public let train: ImageDataset
    public let validation: ImageDataset?
    public let options: TrainingRunOptions
    public private(set) var history: [EpochRecord] = []

    public init(distiller: Distiller, train: ImageDataset, validation: ImageDataset?, options: TrainingRunOptions) throws {
        self.distiller = distiller
        self.train = train
        self.validation = validation
        self.options = options
        // A wholly unlabelled set (no class columns) teaches through the soft loss alone.
        guard train.classCount == distiller.classes || (train.classCount == 0 && distiller.teacher != nil) else {
            throw RuntimeError("\(train.source): \(train.classCount) classes, but the student has \(distiller.classes) outputs")
        }
    }

    /// The student's input (height, width, channels).
    var imageShape: (Int, Int, Int) {
        let s = distiller.student.graph.nodes[distiller.student.graph.inputs[0]].outputShape
        return (s[0], s[1], s[2])
    }

    /// The same run over data whose images all decode: every image is decoded once up front; bad
    /// ones stop the run with their list, or are left out with `skipBadImages`.
    public func checkingImages() throws -> TrainingRun {
        try TrainingRun(distiller: distiller, train: preflight(train), validation: validation.map(preflight),
                        options: options)
    }

    func preflight(_ dataset: ImageDataset) throws -> ImageDataset {
        let (h, w, c) = imageShape
        let bad = preflightCheck(dataset, height: h, width: w, channels: c)
        guard !bad.isEmpty else { return dataset }
        guard options.skipBadImages else { throw RuntimeError(badImagesMessage(bad, source: dataset.source)) }
        return try dataset.removing(paths: Set(bad.map(\.file.path)))
    }

    public func run(report: (String) -> Void, epochEnded: (EpochRecord) throws -> Void = { _ in }) throws {
        let (h, w, c) = imageShape
        var loaderOptions = LoaderOptions(height: h, width: w, channels: c, batchSize: options.batchSize, shuffle: true,
                                          seed: options.seed, augment: options.augment)
        loaderOptions.badImages = options.skipBadImages ? .skip : .fail
        let loader = try BatchLoader(dataset: train, options: loaderOptions)
        var step = 0
        for epoch in 0..<options.epochs {
            let start = Date()
            var sums = (loss: 0.0, hard: 0.0, soft: 0.0, rows: 0, hardRows: 0, correct: 0, counted: 0)
            let stream = loader.epoch(epoch)
            var batchIndex = 0
            while let batch = try stream.next() {
                let labels = train.classCount == 0 ? [Float](repeating: 0, count: batch.count * distiller.classes)
                                                   : batch.labels.data
                let r = try distiller.step(batch.images, labels: labels, index: step)
                step += 1
                batchIndex += 1
                sums.loss += Double(r.total) * Double(r.rows)
                sums.soft += Double(r.soft ?? 0) * Double(r.rows)
                if let hard = r.hard, r.counted > 0 { sums.hard += Double(hard) * Double(r.counted); sums.hardRows += r.counted }
                sums.rows += r.rows
                sums.correct += r.correct
                sums.counted += r.counted
                report(progressLine(epoch: epoch, batch: batchIndex, of: loader.batchesPerEpoch, start: start,
                                    loss: sums.loss / Double(max(1, sums.rows))))
            }
            var record = EpochRecord(
                epoch: epoch, loss: sums.loss / Double(max(1, sums.rows)),
                hardLoss: sums.hardRows > 0 ? sums.hard / Double(sums.hardRows) : nil,
                softLoss: distiller.teacher == nil ? nil : sums.soft / Double(max(1, sums.rows)),
                accuracy: sums.counted > 0 ? Double(sums.correct) / Double(sums.counted) : nil,
                valLoss: nil, valAccuracy: nil, seconds: 0)
            if let validation {
                let (loss, accuracy) = try evaluate(validation)
                record.valLoss = loss
                record.valAccuracy = accuracy
            }
            record.seconds = Date().timeIntervalSince(start)
            history.append(record)
            report(epochLine(record))
            try epochEnded(record)
        }
    }

    /// Cross-entropy and accuracy of the student over a whole dataset, in order, inference mode.
    public func evaluate(_ dataset: ImageDataset) throws -> (loss: Double, accuracy: Double?) {
        let (h, w, c) = imageShape
        let loader = try BatchLoader(dataset: dataset, options: LoaderOptions(height: h, width: w, channels: c,
                                                                              batchSize: options.batchSize, shuffle: false))
        var loss = 0.0, rows = 0, correct = 0, counted = 0
        let stream = loader.epoch(0)
        while let batch = try stream.next() {
            let r = try distiller.evaluate(batch.images, labels: batch.labels.data)
            loss += Double(r.total) * Double(r.rows)
            rows += r.rows
            correct += r.correct
            counted += r.counted
        }
        return (loss / Double(max(1, rows)), counted > 0 ? Double(correct) / Double(counted) : nil)
    }

    func progressLine(epoch: Int, batch: Int, of total: Int, start: Date, loss: Double) -> String {
        let elapsed = Date().timeIntervalSince(start)
        let eta = elapsed / Double(batch) * Double(total - batch)
        return String(format: "epoch %d/%d  %d/%d  loss %.4f  ETA %.0fs", epoch + 1, options.epochs, batch, total, loss, eta)
    }

    func epochLine(_ r: EpochRecord) -> String {
        var parts = [String(format: "epoch %d/%d  %.1fs  loss %.4f", r.epoch + 1, options.epochs, r.seconds, r.loss)]
        if let v = r.hardLoss { parts.append(String(format: "hard %.4f", v)) }
        if let v = r.softLoss { parts.append(String(format: "soft %.4f", v)) }
        if let v = r.accuracy { parts.append(String(format: "accuracy %.4f", v)) }
        if let v = r.valLoss { parts.append(String(format: "val_loss %.4f", v)) }
        if let v = r.valAccuracy { parts.append(String(format: "val_accuracy %.4f", v)) }
        return parts.joined(separator: "  ")
    }
}

extension EpochRecord {
    /// Keras CSVLogger's layout: `epoch` then the metric names sorted; empty where not measured.
    public static func csv(_ records: [EpochRecord]) -> String {
        let header = "epoch,accuracy,hard_loss,loss,soft_loss,val_accuracy,val_loss"
        func f(_ v: Double?) -> String { v.map { String(format: "%.8g", $0) } ?? "" }
        let rows = records.map { r in
            [String(r.epoch), f(r.accuracy), f(r.hardLoss), f(r.loss), f(r.softLoss), f(r.valAccuracy), f(r.valLoss)]
                .joined(separator: ",")
        }
        return ([header] + rows).joined(separator: "\n") + "\n"
    }
}

/// Accuracy of any model (e.g. the teacher) on a labelled dataset: argmax of its outputs against
/// the labels, images loaded as for training but never augmented.
public func accuracy(of session: InferenceSession, on dataset: ImageDataset, batchSize: Int = 32) throws -> Double {
    let shape = session.inputShapes[0]
    guard shape.count == 3 else { throw RuntimeError("accuracy needs an image model; the input is \(shape)") }
    let loader = try BatchLoader(dataset: dataset, options: LoaderOptions(height: shape[0], width: shape[1], channels: shape[2],
                                                                          batchSize: batchSize, shuffle: false))
    var correct = 0, counted = 0
    let stream = loader.epoch(0)
    while let batch = try stream.next() {
        let out = try session.run([batch.images], batchSize: batchSize)[0]
        let k = dataset.classCount
        guard out.itemCount == k else {
            throw RuntimeError("\(dataset.source): \(k) classes, the model gives \(out.itemCount) outputs")
        }
        let r = out.data.withUnsafeBufferPointer {
            Metrics.correctPredictions(outputs: $0, targets: .distribution(batch.labels.data), classes: k)
        }
        correct += r.correct
        counted += r.counted
    }
    guard counted > 0 else { throw RuntimeError("\(dataset.source): no labelled images") }
    return Double(correct) / Double(counted)
}
