// A training or validation split: image files, class names, one-hot label rows and which items
// have a label at all. Unlabelled items still teach through the teacher's soft targets.
//
// Three layouts:
// - a CSV (the seed's): `x_col` names image files under an images folder, labels as one-hot
//   columns (`y_col = c("CBB", "CBSD", ...)`) or one label column (a class index or class name);
//   an empty/NA label makes the row unlabelled;
// - a folder per class (Keras's flow_from_directory: subfolder names sorted = classes);
// - a folder of unlabelled images.
import Foundation

public struct ImageDataset: Sendable {
    /// The CSV or folder the split came from (for messages).
    public var source: String
    public var files: [ImageFile]
    public var classNames: [String]
    /// `count * classCount` values: row i is item i's label (one-hot, or as the CSV gave it);
    /// zeros for unlabelled items.
    public var labels: [Float]
    public var hasLabel: [Bool]
    /// Images already decoded and resized by the pre-flight check (`TrainingRun.checkImages`),
    /// which the batch loaders use instead of decoding the files again; nil: none.
    public var decoded: DecodedImages?

    public init(source: String, files: [ImageFile], classNames: [String], labels: [Float], hasLabel: [Bool]) {
        precondition(labels.count == files.count * classNames.count && hasLabel.count == files.count,
                     "dataset: \(files.count) files need \(files.count) x \(classNames.count) labels")
        self.source = source
        self.files = files
        self.classNames = classNames
        self.labels = labels
        self.hasLabel = hasLabel
    }

    public var count: Int { files.count }
    public var classCount: Int { classNames.count }
    public var labelledCount: Int { hasLabel.lazy.filter { $0 }.count }

    public func labelRow(_ i: Int) -> ArraySlice<Float> {
        labels[i * classCount ..< (i + 1) * classCount]
    }

    /// FNV-1a (64-bit) over the class names, file names and labels, in order: store it with a
    /// checkpoint and compare on --resume, since a DataPosition only means the same items for
    /// the same dataset.
    public var fingerprint: UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        func add<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
            for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        }
        for name in classNames { add(name.utf8); add([0]) }
        add([1])
        for (i, file) in files.enumerated() {
            add(file.name.utf8)
            add([hasLabel[i] ? 2 : 3])
            for v in labelRow(i) { withUnsafeBytes(of: v.bitPattern.littleEndian) { add($0) } }
        }
        return h
    }

    /// The items at `indices`, in that order.
    public func subset(_ indices: [Int]) -> ImageDataset {
        var rows: [Float] = []
        rows.reserveCapacity(indices.count * classCount)
        for i in indices { rows.append(contentsOf: labelRow(i)) }
        var out = ImageDataset(source: source, files: indices.map { files[$0] }, classNames: classNames,
                               labels: rows, hasLabel: indices.map { hasLabel[$0] })
        out.decoded = decoded   // held by path: still right for any subset
        return out
    }

    /// Without the files at `paths` (e.g. the bad images a pre-flight check found); fails when
    /// nothing is left.
    public func removing(paths: Set<String>) throws -> ImageDataset {
        let kept = files.indices.filter { !paths.contains(files[$0].path) }
        guard !kept.isEmpty else { throw RuntimeError("\(source): no usable images left") }
        return subset(kept)
    }
}

/// Where a CSV's labels are.
public enum LabelSpec: Sendable, Equatable {
    /// A `label` column if there is one; else, when class names are given and every one is a
    /// column, those columns as one-hot; else no labels.
    case automatic
    /// One-hot (or soft) label columns, which are also the class names, in order (Keras's
    /// class_mode "other" with a list y_col, as in the seed).
    case oneHot([String])
    /// One column holding a class index (0-based, "3" or "3.0") or a class name.
    case column(String)
    /// Every row unlabelled.
    case unlabelled
}

/// How a folder source is read.
public enum FolderLayout: Sendable, Equatable {
    /// Class subfolders when the folder holds subfolders and no images of its own; unlabelled
    /// images when it holds images and no subfolders; otherwise an error asking to choose.
    case automatic
    case classFolders
    case unlabelled
}

public struct DatasetOptions: Sendable {
    /// The CSV column naming image files (Keras's x_col; the seed's `image_id`).
    public var xColumn = "image_id"
    public var labels: LabelSpec = .automatic
    /// The classes, in the model's output order. nil: inferred -- the one-hot column names; for a
    /// label column, 0...max when every label is an integer, else the sorted distinct names;
    /// for class folders, the sorted subfolder names. A validation split gets its training
    /// split's names.
    public var classNames: [String]? = nil
    /// Folder the CSV's file names are relative to (default: the CSV's own folder).
    public var imageDirectory: String? = nil
    public var folderLayout: FolderLayout = .automatic
    /// Fail when a CSV names a file that does not exist (off: leave it to `preflightCheck`, which
    /// reports it with the other bad images, e.g. for --skip-bad-images).
    public var requireFiles = true

    public init() {}
}

