import Foundation
import H5Model
import TestSupport
import XCTest

/// What a careless or unlucky user does, run through the built binary, one row per mistake. Every
/// row checks the exit code, the one line on stderr (what it names), that no input changed (SHA-256
/// before and after), that no temporary or probe file is left in the folders involved, and that
/// the process was not killed by a signal.
final class HostileInputTests: XCTestCase {
    var temp: URL!
    /// A small tmpfs (200 kB) mounted for the full-disk rows when running as root.
    var full: URL?

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("cli-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let full { _ = try? run("/bin/umount", [full.path]) }
        try? FileManager.default.removeItem(at: temp)
    }

    // MARK: the table

    struct Row {
        var what: String
        var args: [String]
        var exit: Int32
        /// One entry per expected stderr line: the substrings that line must contain.
        var lines: [[String]]
        /// Files that must be byte-for-byte the same afterwards (besides the common inputs).
        var unchanged: [String] = []
        var environment: [String: String] = [:]
        /// The run must stop before training (no epoch printed).
        var noTraining = true
    }

    func testHostileInputTable() throws {
        // The hash the rows rely on, against FIPS 180-4's "abc" vector.
        XCTAssertEqual(SHA256.hex(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let f = try Files(temp)
        var rows: [Row] = []
        let common = f.inputs
        let distill = ["distill", "--teacher", f.teacher, "--student", f.student, "--train", f.trainCSV, "--epochs", "1", "--batch-size", "4"]
        let train = ["train", "--student", f.student, "--train", f.trainCSV, "--epochs", "1", "--batch-size", "4"]
        let out = f.path("out/s.h5")

        // Outputs that are inputs: every subcommand that writes, every output flag.
        rows += [
            Row(what: "distill --output is the teacher", args: distill + ["--output", f.teacher], exit: 1,
                lines: [["--output \(f.teacher): refusing to write over the input file", "(--teacher)"]]),
            Row(what: "distill --output is the student", args: distill + ["--output", f.student], exit: 1,
                lines: [["--output \(f.student): refusing to write over the input file", "(--student)"]]),
            Row(what: "distill --history is the teacher", args: distill + ["--output", out, "--history", f.teacher], exit: 1,
                lines: [["--history \(f.teacher): refusing to write over the input file"]]),
            Row(what: "distill --plot is the teacher", args: distill + ["--output", out, "--plot", f.teacher], exit: 1,
                lines: [["--plot \(f.teacher): refusing to write over the input file"]]),
            Row(what: "distill --history is the training CSV", args: distill + ["--output", out, "--history", f.trainCSV], exit: 1,
                lines: [["--history \(f.trainCSV): refusing", "(--train)"]]),
            Row(what: "distill --output is a training image", args: distill + ["--output", f.images[0]], exit: 1,
                lines: [["--output \(f.images[0]): refusing to write over the input file"]]),
            Row(what: "distill --output through a symbolic link to the teacher", args: distill + ["--output", f.link], exit: 1,
                lines: [["--output \(f.link): refusing to write over the input file '\(f.teacher)'"]]),
            Row(what: "distill --output through a hard link to the teacher", args: distill + ["--output", f.hardLink], exit: 1,
                lines: [["--output \(f.hardLink): refusing"]]),
            Row(what: "distill --output with .. reaching the teacher", args: distill + ["--output", f.path("data/../teacher.h5")], exit: 1,
                lines: [["refusing to write over the input file '\(f.teacher)'"]]),
            Row(what: "distill --checkpoint-dir holding the student as best.h5",
                args: ["distill", "--teacher", f.teacher, "--student", f.checkpointStudent, "--train", f.trainCSV,
                       "--output", out, "--checkpoint-dir", f.path("ck")], exit: 1,
                lines: [["--checkpoint-dir \(f.checkpointStudent): refusing to write over the input file", "(--student)"]],
                unchanged: [f.checkpointStudent]),
            Row(what: "distill --output and --history the same new file", args: distill + ["--output", out, "--history", out], exit: 1,
                lines: [["--history \(out): the same file as '\(out)' (--output)"]]),
            Row(what: "distill --teacher-cache written over", args: ["distill", "--teacher-cache", f.cache, "--student", f.student,
                                                                     "--train", f.trainCSV, "--output", f.cache], exit: 1,
                lines: [["--output \(f.cache): refusing", "(--teacher-cache)"]], unchanged: [f.cache]),
            Row(what: "train --output is the student", args: train + ["--output", f.student], exit: 1,
                lines: [["--output \(f.student): refusing"]]),
            Row(what: "train --plot is the validation CSV", args: train + ["--val", f.valCSV, "--output", out, "--plot", f.valCSV], exit: 1,
                lines: [["--plot \(f.valCSV): refusing", "(--val)"]]),
            Row(what: "teacher-cache --output is the teacher", args: ["teacher-cache", "--teacher", f.teacher, "--train", f.trainCSV,
                                                                      "--output", f.teacher], exit: 1,
                lines: [["--output \(f.teacher): refusing"]]),
            Row(what: "teacher-cache --output is the CSV", args: ["teacher-cache", "--teacher", f.teacher, "--train", f.trainCSV,
                                                                  "--output", f.trainCSV], exit: 1,
                lines: [["--output \(f.trainCSV): refusing"]]),
            Row(what: "teacher-cache --output is an image", args: ["teacher-cache", "--teacher", f.teacher, "--train", f.trainCSV,
                                                                   "--output", f.images[1]], exit: 1,
                lines: [["--output \(f.images[1]): refusing"]]),
            Row(what: "predict --output is the model", args: ["predict", f.model, "--input", f.x, "--output", f.model], exit: 1,
                lines: [["--output \(f.model): refusing", "(MODEL)"]]),
            Row(what: "predict --output is the input .npy", args: ["predict", f.model, "--input", f.x, "--output", f.x], exit: 1,
                lines: [["--output \(f.x): refusing", "(--input)"]]),
            Row(what: "predict --output is the --arch JSON", args: ["predict", f.weights, "--arch", f.arch, "--input", f.x, "--output", f.arch],
                exit: 1, lines: [["--output \(f.arch): refusing", "(--arch)"]]),
            Row(what: "predict --output is the images CSV", args: ["predict", f.student, "--images", f.trainCSV, "--output", f.trainCSV],
                exit: 1, lines: [["--output \(f.trainCSV): refusing"]]),
            Row(what: "predict --output is one of the images", args: ["predict", f.student, "--images", f.trainCSV, "--output", f.images[2]],
                exit: 1, lines: [["--output \(f.images[2]): refusing"]]),
            Row(what: "convert --output is the model", args: ["convert", f.model, "--output", f.model], exit: 1,
                lines: [["--output \(f.model): refusing"]]),
            Row(what: "convert --output is the weights", args: ["convert", f.weights, "--arch", f.arch, "--output", f.weights], exit: 1,
                lines: [["--output \(f.weights): refusing"]]),
            Row(what: "convert --arch-output is the --arch JSON",
                args: ["convert", f.weights, "--arch", f.arch, "--output", f.path("o.weights.h5"), "--arch-output", f.arch], exit: 1,
                lines: [["--arch-output \(f.arch): refusing", "(--arch)"]]),
            Row(what: "convert's JSON named after --output would be the --arch JSON",
                args: ["convert", f.weights, "--arch", f.arch, "--output", f.path("model.weights.h5")], exit: 1,
                lines: [["architecture JSON named after --output \(f.arch): refusing"]]),
        ]

        // A file the user did not name is kept.
        rows += [
            Row(what: "convert beside the user's own JSON", args: ["convert", f.model, "--output", f.path("mine.weights.h5")], exit: 1,
                lines: [["\(f.userJSON): already exists", "--overwrite"]], unchanged: [f.userJSON]),
        ]

        // Output locations, checked before any work.
        rows += [
            Row(what: "distill --output in a missing folder", args: distill + ["--output", f.path("missing_folder/s.h5")], exit: 1,
                lines: [["--output \(f.path("missing_folder/s.h5")): cannot write: folder '\(f.path("missing_folder"))' does not exist"]]),
            Row(what: "distill --history in a missing folder", args: distill + ["--output", out, "--history", f.path("nope/h.csv")], exit: 1,
                lines: [["--history", "does not exist"]]),
            Row(what: "distill --checkpoint-dir is a file", args: distill + ["--output", out, "--checkpoint-dir", f.arch], exit: 1,
                lines: [["--checkpoint-dir", "is not a folder"]]),
            Row(what: "convert --output is a folder", args: ["convert", f.model, "--output", f.path("out")], exit: 1,
                lines: [["--output \(f.path("out")): is a folder"]]),
            Row(what: "predict --output below a regular file", args: ["predict", f.model, "--input", f.x, "--output", f.model + "/y.npy"],
                exit: 1, lines: [["--output", "is not a folder"]]),
        ]

        // Resources.
        rows += [
            Row(what: "bench --batch-size 100000000", args: ["bench", f.student, "--batch-size", "100000000", "--iterations", "1"], exit: 1,
                lines: [["bench --batch-size 100000000 needs about", "of memory; this machine has"]]),
            Row(what: "bench --threads 100000", args: ["bench", f.model, "--threads", "100000", "--iterations", "1"], exit: 0,
                lines: [["--threads 100000 is more than 4 per core", "using"]]),
            Row(what: "predict --threads 0", args: ["predict", f.model, "--input", f.x, "--output", f.path("y.npy"), "--threads", "0"], exit: 1,
                lines: [["--threads 0: must be positive"]]),
            Row(what: "predict --batch-size 100000000 on a small input runs", args: ["predict", f.model, "--input", f.x, "--output",
                                                                                     f.path("out/y.npy"), "--batch-size", "100000000"],
                exit: 0, lines: []),
        ]

        // Usage errors: one line and where the help is.
        rows += [
            Row(what: "bench --batch-size -1", args: ["bench", f.model, "--batch-size", "-1"], exit: 64,
                lines: [["--batch-size -1: a negative number is not a valid value (see 'distillctl bench --help')"]]),
            Row(what: "an unknown flag", args: ["bench", f.model, "--bogus"], exit: 64,
                lines: [["--bogus", "(see 'distillctl bench --help')"]]),
            Row(what: "a missing required option", args: ["convert", f.model], exit: 64,
                lines: [["--output", "(see 'distillctl convert --help')"]]),
            Row(what: "a value that is not a number", args: ["distill", "--teacher", f.teacher, "--student", f.student, "--train", f.trainCSV,
                                                             "--output", out, "--epochs", "ten"], exit: 64,
                lines: [["ten", "(see 'distillctl distill --help')"]]),
        ]

        // Data.
        rows += [
            Row(what: "validation classes spelled differently", args: train + ["--val", f.misspelledVal, "--output", out], exit: 1,
                lines: [["\(f.misspelledVal): label column 'TShirt' is not a class of the training set"]]),
            Row(what: "test classes spelled differently, refused before training", args: train + ["--test", f.misspelledVal, "--output", out],
                exit: 1, lines: [["\(f.misspelledVal): label column 'TShirt' is not a class of the training set"]]),
            Row(what: "validation classes in another order train", args: train + ["--val", f.reorderedVal, "--output", f.path("out/r.h5")],
                exit: 0, lines: [], noTraining: false),
            Row(what: "a CSV ending with blank lines trains", args: train + ["--train", f.blankLinesCSV, "--output", f.path("out/b.h5")],
                exit: 0, lines: [], noTraining: false),
            Row(what: "a CSV with an unterminated quote", args: train + ["--train", f.unterminatedCSV, "--output", out], exit: 1,
                lines: [["\(f.unterminatedCSV) line 4, column 1: unterminated quote"]]),
            Row(what: "a CSV row with too many fields", args: train + ["--train", f.wideRowCSV, "--output", out], exit: 1,
                lines: [["\(f.wideRowCSV) line 2, column 12: 12 fields, the header has 11"]]),
        ]

        // Non-finite weights.
        rows += [
            Row(what: "summary of a model with a NaN weight", args: ["summary", f.nanModel], exit: 0,
                lines: [["warning: \(f.nanModel): layer '", "holds nan"]]),
            Row(what: "predict with a NaN weight warns", args: ["predict", f.nanModel, "--input", f.x, "--output", f.path("out/n.npy")], exit: 0,
                lines: [["warning: \(f.nanModel)", "holds nan"]]),
            Row(what: "convert with a NaN weight warns", args: ["convert", f.nanModel, "--output", f.path("out/n.h5")], exit: 0,
                lines: [["warning: \(f.nanModel)", "holds nan"]]),
            Row(what: "verify with a NaN weight warns, then fails", args: ["verify", f.nanModel, "--fixture", f.io], exit: 1,
                lines: [["warning: \(f.nanModel)", "holds nan"], ["error: \(f.io): max difference"]]),
            Row(what: "distill with a NaN teacher weight", args: ["distill", "--teacher", f.nanTeacher, "--student", f.student,
                                                                  "--train", f.trainCSV, "--output", out], exit: 1,
                lines: [["\(f.nanTeacher): the teacher's layer '", "holds inf", "training cannot start"]]),
            Row(what: "train with a NaN student weight", args: ["train", "--student", f.nanTeacher, "--train", f.trainCSV, "--output", out],
                exit: 1, lines: [["\(f.nanTeacher): the student's layer '", "holds inf"]]),
            Row(what: "a teacher taking another image size", args: ["distill", "--teacher", f.model, "--student", f.student,
                                                                    "--train", f.trainCSV, "--output", out], exit: 1,
                lines: [["\(f.model): the teacher's input is (6)", "the student's (28, 28, 1)"]]),
        ]

        for row in rows { try check(row, commonInputs: common) }
        XCTAssertGreaterThanOrEqual(rows.count, 40)
    }

    /// `--resume` with a new learning rate and more epochs: both are said and used (the history
    /// records the rate each epoch ended with).
    func testResumeHonoursANewLearningRate() throws {
        let f = try Files(temp)
        let base = ["train", "--student", f.student, "--train", f.trainCSV, "--batch-size", "4", "--output", f.path("out/s.h5"),
                    "--checkpoint-dir", f.path("ck2"), "--history", f.path("out/h.csv")]
        try check(Row(what: "first run", args: base + ["--epochs", "1"], exit: 0, lines: [], noTraining: false), commonInputs: f.inputs)
        let r = try check(Row(what: "resume", args: base + ["--epochs", "2", "--learning-rate", "0.01", "--resume"], exit: 0, lines: [],
                              noTraining: false), commonInputs: f.inputs)
        XCTAssertTrue(r.stdout.contains("changed: epochs 1 -> 2; optimizer adam, learning rate 0.001 -> adam, learning rate 0.01"), r.stdout)
        let history = try String(contentsOfFile: f.path("out/h.csv"), encoding: .utf8).split(separator: "\n")
        let header = history[0].split(separator: ",")
        let column = try XCTUnwrap(header.firstIndex(of: "learning_rate") ?? header.firstIndex(of: "lr"), "\(header)")
        XCTAssertEqual(history.count, 3)
        XCTAssertEqual(Double(history[1].split(separator: ",")[column]) ?? 0, 0.001, accuracy: 1e-9)
        XCTAssertEqual(Double(history[2].split(separator: ",")[column]) ?? 0, 0.01, accuracy: 1e-9)
    }

    /// Writes onto a full file system: one line, no signal, the previous file intact, no temporary
    /// file left. The space check is first seen refusing; then it is switched off to reach the write
    /// itself failing halfway, as when another program fills the disk during the write.
    func testFullDisk() throws {
        guard geteuid() == 0 else {
            print("HostileInputTests.testFullDisk skipped: mounting a small tmpfs needs root (CI runs as root)")
            return
        }
        let f = try Files(temp)
        let mount = temp.appendingPathComponent("full")
        try FileManager.default.createDirectory(at: mount, withIntermediateDirectories: true)
        let status = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=200k", "tmpfs", mount.path])
        guard status == 0 else { return XCTFail("mount -t tmpfs failed (status \(status))") }
        full = mount
        let disk = mount.path
        // A previous result on the full disk that a failed write must leave as it was.
        let previous = disk + "/o.h5"
        let small = try CLI.run(["convert", f.model, "--output", previous])
        XCTAssertEqual(small.status, 0, small.stderr)
        let noCheck = ["DISTILLCTL_NO_SPACE_CHECK": "1"]
        let rows = [
            Row(what: "convert: the space check refuses", args: ["convert", f.teacher, "--output", previous], exit: 1,
                lines: [["--output \(previous): needs about", "free"]], unchanged: [previous]),
            Row(what: "convert .h5 fills the disk", args: ["convert", f.teacher, "--output", previous], exit: 1,
                lines: [[previous, "No space left on device"]], unchanged: [previous], environment: noCheck),
            Row(what: "convert .keras fills the disk", args: ["convert", f.teacher, "--output", disk + "/o.keras"], exit: 1,
                lines: [[disk + "/o.keras"]], unchanged: [previous], environment: noCheck),
            Row(what: "convert .weights.h5 fills the disk", args: ["convert", f.teacher, "--output", disk + "/o.weights.h5"], exit: 1,
                lines: [[disk + "/o.weights.h5"]], unchanged: [previous], environment: noCheck),
            Row(what: "predict .npy fills the disk", args: ["predict", f.model, "--input", f.bigX, "--output", disk + "/y.npy"], exit: 1,
                lines: [[disk + "/y.npy", "No space left on device"]], unchanged: [previous], environment: noCheck),
            Row(what: "train: the student fills the disk", args: ["train", "--student", f.teacher, "--train", f.trainCSV, "--epochs", "1",
                                                                  "--batch-size", "4", "--output", disk + "/s.h5"], exit: 1,
                lines: [[disk + "/s.h5"]], unchanged: [previous], environment: noCheck, noTraining: false),
            Row(what: "train: a checkpoint fills the disk", args: ["train", "--student", f.teacher, "--train", f.trainCSV, "--epochs", "1",
                                                                   "--batch-size", "4", "--output", f.path("out/s.h5"),
                                                                   "--checkpoint-dir", disk + "/ck"], exit: 1,
                lines: [[disk + "/ck/"]], unchanged: [previous], environment: noCheck, noTraining: false),
            Row(what: "train: the space check refuses before the first step",
                args: ["train", "--student", f.teacher, "--train", f.trainCSV, "--epochs", "1", "--output", disk + "/s.h5"], exit: 1,
                lines: [["--output \(disk)/s.h5: needs about"]], unchanged: [previous]),
        ]
        for row in rows { try check(row, commonInputs: f.inputs, folders: [mount]) }

        // The disk filled to the last byte: a teacher cache (a few kB) no longer fits either.
        let free = try XCTUnwrap(try FileManager.default.attributesOfFileSystem(forPath: disk)[.systemFreeSize] as? NSNumber).intValue
        try Data(count: free).write(to: mount.appendingPathComponent("filler"))
        let cacheArgs = ["teacher-cache", "--teacher", f.teacher, "--train", f.trainCSV, "--output", disk + "/c.h5"]
        try check(Row(what: "teacher-cache: the space check refuses", args: cacheArgs, exit: 1,
                      lines: [["--output \(disk)/c.h5: needs about"]], unchanged: [previous]),
                  commonInputs: f.inputs, folders: [mount])
        try check(Row(what: "teacher-cache fills the disk", args: cacheArgs, exit: 1, lines: [[disk + "/c.h5", "No space left on device"]],
                      unchanged: [previous], environment: noCheck),
                  commonInputs: f.inputs, folders: [mount])
        XCTAssertFalse(FileManager.default.fileExists(atPath: disk + "/c.h5"))
    }

    // MARK: running a row

    @discardableResult
    func check(_ row: Row, commonInputs: [String], folders: [URL] = []) throws -> CLIResult {
        let watched = commonInputs + row.unchanged
        let before = try watched.map(sha256)
        let r = try CLI.run(row.args, environment: row.environment)
        let label = "[\(row.what)] distillctl \(row.args.joined(separator: " "))"
        XCTAssertNil(r.signal, "\(label): killed by signal \(r.signal ?? 0)\n\(r.stderr)")
        XCTAssertEqual(r.status, row.exit, "\(label): exit status; stderr:\n\(r.stderr)")
        let lines = r.stderr.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, row.lines.count, "\(label): stderr lines:\n\(r.stderr)")
        for (line, wanted) in zip(lines, row.lines) {
            for w in wanted { XCTAssertTrue(line.contains(w), "\(label): stderr should contain '\(w)':\n\(line)") }
            XCTAssertTrue(line.hasPrefix("distillctl: "), "\(label): \(line)")
            XCTAssertLessThan(line.count, 600, "\(label): a long line: \(line)")
        }
        if row.noTraining && row.exit != 0 {
            XCTAssertFalse(r.stdout.contains("Epoch "), "\(label): work started before the refusal:\n\(r.stdout)")
        }
        XCTAssertEqual(try watched.map(sha256), before, "\(label): an input changed")
        for folder in [temp!] + folders {
            let left = leftovers(in: folder)
            XCTAssertEqual(left, [], "\(label): temporary files left")
            for file in left { try? FileManager.default.removeItem(atPath: file) }
        }
        return r
    }

    /// Temporary and probe files below `folder`.
    func leftovers(in folder: URL) -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: folder.path) else { return [] }
        var out: [String] = []
        while let name = walker.nextObject() as? String {
            let base = (name as NSString).lastPathComponent
            if base.contains(".tmp-") || base.hasPrefix(".distillctl-probe") || base.hasSuffix(".tmp") {
                out.append(folder.appendingPathComponent(name).path)
            }
        }
        return out
    }

    func sha256(_ path: String) throws -> String {
        SHA256.hex(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    func run(_ tool: String, _ arguments: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }
}

/// The files the rows use, copied into the test's folder so every one can be hashed and watched.
struct Files {
    let root: URL
    let teacher, student, model, weights, arch, io, x, bigX, trainCSV, valCSV, cache: String
    let link, hardLink, checkpointStudent, userJSON: String
    let misspelledVal, reorderedVal, blankLinesCSV, unterminatedCSV, wideRowCSV: String
    let nanModel, nanTeacher: String
    var images: [String] = []

    func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    /// Every file a row could damage.
    var inputs: [String] {
        [teacher, student, model, weights, arch, io, x, trainCSV, valCSV, misspelledVal, reorderedVal, blankLinesCSV,
         unterminatedCSV, wideRowCSV, nanModel, nanTeacher] + images
    }

    init(_ root: URL) throws {
        self.root = root
        let fm = FileManager.default
        let example = fixturesDirectory.deletingLastPathComponent().appendingPathComponent("example")
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_bn_dense" })
        func copy(_ from: String, _ to: String) throws -> String {
            let target = root.appendingPathComponent(to)
            try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            try fm.copyItem(atPath: from, toPath: target.path)
            return target.path
        }
        func write(_ text: String, _ to: String) throws -> String {
            let target = root.appendingPathComponent(to)
            try Data(text.utf8).write(to: target)
            return target.path
        }
        teacher = try copy(example.appendingPathComponent("teacher.h5").path, "teacher.h5")
        student = try copy(example.appendingPathComponent("student.h5").path, "student.h5")
        model = try copy(c.path(c.model)!, "model.h5")
        weights = try copy(c.path(c.weights)!, "weights.h5")
        arch = try copy(c.path(c.arch)!, "model.json")
        io = try copy(c.path(c.io)!, "io.h5")
        try fm.createDirectory(atPath: root.appendingPathComponent("out").path, withIntermediateDirectories: true)

        // Eight training images in the example's CSV layout; a validation CSV of four of them.
        let lines = try String(contentsOf: example.appendingPathComponent("data/train.csv"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        let header = lines[0]
        let body = Array(lines.dropFirst().prefix(8))
        for line in body {
            let name = String(line.split(separator: ",")[0])
            images.append(try copy(example.appendingPathComponent("data/images/\(name)").path, "data/\(name)"))
        }
        trainCSV = try write(([header] + body).joined(separator: "\n") + "\n", "data/train.csv")
        valCSV = try write(([header] + body.prefix(4)).joined(separator: "\n") + "\n", "data/val.csv")
        misspelledVal = try write(([header.replacingOccurrences(of: "tshirt", with: "TShirt")] + body.prefix(4)).joined(separator: "\n") + "\n",
                                  "data/val_misspelled.csv")
        // The same columns in reverse order (image_id last), the values moved with them.
        let reversed = ([header] + body.prefix(4)).map { $0.split(separator: ",", omittingEmptySubsequences: false).reversed().joined(separator: ",") }
        reorderedVal = try write(reversed.joined(separator: "\n") + "\n", "data/val_reordered.csv")
        blankLinesCSV = try write(([header] + body.prefix(4) + [""] + body.dropFirst(4)).joined(separator: "\n") + "\n\n\n", "data/blank.csv")
        unterminatedCSV = try write(([header] + body.prefix(2) + ["\"" + body[2]] + body.dropFirst(3)).joined(separator: "\n") + "\n",
                                    "data/unterminated.csv")
        wideRowCSV = try write(([header, body[0] + ",1"] + body.dropFirst()).joined(separator: "\n") + "\n", "data/wide.csv")

        link = root.appendingPathComponent("link.h5").path
        try fm.createSymbolicLink(atPath: link, withDestinationPath: teacher)
        hardLink = root.appendingPathComponent("hard.h5").path
        guard Foundation.link(teacher, hardLink) == 0 else { throw CocoaError(.fileWriteUnknown) }
        checkpointStudent = try copy(student, "ck/best.h5")
        userJSON = try write("{\"the user's\": \"own file\"}\n", "mine.json")

        // The model's input batch (k2_bn_dense: 6 features), as .npy; and a large one.
        let arrays = try H5Arrays.read(path: io)
        let input = try XCTUnwrap(arrays["input"])
        x = root.appendingPathComponent("x.npy").path
        try writeTestNpy(x, shape: input.shape, values: input.floats)
        bigX = root.appendingPathComponent("big.npy").path
        try writeTestNpy(bigX, shape: [20000, 6], values: (0..<120000).map { Float($0 % 7) })

        // A NaN in the small model's last weight; an infinity in the teacher's first.
        nanModel = root.appendingPathComponent("nan.h5").path
        try Files.poison(model, to: nanModel, value: .nan, last: true)
        nanTeacher = root.appendingPathComponent("inf_teacher.h5").path
        try Files.poison(teacher, to: nanTeacher, value: .infinity, last: false)

        // A teacher cache of the training images, made by the tool itself.
        cache = root.appendingPathComponent("cache.h5").path
        let r = try CLI.run(["teacher-cache", "--teacher", teacher, "--train", trainCSV, "--output", cache])
        guard r.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: r.stderr]) }
    }

    /// A copy of a Keras file with one float32 weight's first value replaced.
    static func poison(_ source: String, to target: String, value: Float, last: Bool) throws {
        var file = try KerasH5File.read(path: source)
        let layers = file.weights.layers.indices.filter { !file.weights.layers[$0].weights.isEmpty }
        let l = try XCTUnwrap(last ? layers.last : layers.first)
        var layer = file.weights.layers[l]
        guard case .float32(var values) = layer.weights[0].values else { throw CocoaError(.fileReadCorruptFile) }
        values[0] = value
        layer.weights[0].values = .float32(values)
        file.weights.layers[l] = layer
        try file.write(to: target)
    }

}

/// SHA-256 (FIPS 180-4), here because Foundation on Linux has no hash functions and the test must
/// not trust the code under test to compare its own inputs.
enum SHA256 {
    static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]

    static func hex(_ data: Data) -> String {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var message = [UInt8](data)
        let bits = UInt64(message.count) * 8
        message.append(0x80)
        while message.count % 64 != 56 { message.append(0) }
        for i in (0..<8).reversed() { message.append(UInt8((bits >> (UInt64(i) * 8)) & 0xff)) }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        var w = [UInt32](repeating: 0, count: 64)
        for chunk in stride(from: 0, to: message.count, by: 64) {
            for i in 0..<16 {
                let b = chunk + 4 * i
                w[i] = UInt32(message[b]) << 24 | UInt32(message[b + 1]) << 16 | UInt32(message[b + 2]) << 8 | UInt32(message[b + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for i in 0..<64 {
                let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[i] &+ w[i]
                let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            h = [h[0] &+ a, h[1] &+ b, h[2] &+ c, h[3] &+ d, h[4] &+ e, h[5] &+ f, h[6] &+ g, h[7] &+ hh]
        }
        return h.map { String(format: "%08x", $0) }.joined()
    }
}
