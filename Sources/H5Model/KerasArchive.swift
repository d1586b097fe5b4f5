// Keras 3's `.keras` file (keras/src/saving/saving_lib.py, `_save_model_to_fileobj`): a zip
// archive holding `metadata.json` ({"keras_version", "date_saved"}), `config.json` (the model's
// `serialize_keras_object` form, the same schema as `to_json()`) and `model.weights.h5` (the
// Keras 3 weights layout, see Keras3Weights.swift). Keras writes the entries uncompressed
// (ZIP_STORED) in that order; readers here take stored and deflated entries alike.
import Foundation
import ZIPFoundation

public struct KerasArchive: Sendable {
    public static let configEntry = "config.json"
    public static let metadataEntry = "metadata.json"
    public static let weightsEntry = "model.weights.h5"

    /// `config.json`, verbatim.
    public var config: String
    /// `metadata.json`, verbatim (nil when the archive has none).
    public var metadata: String?
    public var weights: Keras3Weights

    public init(config: String, metadata: String?, weights: Keras3Weights) {
        self.config = config
        self.metadata = metadata
        self.weights = weights
    }

    /// `metadata.json` as Keras 3.15 writes it.
    public static func metadataJSON(kerasVersion: String, date: Date = Date()) -> String {
        let format = DateFormatter()
        format.locale = Locale(identifier: "en_US_POSIX")
        format.dateFormat = "yyyy-MM-dd@HH:mm:ss"
        return "{\"keras_version\": \"\(kerasVersion)\", \"date_saved\": \"\(format.string(from: date))\"}"
    }

    /// The `keras_version` of `metadata.json`, when there is one.
    public var kerasVersion: String? {
        guard let metadata, let object = try? JSONSerialization.jsonObject(with: Data(metadata.utf8)),
              let dict = object as? [String: Any] else { return nil }
        return dict["keras_version"] as? String
    }

    /// Whether `path` starts like a zip file (a local file header, "PK\u{3}\u{4}"): how a `.keras`
    /// archive is told from an HDF5 file by content, whatever its name.
    public static func isZip(path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)).map(Array.init) == [0x50, 0x4b, 0x03, 0x04]
    }

    /// Reads the three entries. Every failure is one line naming the file and the entry.
    public static func read(path: String) throws -> KerasArchive {
        let archive: Archive
        do {
            archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
        } catch {
            throw H5ModelError("\(path): not a readable .keras archive (corrupt or truncated zip: \(zipReason(error)))")
        }
        guard let config = String(data: try entryData(archive, configEntry, path: path), encoding: .utf8) else {
            throw H5ModelError("\(path): entry '\(configEntry)' is not UTF-8 text")
        }
        let metadata = archive[metadataEntry] == nil ? nil
            : String(decoding: try entryData(archive, metadataEntry, path: path), as: UTF8.self)
        let weightBytes = try entryData(archive, weightsEntry, path: path)
        // HDF5 reads files: the entry goes to a private temporary file for the time of reading.
        let weights = try withTemporaryFile(suffix: ".weights.h5") { temporary in
            do {
                try weightBytes.write(to: URL(fileURLWithPath: temporary))
            } catch {
                throw H5ModelError("\(path): cannot extract '\(weightsEntry)' to a temporary file (\(error.localizedDescription))")
            }
            return try Keras3Weights.read(path: temporary, displayPath: "\(path) (entry \(weightsEntry))")
        }
        return KerasArchive(config: config, metadata: metadata, weights: weights)
    }

    private static func entryData(_ archive: Archive, _ name: String, path: String) throws -> Data {
        guard let entry = archive[name] else {
            let names = archive.map(\.path)
            throw H5ModelError("\(path): not a Keras 3 .keras archive: it has no '\(name)' entry (it holds: "
                               + (names.isEmpty ? "nothing" : names.prefix(5).joined(separator: ", ")) + (names.count > 5 ? ", ..." : "") + ")")
        }
        // Keras's own guard against decompression bombs (`_reject_zip_bomb`): over 4 GiB and
        // over 100 times the stored size.
        if entry.uncompressedSize > 1 << 32, entry.uncompressedSize / 100 > entry.compressedSize {
            throw H5ModelError("\(path): entry '\(name)' declares \(entry.uncompressedSize) bytes from \(entry.compressedSize) stored; refused")
        }
        var data = Data()
        let checksum: CRC32
        do {
            checksum = try archive.extract(entry) { data.append($0) }
        } catch {
            throw H5ModelError("\(path): entry '\(name)' cannot be read (corrupt or truncated zip: \(zipReason(error)))")
        }
        guard checksum == entry.checksum, data.count == Int(entry.uncompressedSize) else {
            throw H5ModelError("\(path): entry '\(name)' is corrupt (its CRC-32 or size does not match the zip directory)")
        }
        return data
    }

    /// Writes the archive as Keras 3 does: `metadata.json`, `config.json`, `model.weights.h5`,
    /// stored uncompressed. Atomic: built in memory, written to a temporary file beside `path`
    /// and renamed over it.
    public func write(to path: String) throws {
        let weightBytes: Data = try withTemporaryFile(suffix: ".weights.h5") { temporary in
            try weights.write(to: temporary)
            guard let data = FileManager.default.contents(atPath: temporary) else {
                throw H5ModelError("\(path): cannot read back the temporary weights file")
            }
            return data
        }
        let archive: Archive
        do {
            archive = try Archive(data: Data(), accessMode: .create)
            for (name, bytes) in [(Self.metadataEntry, Data((metadata ?? Self.metadataJSON(kerasVersion: "3.15.1")).utf8)),
                                  (Self.configEntry, Data(config.utf8)), (Self.weightsEntry, weightBytes)] {
                try archive.addEntry(with: name, type: .file, uncompressedSize: Int64(bytes.count),
                                     compressionMethod: .none) { position, size in
                    bytes.subdata(in: Int(position)..<Int(position) + size)
                }
            }
        } catch {
            throw H5ModelError("\(path): cannot build the zip archive (\(zipReason(error)))")
        }
        guard let bytes = archive.data else { throw H5ModelError("\(path): cannot build the zip archive (no data)") }
        try replaceAtomically(path) { temporary in try writeWhole(bytes, to: temporary, displayPath: path) }
    }
}

/// ZIPFoundation's errors in words.
private func zipReason(_ error: Error) -> String {
    guard let archiveError = error as? Archive.ArchiveError else { return String(describing: error) }
    switch archiveError {
    case .missingEndOfCentralDirectoryRecord: return "no end-of-central-directory record"
    case .invalidCRC32: return "CRC-32 mismatch"
    case .invalidCompressionMethod: return "unsupported compression method"
    default: return String(describing: archiveError)
    }
}

/// Runs `body` with the path of a new, private, empty temporary file that is removed afterwards.
func withTemporaryFile<T>(suffix: String, _ body: (String) throws -> T) throws -> T {
    var template = Array((NSTemporaryDirectory() + "/distillctl-XXXXXX" + suffix).utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemps($0.baseAddress!, Int32(suffix.utf8.count)) }
    guard fd >= 0 else {
        throw H5ModelError("cannot create a temporary file in '\(NSTemporaryDirectory())': \(String(cString: strerror(errno)))")
    }
    close(fd)
    let path = String(cString: template)
    defer { unlink(path) }
    return try body(path)
}