extension ImageDataset {
    /// A split from a CSV file or a folder (see `DatasetOptions`).
    public static func load(_ source: String, options: DatasetOptions = DatasetOptions()) throws -> ImageDataset {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory) else {
            throw RuntimeError("\(source): no such file or folder")
        }
        if !isDirectory.boolValue { return try fromCSV(source, options: options) }
        switch try resolvedLayout(source, options.folderLayout) {
        case .classFolders: return try fromClassFolders(source, classNames: options.classNames)
        default: return try fromUnlabelledFolder(source, classNames: options.classNames ?? [])
        }
    }

    /// A validation split read the way `self` (the training split) was: same options, and this
    /// split's class names, so label k means the same class in both.
    public func validationSplit(_ source: String, options: DatasetOptions = DatasetOptions()) throws -> ImageDataset {
        var o = options
        o.classNames = classNames
        let split = try ImageDataset.load(source, options: o)
        guard ImageDataset.sameClasses(split.classNames, classNames) else {  // one-hot columns that name other classes
            throw RuntimeError("\(source): classes \(split.classNames.joined(separator: ", ")) differ from the training split's \(classNames.joined(separator: ", "))")
        }
        return split
    }

    /// Unlabelled images: every JPEG/PNG under `path` (recursively, in Keras's walk order).
    /// Hidden entries (".name", e.g. macOS's "._x.jpg") are skipped; a BMP/PPM/TIFF/GIF file is refused.
    public static func fromUnlabelledFolder(_ path: String, classNames: [String] = []) throws -> ImageDataset {
        let files = try imagesBelow(path).map {
            ImageFile(name: $0, path: (path as NSString).appendingPathComponent($0))
        }
        guard !files.isEmpty else { throw RuntimeError("\(path): no JPEG or PNG files in the folder") }
        return ImageDataset(source: path, files: files, classNames: classNames,
                            labels: [Float](repeating: 0, count: files.count * classNames.count),
                            hasLabel: [Bool](repeating: false, count: files.count))
    }

    /// Keras's flow_from_directory layout: one subfolder per class, images anywhere below it.
    /// Classes are the sorted subfolder names (empty ones too, as Keras), or `classNames` (then
    /// every subfolder must be one). What Keras would read and this reader would not is refused
    /// rather than skipped: a hidden class folder, hidden images, and BMP/PPM/TIFF/GIF files.
    public static func fromClassFolders(_ path: String, classNames: [String]? = nil) throws -> ImageDataset {
        if let hidden = try subfolders(path, hidden: true).first {
            throw RuntimeError("\(path): '\(hidden)' is a hidden folder, which tf-keras's flow_from_directory counts as a class "
                               + "(shifting the others' indices) and Keras 3 does not; remove it or move it out")
        }
        let folders = try subfolders(path)
        guard !folders.isEmpty else { throw RuntimeError("\(path): no class subfolders") }
        let classes = classNames ?? folders
        let present = Set(folders.map(classKey))
        if let given = classNames {
            let known = Set(given.map(classKey))
            if let stray = folders.first(where: { !known.contains(classKey($0)) }) {
                throw RuntimeError("\(path): subfolder '\(stray)' is not one of the classes (\(given.joined(separator: ", ")))")
            }
        }
        var files: [ImageFile] = [], labels: [Float] = []
        for (k, name) in classes.enumerated() where present.contains(classKey(name)) {
            let folder = (path as NSString).appendingPathComponent(name)
            for relative in try imagesBelow(folder, refusingHidden: true) {
                files.append(ImageFile(name: (name as NSString).appendingPathComponent(relative),
                                       path: (folder as NSString).appendingPathComponent(relative)))
                var row = [Float](repeating: 0, count: classes.count)
                row[k] = 1
                labels.append(contentsOf: row)
            }
        }
        guard !files.isEmpty else {
            throw RuntimeError("\(path): no JPEG or PNG images in the class folders (\(folders.joined(separator: ", ")))")
        }
        return ImageDataset(source: path, files: files, classNames: classes, labels: labels,
                            hasLabel: [Bool](repeating: true, count: files.count))
    }

    static func resolvedLayout(_ path: String, _ layout: FolderLayout) throws -> FolderLayout {
        if layout != .automatic { return layout }
        let folders = try subfolders(path)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        let topImages = entries.filter { !$0.hasPrefix(".") && ImageList.extensions.contains(($0 as NSString).pathExtension.lowercased()) }
        switch (folders.isEmpty, topImages.isEmpty) {
        case (false, true): return .classFolders
        case (true, false): return .unlabelled
        case (false, false):
            throw RuntimeError("\(path): holds both images and subfolders; say whether the subfolders are classes or the folder is unlabelled images")
        case (true, true):
            throw RuntimeError("\(path): no JPEG or PNG images and no class subfolders")
        }
    }

    /// Python's string order (code points, as `sorted` in Keras), not Swift's `<`, which
    /// compares canonically equivalent forms and so puts a decomposed "é" (e + U+0301) elsewhere.
    static func kerasOrder(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// A class name as Python tells names apart: by code points. Swift's String == and hashing
    /// take a precomposed "é" and "e" + U+0301 for one string; to Keras they are two classes, so
    /// class names are grouped, looked up and compared by this key, never by String ==.
    static func classKey(_ name: String) -> [UInt8] { Array(name.utf8) }

    static func sameClasses(_ a: [String], _ b: [String]) -> Bool { a.map(classKey) == b.map(classKey) }

    /// Subfolders in Keras's order (sorted os.listdir): the non-hidden ones, or with `hidden`,
    /// only the hidden ones (".name").
    static func subfolders(_ path: String, hidden: Bool = false) throws -> [String] {
        let fm = FileManager.default
        let entries: [String]
        do { entries = try fm.contentsOfDirectory(atPath: path) } catch {
            throw RuntimeError("\(path): cannot list the folder")
        }
        return entries.filter { name in
            var isDirectory: ObjCBool = false
            return name.hasPrefix(".") == hidden
                && fm.fileExists(atPath: (path as NSString).appendingPathComponent(name), isDirectory: &isDirectory)
                && isDirectory.boolValue
        }.sorted(by: kerasOrder)
    }

    /// Names Keras takes for images: tf-keras tests `name.lower().endswith(fmt)` for png, jpg,
    /// jpeg, bmp, ppm, tif, tiff (no dot, so "xjpg" counts); Keras 3 for .bmp .gif .jpeg .jpg .png.
    static let kerasImageSuffixes = ["png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff", ".gif"]
    /// The image formats among them that this reader does not decode.
    static let otherImageExtensions: Set<String> = ["bmp", "ppm", "tif", "tiff", "gif"]

    /// Relative paths of the JPEG/PNG files below `folder`, in the order Keras lists them: the
    /// folders of os.walk (symbolic links to folders not followed) sorted by path, each one's
    /// files sorted by name. An image in a format Keras reads and this reader does not
    /// (BMP/PPM/TIFF/GIF) is an error naming it, never a silent gap in the set or the predictions.
    /// Hidden entries are skipped; with `refusingHidden` (a class folder, which Keras reads
    /// whole), a hidden file Keras would read as an image is an error too.
    static func imagesBelow(_ folder: String, refusingHidden: Bool = false) throws -> [String] {
        let fm = FileManager.default
        var walked: [(dir: String, files: [String])] = []
        var pending = [""]
        while let dir = pending.popLast() {
            let full = dir.isEmpty ? folder : (folder as NSString).appendingPathComponent(dir)
            guard let entries = try? fm.contentsOfDirectory(atPath: full) else {
                if dir.isEmpty { throw RuntimeError("\(folder): cannot list the folder") }
                continue   // os.walk skips a folder it cannot list
            }
            var files: [String] = []
            for name in entries {
                let relative = dir.isEmpty ? name : (dir as NSString).appendingPathComponent(name)
                let path = (full as NSString).appendingPathComponent(name)
                var isDirectory: ObjCBool = false
                if fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                    if (try? fm.destinationOfSymbolicLink(atPath: path)) == nil { pending.append(relative) }
                } else {
                    files.append(relative)
                }
            }
            walked.append((dir, files))
        }
        var out: [String] = []
        for (_, files) in walked.sorted(by: { kerasOrder($0.dir, $1.dir) }) {
            for relative in files.sorted(by: { kerasOrder(($0 as NSString).lastPathComponent, ($1 as NSString).lastPathComponent) }) {
                let hidden = relative.split(separator: "/").contains { $0.hasPrefix(".") }
                let readable = !hidden && ImageList.extensions.contains((relative as NSString).pathExtension.lowercased())
                if readable { out.append(relative); continue }
                guard refusingHidden || !hidden else { continue }
                let lower = (relative as NSString).lastPathComponent.lowercased()
                // Outside a class folder only a true image extension is refused: Keras has no
                // reader of such a folder whose suffix rule ("xjpg") it would be wrong to skip.
                guard refusingHidden ? kerasImageSuffixes.contains(where: { lower.hasSuffix($0) })
                                     : otherImageExtensions.contains((lower as NSString).pathExtension) else { continue }
                let path = (folder as NSString).appendingPathComponent(relative)
                throw RuntimeError(hidden
                    ? "\(path): a hidden file, which Keras reads as an image and distillctl would skip; remove it or move it out"
                    : "\(path): Keras reads this as an image, but distillctl reads JPEG (.jpg, .jpeg) and PNG (.png) only; convert it or move it out")
            }
        }
        return out
    }
}

extension ImageDataset {
    /// This split followed by `other`'s images, all under this split's classes: e.g. a folder of
    /// unlabelled images (`distill --unlabeled DIR`), which teach through the soft loss alone.
    public func appending(_ other: ImageDataset) throws -> ImageDataset {
        guard other.labelledCount == 0 || ImageDataset.sameClasses(other.classNames, classNames) else {
            throw RuntimeError("\(other.source): its classes \(other.classNames) differ from \(source)'s \(classNames)")
        }
        let k = classNames.count
        let otherLabels = other.labelledCount == 0 ? [Float](repeating: 0, count: other.count * k) : other.labels
        return ImageDataset(source: source, files: files + other.files, classNames: classNames,
                            labels: labels + otherLabels, hasLabel: hasLabel + other.hasLabel)
    }
}
