import ArgumentParser
import Foundation
import Graph
import Runtime

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Run a model on a .npy batch or on image files.",
        discussion: """
        --input X.npy --output Y.npy: X is float32, C order, shaped like the model's input with the batch
        first (NHWC for images), values as the model expects them (0-255 for Keras's applications).
        A model with several inputs takes --input X.npz (numpy.savez): one array per input, named as
        its Input layers are, or arr_0, arr_1, ... in the inputs' order.
        --images CSV|DIR --output P.csv: every JPEG/PNG in DIR (sorted), or the files a CSV names in its
        --x-col column (relative to --image-dir, default the CSV's folder); loaded as Keras's load_img does
        (RGB or grayscale as the model's input has 3 or 1 channels, resized with nearest interpolation,
        values 0-255). P.csv has one row per image and one column per output unit.
        A model with several outputs: --output Y.npz writes each one under its name, as Keras's
        model.output_names gives it (numpy.load("Y.npz")["name"]), or --output-layer chooses one.
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Input batch as a float32 .npy file (.npz: one array per input, by name).")
    var input: String?

    @Option(help: "A CSV naming image files, or a folder of images.")
    var images: String?

    @Option(help: "Folder the CSV's file names are relative to (default: the CSV's folder).")
    var imageDir: String?

    @Option(help: "CSV column with the image file names.")
    var xCol: String = "image_id"

    @Option(help: "Comma-separated column names for P.csv (default: class_0, class_1, ...).")
    var classNames: String?

    @Option(help: "Where to write the result: .npy for --input (.npz: every output of the model, by name, as numpy.savez writes them), .csv for --images.")
    var output: String

    @Option(help: "Images per batch.")
    var batchSize: Int = 32

    @Option(help: "Return this layer's output instead of the model's (a top-level layer, or a nested one).")
    var outputLayer: String?

    @Option(help: "Threads for the runtime (default: all cores).")
    var threads: Int?

    @Flag(help: "With --images: decode JPEGs of at least twice the model's input size at a reduced scale (libjpeg-turbo's DCT scaling), then resize as usual; faster, not Keras's load_img pixels.")
    var fastDecode = false

    @Option(help: "Number format of the pointwise convolutions and dense layers: f32, or bf16 (needs AVX512_BF16; float32 accumulation, the rest stays f32).")
    var precision: Precision = .float32

    func validate() throws {
        guard (input == nil) != (images == nil) else {
            throw ValidationError("give exactly one of --input X.npy or --images CSV|DIR")
        }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        if fastDecode && images == nil { throw ValidationError("--fast-decode is for --images") }
        if images != nil, [".npy", ".npz"].contains(where: { output.lowercased().hasSuffix($0) }) {
            throw ValidationError("--output \(output): --images writes a CSV (one row per image)")
        }
    }

    func run() throws {
        try reportingErrors {
            try checkPrecision(precision, flag: "--precision")
            var files = modelOptions.filePlan()
            files.input("--input", input)
            files.input("--images", images)
            files.output("--output", output)
            try files.check()
            // The images a CSV names are inputs too (cheap to list before the model is read).
            let imageFiles = try images.map { try ImageList.load(source: $0, imageDir: imageDir, xColumn: xCol) }
            if let imageFiles {
                files.inputs += imageFiles.map { ("--images", $0.path) }
                try files.check()
            }
            try setThreads(threads)
            let model = try modelOptions.load()
            warnNonFinite(model, path: modelOptions.model)
            let session = try InferenceSession(model: model, outputLayers: outputLayer.map { [$0] }, precision: precision)
            let archive = output.lowercased().hasSuffix(".npz")
            if session.outputNames.count > 1 && !archive {
                let names = session.outputNames.joined(separator: ", ")
                throw RuntimeError("--output \(output): the model has \(session.outputNames.count) outputs (\(names)); "
                    + (input != nil ? "write them all with --output NAME.npz, or choose one" : "choose one") + " with --output-layer")
            }
            if let input {
                let xs = try readInputs(input, names: session.inputNames)
                for (x, (name, want)) in zip(xs, zip(session.inputNames, session.inputShapes)) {
                    try checkShape(x.shape, of: xs.count > 1 ? "\(input) ['\(name)']" : input, against: want)
                }
                guard Set(xs.map { $0.shape[0] }).count == 1 else {
                    throw RuntimeError("\(input): the inputs have different batch sizes (\(xs.map { String($0.shape[0]) }.joined(separator: ", ")))")
                }
                let items = xs.map { Array($0.shape.dropFirst()) }, n = xs[0].shape[0]
                try checkMemory(what: "predict --batch-size \(batchSize)",
                                bytes: session.estimatedBytes(items: n, batchSize: batchSize, itemShapes: items))
                let width = try session.outputItemCounts(itemShapes: items).reduce(0, +)
                try files.checkSpace([(output, n * width * 4 + 4096 * session.outputNames.count)])
                let results = try session.run(xs.map { Tensor(shape: $0.shape, data: $0.values) }, batchSize: batchSize)
                if archive {
                    try NpyArray.writeArchive(zip(session.outputNames, results).map { ($0, NpyArray(shape: $1.shape, values: $1.data)) },
                                              path: output)
                } else {
                    try NpyArray(shape: results[0].shape, values: results[0].data).write(path: output)
                }
            } else if let imageFiles {
                try checkImageInput(session)
                try checkMemory(what: "predict --batch-size \(batchSize)",
                                bytes: session.estimatedBytes(items: min(batchSize, imageFiles.count), batchSize: batchSize))
                let width = try session.outputItemCounts().first ?? 1
                try files.checkSpace([(output, imageFiles.count * (width * 16 + 64))])
                try predictImages(session: session, files: imageFiles)
            }
        }
    }

    /// The model's inputs from `path`: a .npy for a model with one input; a .npz (numpy.savez)
    /// holds one array per input, named as the model's Input layers are (what Keras's predict
    /// takes as a dict) or arr_0, arr_1, ... in the inputs' order (numpy.savez's unnamed arrays).
    private func readInputs(_ path: String, names: [String]) throws -> [NpyArray] {
        guard path.lowercased().hasSuffix(".npz") else {
            guard names.count == 1 else {
                throw RuntimeError("\(path): the model takes \(names.count) inputs (\(names.joined(separator: ", "))); "
                                   + "give them in one .npz (numpy.savez) under those names")
            }
            return [try NpyArray.read(path: path)]
        }
        let entries = try NpyArray.readArchive(path: path)
        let byName = Dictionary(entries.map { ($0.name, $0.array) }, uniquingKeysWith: { a, _ in a })
        let positional = names.indices.map { "arr_\($0)" }
        for keys in [names, positional] where Set(keys) == Set(byName.keys) {
            return keys.map { byName[$0]! }
        }
        throw RuntimeError("\(path): holds \(entries.map(\.name).joined(separator: ", ")); the model's inputs are "
                           + "\(names.joined(separator: ", ")) (or \(positional.joined(separator: ", ")) in that order)")
    }

    /// An input array's shape against the model's input, so the message names the file.
    private func checkShape(_ shape: [Int], of path: String, against want: [Int]) throws {
        let got = Array(shape.dropFirst())
        let tuple = { (dims: [String]) in "(" + dims.joined(separator: ", ") + (dims.count == 1 ? ",)" : ")") }
        guard shape.first ?? 0 > 0, got.count == want.count, zip(got, want).allSatisfy({ $1 < 0 || $0 == $1 }) else {
            throw RuntimeError("\(path): shape \(tuple(shape.map(String.init))), the model expects "
                               + tuple(["batch"] + want.map { $0 < 0 ? "any" : String($0) }))
        }
    }

    /// --images needs one fixed-size image input: said before anything is estimated or loaded.
    private func checkImageInput(_ session: InferenceSession) throws {
        guard session.inputShapes.count == 1, session.inputShapes[0].count == 3 else {
            throw RuntimeError("--images needs a model with one image input (H, W, C); this one takes \(session.inputShapes)")
        }
        let shape = session.inputShapes[0]
        guard shape[0] > 0, shape[1] > 0, shape[2] == 1 || shape[2] == 3 else {
            throw RuntimeError("--images needs a fixed input size with 1 or 3 channels; the model's input is \(shape)")
        }
    }

    private func predictImages(session: InferenceSession, files: [ImageFile]) throws {
        let shape = session.inputShapes[0]
        var rows: [String] = []
        var header: [String]? = classNames.map { $0.split(separator: ",").map(String.init) }
        for start in stride(from: 0, to: files.count, by: batchSize) {
            let batch = Array(files[start..<min(start + batchSize, files.count)])
            let itemCount = shape.reduce(1, *)
            var data = [Float](repeating: 0, count: batch.count * itemCount)
            try data.withUnsafeMutableBufferPointer { all in
                for (i, file) in batch.enumerated() {
                    let slot = UnsafeMutableBufferPointer(rebasing: all[i * itemCount ..< (i + 1) * itemCount])
                    try loadImage(path: file.path, channels: shape[2], targetHeight: shape[0], targetWidth: shape[1],
                                  fastDecode: fastDecode, into: slot)
                }
            }
            let out = try session.run([Tensor(shape: [batch.count] + shape, data: data)])[0]
            let width = out.itemCount
            if header == nil { header = (0..<width).map { "class_\($0)" } }
            guard header!.count == width else {
                throw RuntimeError("--class-names has \(header!.count) names, the output has \(width) columns")
            }
            for (i, file) in batch.enumerated() {
                let values = out.data[i * width ..< (i + 1) * width].map { String(format: "%.7g", $0) }
                rows.append(([csvField(file.name)] + values).joined(separator: ","))
            }
        }
        let text = ([(["image"] + (header ?? [])).map(csvField).joined(separator: ",")] + rows).joined(separator: "\n") + "\n"
        try writeAtomically(text, to: output)
    }
}

func csvField(_ s: String) -> String {
    s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
}
