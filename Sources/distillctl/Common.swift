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
        CommandWords.architectureFlag[model] = "--arch"
        return try LoadedModel.load(path: model, archPath: arch)
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
        let text = errorText(error).split(separator: "\n").joined(separator: " ")
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

/// An error's line, with the command line's option where a library leaves the remedy to its caller.
func errorText(_ error: Error) -> String {
    if let e = error as? RuntimeError, e.remedy == .labelColumns { return e.message + " with --y-cols" }
    guard let e = error as? GraphError, let remedy = e.remedy else { return String(describing: error) }
    switch remedy {
    case .architectureFile(let path):
        guard let flag = CommandWords.architectureFlag[path] else { return e.description }
        return e.message + "; pass \(flag) model.json (from model.to_json() or R's model_to_json())"
    case .kerasVersion(let target):
        guard CommandWords.choosesKerasVersion else { return e.description }
        switch target {
        case .both: return e.message + "; write it for one Keras version (--keras 2 or --keras 3)"
        case .keras2: return e.message + "; write it for Keras 2 only (--keras 2, a .h5 name)"
        case .keras3: return e.message + "; write it for Keras 3 only (--keras 3)"
        }
    }
}

/// How the running command names what the libraries leave to their caller.
enum CommandWords {
    /// The option giving the architecture of each model file the command reads, by path.
    nonisolated(unsafe) static var architectureFlag: [String: String] = [:]
    /// The command chooses the Keras version it writes for with --keras (convert).
    nonisolated(unsafe) static var choosesKerasVersion = false
    /// A model's flag and the flag of its architecture JSON.
    static let architectureFlags = ["MODEL": "--arch", "--student": "--student-arch", "--teacher": "--teacher-arch"]
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
        for (flag, path) in inputs { if let arch = CommandWords.architectureFlags[flag] { CommandWords.architectureFlag[path] = arch } }
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

/// One warning line on stderr when a model holds a NaN or infinite weight (its outputs will be
/// NaN where that weight reaches): inference commands still run, as Keras would.
func warnNonFinite(_ model: LoadedModel, path: String) {
    guard let bad = model.firstNonFiniteWeight() else { return }
    FileHandle.standardError.write(Data("distillctl: warning: \(path): \(bad.description); outputs it reaches will be NaN\n".utf8))
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
