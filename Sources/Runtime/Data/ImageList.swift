import Foundation

/// An image file to read: its name as the user gave it, and where it is.
public struct ImageFile: Equatable, Sendable {
    public var name: String
    public var path: String
}

public enum ImageList {
    static let extensions: Set<String> = ["jpg", "jpeg", "png"]

    /// Image files from a folder (JPEG and PNG, recursively, in Keras's walk order, hidden
    /// entries skipped, other image formats refused) or from a CSV whose `xColumn` names files relative to `imageDir`
    /// (default: the CSV's folder).
    public static func load(source: String, imageDir: String?, xColumn: String) throws -> [ImageFile] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory) else {
            throw RuntimeError("\(source): no such file or folder")
        }
        if isDirectory.boolValue { return try folder(source) }
        let table = try CSVTable.read(path: source)
        let names = try table.column(xColumn)
        let base = imageDir ?? URL(fileURLWithPath: source).deletingLastPathComponent().path
        guard !names.isEmpty else { throw RuntimeError("\(source): the CSV has no rows") }
        return names.map { ImageFile(name: $0, path: path(of: $0, under: base)) }
    }

    /// Where a CSV's file name points: as Keras's os.path.join(directory, name), an absolute
    /// name stands alone; the name is taken as written (pandas keeps spaces around it).
    static func path(of name: String, under base: String) -> String {
        name.hasPrefix("/") ? name : (base as NSString).appendingPathComponent(name)
    }

    static func folder(_ path: String) throws -> [ImageFile] {
        let files = try ImageDataset.imagesBelow(path).map {
            ImageFile(name: $0, path: (path as NSString).appendingPathComponent($0))
        }
        guard !files.isEmpty else { throw RuntimeError("\(path): no JPEG or PNG files in the folder") }
        return files
    }
}
