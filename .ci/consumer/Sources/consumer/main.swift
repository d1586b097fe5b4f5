// Loads a Keras model and its fixture's inputs through the libraries' public API, predicts, and
// compares with the outputs real Keras wrote into the fixture: the libraries work for a package
// that gets them by version, with SwiftPM's plain release build (no CPU flags: baseline x86-64).
//     consumer MODEL.h5 IO.h5   (IO.h5: datasets "input" and "output", as fixtures/cases/*/io.h5)
import Foundation
import Graph
import H5Model
import Runtime

let arguments = CommandLine.arguments
// The second form distils TEACHER into STUDENT for one epoch on the images of TRAIN.csv (in the
// folder IMAGES) with the library's training job, writes OUTPUT and measures it on TEST.csv.
if arguments.count == 8, arguments[1] == "distill" {
    do {
        var job = TrainingJob.Configuration(student: arguments[2], train: arguments[4], output: arguments[7])
        job.teachers = [try LoadedModel.load(path: arguments[3])]
        job.teacherWeights = [1]
        job.test = arguments[5]
        job.dataset.imageDirectory = arguments[6]
        job.run.epochs = 1
        job.run.batchSize = 32
        let result = try TrainingJob(job).run(reporter: nil)
        let written = try LoadedModel.load(path: arguments[7])
        guard let accuracy = result.studentTestAccuracy, written.graph.parameterCounts().total > 0 else {
            print("consumer: distill: no test accuracy")
            exit(1)
        }
        print("consumer: distilled one epoch, wrote \(arguments[7]), student test accuracy \(accuracy)")
        exit(0)
    } catch {
        print("consumer: \(error)")
        exit(1)
    }
}
guard arguments.count == 3 else {
    FileHandle.standardError.write("usage: consumer MODEL.h5 IO.h5 | consumer distill STUDENT TEACHER TRAIN.csv TEST.csv IMAGES OUTPUT\n".data(using: .utf8)!)
    exit(2)
}
do {
    let model = try LoadedModel.load(path: arguments[1])
    let io = try H5Arrays.read(path: arguments[2])
    guard let input = io["input"], let expected = io["output"] else {
        throw NSError(domain: "consumer", code: 1,
                      userInfo: [NSLocalizedDescriptionKey: "\(arguments[2]): no 'input' or 'output' dataset"])
    }
    let session = try InferenceSession(model: model)
    let output = try session.run([Tensor(shape: input.shape, data: input.floats)])[0]
    let want = expected.floats
    guard output.shape == expected.shape, output.data.count == want.count else {
        print("consumer: output shape \(output.shape), Keras's \(expected.shape)")
        exit(1)
    }
    // NaN counts as a failure: max() would skip it.
    let diffs = zip(output.data, want).map { abs(Double($0) - Double($1)) }
    let worst = diffs.contains { $0.isNaN } ? Double.nan : diffs.max() ?? 0
    let ok = !worst.isNaN && worst <= 1e-4
    print("consumer: \(URL(fileURLWithPath: arguments[1]).deletingLastPathComponent().lastPathComponent): "
          + "\(output.shape) predicted, max |difference| to Keras \(worst) (limit 1e-4): \(ok ? "ok" : "FAILED")")
    exit(ok ? 0 : 1)
} catch {
    print("consumer: \(error)")
    exit(1)
}
