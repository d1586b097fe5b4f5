import ArgumentParser
import Foundation
import Graph
import Runtime

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Compare a teacher and its student on a labelled test set: one self-contained HTML page (and JSON).",
        discussion: """
        The page (inline SVG and CSS, no script, nothing fetched from the network) shows each model's accuracy with a 95% Wilson interval, how often the two agree, per-class precision, recall and F1, both confusion matrices, calibration (expected calibration error over 15 equal-width confidence bins, and a reliability diagram), parameter counts, file sizes, images per second and latency measured on this machine, and the training curves of --history. Images are loaded as predict and distill load them; a model's prediction is the argmax of its output, as Keras's accuracy takes it. --json writes the same figures: {"teacher": {"accuracy": ...}, "student": {...}, "agreement": ...}.
        """)

    @Option(help: "The teacher: a full model (.h5 or .keras), or a weights-only file with --teacher-arch.")
    var teacher: String
    @Option(help: "Architecture JSON for a weights-only teacher.") var teacherArch: String?

    @Option(help: "The student: a full model (.h5 or .keras), or a weights-only file with --student-arch.")
    var student: String
    @Option(help: "Architecture JSON for a weights-only student.") var studentArch: String?

    @Option(help: "Labelled test images: a CSV (image_id + one-hot columns, or a label column) or a folder per class.")
    var test: String

    @OptionGroup var layout: CSVLayoutOptions

    @Option(help: "A training history to plot: distill's --history CSV, or Keras's CSVLogger file.")
    var history: String?

    @Option(help: "Where to write the HTML report.") var output: String
    @Option(help: "Where to write the figures as JSON.") var json: String?

    @Option(help: "Images per batch for the predictions and the throughput measurement.") var batchSize: Int = 32
    @Option(help: "Timed runs for the latency (batch 1; a quarter as many at --batch-size); 0 leaves the speed out.")
    var speedIterations: Int = 30
    @Option(help: "Threads (default: all cores).") var threads: Int?

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        guard speedIterations >= 0 else { throw ValidationError("--speed-iterations must be 0 or more") }
    }

    func run() throws {
        try reportingErrors {
            var files = FilePlan()
            files.input("--teacher", teacher)
            files.input("--teacher-arch", teacherArch)
            files.input("--student", student)
            files.input("--student-arch", studentArch)
            files.input("--test", test)
            files.input("--history", history)
            files.output("--output", output)
            files.output("--json", json)
            try files.check()
            _ = try ActiveRun.start(threads: threads)
            // Everything that can be wrong with the inputs is found before the first prediction.
            let teacherModel = try LoadedModel.load(path: teacher, archPath: teacherArch)
            let studentModel = try LoadedModel.load(path: student, archPath: studentArch)
            let testSet = try ImageDataset.load(test, options: layout.datasetOptions())
            files.inputs += testSet.files.map { ("--test", $0.path) }
            try files.check()
            let records = try history.map { path -> [EpochRecord] in
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                    throw ValidationError("\(path): cannot read the history")
                }
                return try EpochRecord.parseCSV(text, source: path)
            }
            for (model, file) in [(teacherModel, teacher), (studentModel, student)] {
                guard model.graph.outputs.count == 1 else {
                    throw ValidationError("\(file): the model has \(model.graph.outputs.count) outputs "
                                          + "(\(InferenceSession.outputNames(of: model.graph).joined(separator: ", "))); the report compares "
                                          + "classifiers with one output")
                }
                guard model.graph.inputs.count == 1 else {
                    throw ValidationError("\(file): the model takes \(model.graph.inputs.count) inputs; the report needs one image input")
                }
                let shape = model.graph.nodes[model.graph.inputs[0]].outputShape
                guard shape.count == 3 else { throw ValidationError("\(file): the input is \(shape), not an image") }
                let outputs = model.graph.nodes[model.graph.outputs[0]].outputShape.last ?? 0
                guard outputs == testSet.classCount else {
                    throw ValidationError("\(file): the model gives \(outputs) outputs, \(test) has \(testSet.classCount) classes")
                }
                let (_, bad) = try TrainingRun.checkImages(testSet, height: shape[0], width: shape[1], channels: shape[2], skipBad: false,
                                                           keepBytes: 0)
                precondition(bad.isEmpty)
            }
            let figures = try ClassifierReport.make(teacher: teacherModel, teacherFile: teacher, student: studentModel,
                                                    studentFile: student, test: testSet, batchSize: batchSize,
                                                    speedIterations: speedIterations, history: records)
            try ClassifierReport.html(figures).write(toFile: output, atomically: true, encoding: .utf8)
            if let json { try ClassifierReport.json(figures).write(toFile: json, atomically: true, encoding: .utf8) }
            print(String(format: "teacher accuracy %.4f, student accuracy %.4f, agreement %.4f (%d images); wrote %@%@",
                         figures.teacher.accuracy, figures.student.accuracy, figures.agreement, testSet.count, output,
                         json.map { " and \($0)" } ?? ""))
        }
    }
}
