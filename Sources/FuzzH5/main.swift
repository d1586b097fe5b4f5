// The fuzzing harness: feeds bytes to the model reader. Built by scripts/fuzz.sh with libFuzzer
// (coverage of the Swift code, AddressSanitizer); an ordinary build gets the replay mode only.
//
//   FuzzH5 h5|json [libFuzzer options] [CORPUS_DIR...]   fuzz (libFuzzer build)
//   FuzzH5 h5|json --replay FILE...                        run each file once, print the outcome
//
// h5:   the bytes are a model file: KerasH5File.read, then (full models) the config parse and
//       the weight binding, i.e. LoadedModel.load, exactly as `distillctl summary FILE` runs it.
// json: the bytes are an architecture JSON: ModelConfigParser.parse (graph, shapes, weights
//       specs) and the parameter counts, as `--arch FILE` runs it.
// An error thrown is the expected outcome for a bad input; a crash, hang (-timeout) or large
// allocation (-malloc_limit_mb, -rss_limit_mb) is a finding. scripts/fuzz.sh fuzzes with the
// reader's isolated child off (DISTILLCTL_NO_ISOLATION=1: every libhdf5 crash shows, at full
// speed) and then replays each finding with it on, as distillctl reads files: a finding that
// becomes a clean error there was contained; anything else is a crash of distillctl.
import CFuzzDriver
import Foundation
import Graph
import H5Model

enum Mode: String { case h5, json }

/// HDF5 needs a file: each input is written to this one path, in the temp folder, before reading.
let scratchPath = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/distillctl-fuzz-\(getpid()).h5"

/// Runs one input; returns the error message, or nil when the input was accepted.
func runOne(_ bytes: UnsafeRawBufferPointer, mode: Mode) -> String? {
    do {
        switch mode {
        case .h5:
            try writeScratch(bytes)
            let model = try LoadedModel.load(path: scratchPath)
            _ = model.graph.parameterCounts()
        case .json:
            let text = String(decoding: bytes, as: UTF8.self)
            let graph = try ModelConfigParser.parse(json: text, source: "fuzz.json")
            _ = graph.parameterCounts()
        }
        return nil
    } catch {
        let message = String(describing: error)
        // The command line's contract is one line per error; an empty one would tell the user nothing.
        precondition(!message.isEmpty, "an error with an empty message")
        return message
    }
}

func writeScratch(_ bytes: UnsafeRawBufferPointer) throws {
    let fd = open(scratchPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { throw H5ModelError("\(scratchPath): cannot write the fuzz input") }
    defer { close(fd) }
    var offset = 0
    while offset < bytes.count {
        let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        guard n > 0 else { throw H5ModelError("\(scratchPath): cannot write the fuzz input") }
        offset += n
    }
}

/// Each file once, with its outcome: "FILE: ok" or "FILE: error: MESSAGE".
func replay(_ files: [String], mode: Mode) -> Int32 {
    for file in files {
        guard let data = FileManager.default.contents(atPath: file) else {
            print("\(file): cannot read")
            return 1
        }
        let outcome = data.withUnsafeBytes { runOne($0, mode: mode) }
        print("\(file): \(outcome.map { "error: " + $0 } ?? "ok")")
    }
    return 0
}

var arguments = CommandLine.arguments
// libFuzzer's -fork mode re-runs this binary with its own options only: the mode travels in
// FUZZ_MODE to those jobs.
if arguments.count < 2 || Mode(rawValue: arguments[1]) == nil, let inherited = ProcessInfo.processInfo.environment["FUZZ_MODE"] {
    arguments.insert(inherited, at: 1)
}
guard arguments.count >= 2, let mode = Mode(rawValue: arguments[1]) else {
    FileHandle.standardError.write(Data("usage: FuzzH5 h5|json [libFuzzer options] [CORPUS...] | FuzzH5 h5|json --replay FILE...\n".utf8))
    exit(2)
}
if arguments.count >= 3 && arguments[2] == "--replay" {
    let status = replay(Array(arguments.dropFirst(3)), mode: mode)
    unlink(scratchPath)
    exit(status)
}

// libFuzzer sees the program name and its own options; the mode is ours. The callback is a C
// function pointer, so the mode travels in a global.
nonisolated(unsafe) var fuzzMode = mode
setenv("FUZZ_MODE", mode.rawValue, 1)
arguments.remove(at: 1)
var cArguments: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
var argc = Int32(arguments.count)
let status = cArguments.withUnsafeMutableBufferPointer { buffer -> Int32 in
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buffer.baseAddress
    return dctl_fuzz_run_driver(&argc, &argv) { data, size in
        _ = runOne(UnsafeRawBufferPointer(start: data, count: size), mode: fuzzMode)
        return 0
    }
}
unlink(scratchPath)
if status == -1 {
    FileHandle.standardError.write(Data("FuzzH5: built without libFuzzer (scripts/fuzz.sh builds it); --replay FILE... works in any build\n".utf8))
    exit(2)
}
exit(status)
