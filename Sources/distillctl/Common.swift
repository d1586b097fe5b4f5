import ArgumentParser
import Foundation
import Graph
import H5Model
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

    /// The model's files as the inputs of a command's file plan.
    func filePlan() -> FilePlan {
        var plan = FilePlan()
        plan.input("MODEL", model)
        plan.input("--arch", arch)
        return plan
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
        if let threads = try threadCount(threads) {
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

/// An error of the command line's own, printed as it is.
struct CommandLineError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What a command reads and where it writes, checked before it does any work: no output is an
/// input or another output, an existing side file (named after an output rather than by the user)
/// is kept unless `--overwrite`, and every output's folder exists and takes a new file. Each path
/// goes with the flag that named it, so a refusal says which argument to change.
struct FilePlan {
    var inputs: [(flag: String, path: String)] = []
    /// Files the user named: replaced when they exist.
    var outputs: [(flag: String, path: String)] = []
    /// Files named after another output (the JSON beside `--output m.weights.h5`).
    var sideFiles: [(flag: String, path: String)] = []
    /// Folders created when missing (checkpoints).
    var folders: [(flag: String, path: String)] = []
    /// Files written later into those folders: compared with the inputs, their folders checked instead.
    var laterFiles: [(flag: String, path: String)] = []
    var overwrite = false

    mutating func input(_ flag: String, _ path: String?) { if let path { inputs.append((flag, path)) } }
    mutating func output(_ flag: String, _ path: String?) { if let path { outputs.append((flag, path)) } }

    /// Checks paths only: call it before reading anything.
    func check() throws {
        let written = outputs + sideFiles
        let flagOf = Dictionary((written + laterFiles + folders).map { ($0.path, $0.flag) }, uniquingKeysWith: { a, _ in a })
        let inputFlag = Dictionary(inputs.map { ($0.path, $0.flag) }, uniquingKeysWith: { a, _ in a })
        do {
            try OutputPaths.checkDistinct(outputs: (written + laterFiles).map(\.path), inputs: inputs.map(\.path))
            for folder in folders { try OutputPaths.checkFolderLocation(folder.path) }
            for file in written { try OutputPaths.checkLocation(file.path) }
            if !overwrite { for side in sideFiles { try OutputPaths.checkAbsent(side.path) } }
        } catch let e as OutputPathError {
            let flag = flagOf[e.path].map { "\($0) " } ?? ""
            switch e.kind {
            case .sameAsInput(let input):
                throw CommandLineError("\(flag)\(e.path): refusing to write over the input file '\(input)'"
                                       + (inputFlag[input].map { " (\($0))" } ?? "") + "; choose another path")
            case .sameAsOutput(let other):
                // The later of the two names the error; the earlier is the one it collides with.
                let all = written + laterFiles
                let later = all.last { $0.path == e.path }.map { "\($0.flag) " } ?? ""
                let earlier = all.first { $0.path == other }.map { " (\($0.flag))" } ?? ""
                throw CommandLineError("\(later)\(e.path): the same file as '\(other)'\(earlier); give each output its own path")
            case .wouldReplace:
                throw CommandLineError("\(e.path): already exists (\(flagOf[e.path] ?? "an output") would replace it); "
                                       + "--overwrite replaces it")
            default:
                throw CommandLineError("\(flag)\(e.description)")
            }
        }
    }

    /// Checks the file systems have room for the outputs, given their estimated sizes: call it
    /// once the sizes are known (after loading the model), before the long work.
    func checkSpace(_ sizes: [(path: String, bytes: Int)]) throws {
        do { try OutputPaths.checkSpace(sizes) } catch let e as OutputPathError {
            let flag = (outputs + sideFiles + folders + laterFiles).first { $0.path == e.path }.map { "\($0.flag) " } ?? ""
            throw CommandLineError("\(flag)\(e.description)")
        }
    }
}

/// About the bytes a Keras file of `model` takes: float32 weights plus the config (twice: the
/// model config and the architecture JSON are near copies) and HDF5's headers (a few kB per weight
/// and layer: object headers, names, attributes).
func estimatedFileBytes(_ model: LoadedModel) -> Int {
    let weights = model.weights.byLayer.values.reduce(0) { $0 + $1.count }
    return model.graph.parameterCounts().total * 4 + model.configJSON.utf8.count * 2
        + 2048 * (weights + model.weights.byLayer.count) + 16 * 1024
}

/// One warning line on stderr when a model holds a NaN or infinite weight (its outputs will be
/// NaN where that weight reaches): inference commands still run, as Keras would.
func warnNonFinite(_ model: LoadedModel, path: String) {
    guard let bad = model.firstNonFiniteWeight() else { return }
    FileHandle.standardError.write(Data("distillctl: warning: \(path): \(bad.description); outputs it reaches will be NaN\n".utf8))
}

/// Training cannot start from a NaN or infinite weight: refused naming the file and the weight.
func refuseNonFinite(_ model: LoadedModel, path: String, role: String) throws {
    guard let bad = model.firstNonFiniteWeight() else { return }
    throw CommandLineError("\(path): the \(role)'s \(bad.description); training cannot start from it")
}

/// `--threads` within a sane bound: more workers than 4 per core only add plans (each with its
/// own buffers) and hand-overs, so a typo like 100000 is lowered to that bound, said on stderr.
func threadCount(_ requested: Int?) throws -> Int? {
    guard let n = requested else { return nil }
    guard n > 0 else { throw CommandLineError("--threads \(n): must be positive") }
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let bound = 4 * cores
    guard n > bound else { return n }
    FileHandle.standardError.write(Data("distillctl: note: --threads \(n) is more than 4 per core (\(cores) cores); using \(bound)\n".utf8))
    return bound
}

func setThreads(_ requested: Int?) throws {
    if let n = try threadCount(requested) { RuntimeThreads.set(n) }
}
