import Foundation

/// An image file to read: its name as the user gave it, and where it is.
public struct ImageFile: Equatable, Sendable {
    public var name: String
    public var path: String
}

public enum ImageList {
    static let extensions: Set<String> = ["jpg", "jpeg", "png"]

    /// Image files from a folder (JPEG and PNG, recursively, sorted by relative path) or from a CSV
    /// whose `xColumn` names files relative to `imageDir` (default: the CSV's folder).
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
        return names.map { ImageFile(name: $0, path: URL(fileURLWithPath: base).appendingPathComponent($0).path) }
    }

    static func folder(_ path: String) throws -> [ImageFile] {
        guard let walker = FileManager.default.enumerator(atPath: path) else {
            throw RuntimeError("\(path): cannot list the folder")
        }
        var files: [ImageFile] = []
        while let relative = walker.nextObject() as? String {
            let ext = (relative as NSString).pathExtension.lowercased()
            if extensions.contains(ext) {
                files.append(ImageFile(name: relative, path: (path as NSString).appendingPathComponent(relative)))
            }
        }
        guard !files.isEmpty else { throw RuntimeError("\(path): no JPEG or PNG files in the folder") }
        return files.sorted { $0.name < $1.name }
    }
}

