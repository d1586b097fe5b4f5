import ArgumentParser
import Foundation
import Graph
import Runtime

/// The model arguments every command takes: a full-model file, or weights + `--arch`.
struct ModelOptions: ParsableArguments {
    @Argument(help: "A Keras file: a full model (.h5/.hdf5, Keras 3 .keras), or weights only (.h5, Keras 3 .weights.h5) together with --arch. The format is told by content.")
    var model: String

    @Option(name: .long, help: "Architecture JSON from model.to_json() (Python) or model_to_json() (R).")
    var arch: String?

    func load() throws -> LoadedModel {
        try LoadedModel.load(path: model, archPath: arch)
    }
}

/// The ranks of the running command (a single process unless started by mpirun).
enum ActiveRun {
    nonisolated(unsafe) static var collective: any Collective = SingleProcess()

    /// Joins the ranks (under mpirun) and sets the threads: `threads` when given, else the
    /// machine's cores shared among the ranks on it.
    static func start(threads: Int?) throws -> any Collective {
        let c = try Distributed.detect()
        collective = c
        if let threads {
            RuntimeThreads.set(threads)
        } else if c.isDistributed {
            RuntimeThreads.set(max(1, ProcessInfo.processInfo.activeProcessorCount / Distributed.localRanks()))
        }
        return c
    }
}

/// How a CSV of images is read (the blog post's layout by default), shared by `distill`, `train`
/// and `teacher-cache` so a cache is made from the images distill will read.
struct CSVLayoutOptions: ParsableArguments {
    @Option(help: "Folder the CSVs' file names are relative to (default: each CSV's folder).")
    var images: String?

    @Option(help: "CSV column naming the image files.")
    var xCol: String = "image_id"

    @Option(help: "Comma-separated one-hot label columns (default: every column but --x-col, or a 'label' column).")
    var yCols: String?

    func datasetOptions(classNames: [String]? = nil) -> DatasetOptions {
        var o = DatasetOptions()
        o.xColumn = xCol
        o.imageDirectory = images
        if let yCols { o.labels = .oneHot(yCols.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) }
        o.classNames = classNames
        return o
    }
}

/// Runs a command body; any error becomes one line on stderr and exit code 1. Under mpirun, an
/// error on any rank ends every rank (MPI_Abort): the others would wait for it forever. An error
/// that every rank meets alike (training stopped on a NaN) is printed by rank 0 alone.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        let text = String(describing: error).split(separator: "\n").joined(separator: " ")
        let collective = ActiveRun.collective
        guard collective.isDistributed else {
            FileHandle.standardError.write(Data("distillctl: error: \(text)\n".utf8))
            throw ExitCode(1)
        }
        if collective.isRoot || !(error is TrainingStopped) {
            FileHandle.standardError.write(Data("distillctl: error: rank \(collective.rank) of \(collective.size): \(text)\n".utf8))
        }
        if error is TrainingStopped {
            // Every rank stopped at the same step: end together, rank 0's message said it all.
            throw ExitCode(1)
        }
        collective.abort(code: 1)
    }
}
