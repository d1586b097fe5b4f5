// Training checkpoints: the student as a Keras full-model `.h5` (Keras loads it as it is), with
// everything needed to continue the run exactly (optimizer slots and step count, the position
// in the data, the epoch's partial sums, the history, the callbacks' state) attached in a group
// of its own, `distillctl_checkpoint`, that Keras's loaders never look at. Model and state are one
// file, written to a temporary name and renamed: a kill at any moment leaves the previous
// checkpoint whole.
import Foundation
import Graph
import H5Model

/// Sums over the batches of the epoch in progress (the epoch's figures are their means).
public struct EpochSums: Sendable, Equatable, Codable {
    public var loss = 0.0, hard = 0.0, soft = 0.0
    public var rows = 0, hardRows = 0, correct = 0, counted = 0
    public init() {}

    mutating func add(_ r: StepResult) {
        loss += Double(r.total) * Double(r.rows)
        soft += Double(r.soft ?? 0) * Double(r.rows)
        if let h = r.hard, r.counted > 0 {
            hard += Double(h) * Double(r.counted)
            hardRows += r.counted
        }
        rows += r.rows
        correct += r.correct
        counted += r.counted
    }

    var meanLoss: Double { loss / Double(max(1, rows)) }
    var meanHard: Double? { hardRows > 0 ? hard / Double(hardRows) : nil }
    var meanSoft: Double { soft / Double(max(1, rows)) }
    var accuracy: Double? { counted > 0 ? Double(correct) / Double(counted) : nil }
}

/// What a run must agree on to be continued from a checkpoint.
public struct RunIdentity: Sendable, Equatable, Codable {
    public var kind: String               // "distill" or "train"
    public var dataFingerprint: String    // ImageDataset.fingerprint of the (checked) training set
    public var images: Int
    public var batchSize: Int
    public var seed: UInt64
    public var augment: String?
    public var alpha: Double?
    public var temperature: Double?
    public var teacher: String?           // the teacher's name and parameter count
    public var loss: String?              // the logit loss of a distillation (SoftLoss.description)
    public var features: String?          // the feature pairs (FeaturePair.description, comma-separated)
}

/// What a resumed run may change: each as the run describes it, so a resumption can say what
/// changed. (Checkpoints written before these were recorded have none: nothing is reported.)
public struct RunSettings: Sendable, Equatable, Codable {
    public var epochs: Int
    /// The optimizer and its learning rate and schedule, as the caller describes them.
    public var learningRate: String?
    public var earlyStopping: String?
    public var reduceLROnPlateau: String?
}

/// Where a run stands, and what it has measured so far.
public struct RunState: Sendable, Equatable, Codable {
    public var format = 1
    public var identity: RunIdentity
    public var position = DataPosition(epoch: 0, batch: 0)
    /// Steps taken (the dropout masks' step index).
    public var step = 0
    public var sums = EpochSums()
    public var history: [EpochRecord] = []
    public var earlyStopping: EarlyStopping?
    public var reduceLR: ReduceLROnPlateau?
    public var best: BestValue?
    public var settings: RunSettings?
    /// True when the checkpoint was taken in the middle of an epoch (Ctrl-C).
    public var midEpoch: Bool { position.batch > 0 }

    public init(identity: RunIdentity) { self.identity = identity }
}

/// The optimizer's saved state without its arrays (those are datasets of the attachment).
struct OptimizerHeader: Codable {
    var optimizer: String
    var iterations: Int
    var learningRate: Float
    var slots: [String]
}

public struct TrainingCheckpoint {
    public static let group = "distillctl_checkpoint"
    public var model: LoadedModel
    public var state: RunState
    public var optimizer: OptimizerState
    /// The feature adaptors' weights (trained with the student, not part of it).
    public var adaptors: [NamedArray]

    public init(model: LoadedModel, state: RunState, optimizer: OptimizerState, adaptors: [NamedArray] = []) {
        self.model = model
        self.state = state
        self.optimizer = optimizer
        self.adaptors = adaptors
    }

    /// Writes the checkpoint atomically to `path`, or to each of `paths` with the file's contents
    /// made once (the student loads in Keras as it is).
    public func write(to path: String) throws { try write(to: [path]) }

    public func write(to paths: [String]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let header = OptimizerHeader(optimizer: optimizer.optimizer, iterations: optimizer.iterations,
                                     learningRate: optimizer.learningRate, slots: optimizer.slots.map(\.name))
        var arrays: [String: H5Array] = [:]
        for (i, slot) in optimizer.slots.enumerated() {
            arrays[String(format: "optimizer/%06d", i)] = H5Array(shape: [slot.values.count], values: .float32(slot.values))
        }
        var text = [
            "run_state": String(decoding: try encoder.encode(state), as: UTF8.self),
            "optimizer": String(decoding: try encoder.encode(header), as: UTF8.self),
        ]
        if !adaptors.isEmpty {
            text["adaptors"] = String(decoding: try encoder.encode(adaptors.map(\.name)), as: UTF8.self)
            for (i, a) in adaptors.enumerated() {
                arrays[String(format: "adaptor/%06d", i)] = H5Array(shape: [a.values.count], values: .float32(a.values))
            }
        }
        let attachment = H5Attachment(group: Self.group, text: text, arrays: arrays)
        let file = try model.exportFile(weightsOnly: false).file
        for path in paths { try file.write(to: path, attachment: attachment) }
    }

    /// Reads a checkpoint written by `write(to:)`.
    public static func read(path: String) throws -> TrainingCheckpoint {
        guard FileManager.default.fileExists(atPath: path) else {
            throw RuntimeError("\(path): no checkpoint there to resume from")
        }
        let model = try LoadedModel.load(path: path)
        guard let attachment = try H5Attachment.read(path: path, group: group) else {
            throw RuntimeError("\(path): a Keras model but not a distillctl checkpoint (no '\(group)' group)")
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        func decode<T: Decodable>(_ type: T.Type, _ key: String) throws -> T {
            guard let text = attachment.text[key] else { throw RuntimeError("\(path): checkpoint without '\(key)'") }
            do { return try decoder.decode(type, from: Data(text.utf8)) } catch {
                throw RuntimeError("\(path): checkpoint '\(key)' cannot be read (\(error))")
            }
        }
        let state = try decode(RunState.self, "run_state")
        guard state.format == 1 else { throw RuntimeError("\(path): checkpoint format \(state.format) is not supported") }
        let header = try decode(OptimizerHeader.self, "optimizer")
        var slots: [NamedArray] = []
        for (i, name) in header.slots.enumerated() {
            let key = String(format: "optimizer/%06d", i)
            guard let a = attachment.arrays[key] else { throw RuntimeError("\(path): checkpoint without '\(key)' (\(name))") }
            slots.append(NamedArray(name: name, values: a.floats))
        }
        var adaptors: [NamedArray] = []
        if attachment.text["adaptors"] != nil {
            for (i, name) in try decode([String].self, "adaptors").enumerated() {
                let key = String(format: "adaptor/%06d", i)
                guard let a = attachment.arrays[key] else { throw RuntimeError("\(path): checkpoint without '\(key)' (\(name))") }
                adaptors.append(NamedArray(name: name, values: a.floats))
            }
        }
        return TrainingCheckpoint(model: model, state: state,
                                  optimizer: OptimizerState(optimizer: header.optimizer, iterations: header.iterations,
                                                            learningRate: header.learningRate, slots: slots),
                                  adaptors: adaptors)
    }
}
