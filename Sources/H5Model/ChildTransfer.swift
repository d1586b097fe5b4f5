// What a forked child that read an HDF5 file hands back to its parent through a pipe
// (IsolatedRead.guarded), so that the file is read once, in the child, instead of once there to
// prove libhdf5 survives it and again in the parent. The format is private to one run of one
// binary (both ends are the same process image), so it carries no version: native byte order,
// Int as 8 bytes. Every read is bounds-checked; a malformed message decodes to nil, and the
// parent then reads the file itself, as before.

/// A value `IsolatedRead.guarded` can return from the child rather than reading again.
protocol ChildTransferable {
    func write(to out: inout TransferWriter)
    init?(from input: inout TransferReader)
}

/// Bytes to hand back, written straight into `region` (memory the parent shares with the child,
/// `IsolatedRead.run`) while they fit there, or into `bytes` (sent through the pipe) once they do
/// not or when there is no region. The region spares the 16 MB of a model 256 round trips
/// through a 64 KB pipe, each a wake-up of the other process, and two copies.
struct TransferWriter {
    /// What was written, when it is not in the region (no region, or it overflowed).
    private(set) var bytes: [UInt8] = []
    private let region: UnsafeMutableRawBufferPointer?
    /// Bytes written so far.
    private(set) var count = 0
    /// Whether everything written is in the region.
    var inRegion: Bool { region != nil && count == regionCount }
    private var regionCount = 0

    init(region: UnsafeMutableRawBufferPointer? = nil) { self.region = region }

    mutating func append(_ source: UnsafeRawBufferPointer) {
        defer { count += source.count }
        if let region, count == regionCount, source.count <= region.count - count {
            if let from = source.baseAddress { (region.baseAddress! + count).copyMemory(from: from, byteCount: source.count) }
            regionCount += source.count
            return
        }
        if let region, count == regionCount, bytes.isEmpty, regionCount > 0 {
            // The region is full: what it holds moves to `bytes`, and the rest follows there.
            bytes.reserveCapacity(regionCount * 2 + source.count)
            bytes += UnsafeRawBufferPointer(rebasing: region[..<regionCount])
            regionCount = -1
        }
        bytes += source
    }

    mutating func int(_ v: Int) { withUnsafeBytes(of: v) { append($0) } }
    mutating func bool(_ v: Bool) { withUnsafeBytes(of: UInt8(v ? 1 : 0)) { append($0) } }
    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            int(utf8.count)
            append(UnsafeRawBufferPointer(utf8))
        }
    }
    mutating func optional(_ s: String?) {
        bool(s != nil)
        if let s { string(s) }
    }
    mutating func array<T>(_ values: [T]) {
        int(values.count)
        values.withUnsafeBytes { append($0) }
    }
}

/// The bytes a reader reads: memory it owns (a copy, or the parent's mapping of the region the
/// child wrote, unmapped when the last reader is done).
final class TransferBytes {
    let buffer: UnsafeRawBufferPointer
    private let release: () -> Void

    init(_ bytes: [UInt8]) {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, bytes.count), alignment: 16)
        bytes.withUnsafeBytes { if let from = $0.baseAddress { copy.baseAddress!.copyMemory(from: from, byteCount: $0.count) } }
        buffer = UnsafeRawBufferPointer(rebasing: copy[..<bytes.count])
        release = { copy.deallocate() }
    }

    init(buffer: UnsafeRawBufferPointer, release: @escaping () -> Void) {
        self.buffer = buffer
        self.release = release
    }

    deinit { release() }

    var array: [UInt8] { Array(buffer) }
}

struct TransferReader {
    let source: TransferBytes
    var offset = 0

    init(_ bytes: [UInt8]) { source = TransferBytes(bytes) }
    init(_ source: TransferBytes) { self.source = source }

    private var bytes: UnsafeRawBufferPointer { source.buffer }
    var atEnd: Bool { offset == bytes.count }

    mutating func raw(_ count: Int) -> UnsafeRawBufferPointer? {
        guard count >= 0, count <= bytes.count - offset else { return nil }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + count])
    }
    mutating func int() -> Int? {
        raw(MemoryLayout<Int>.size).map { $0.loadUnaligned(as: Int.self) }
    }
    mutating func bool() -> Bool? {
        guard let b = raw(1)?.first, b <= 1 else { return nil }
        return b == 1
    }
    mutating func string() -> String? {
        guard let n = int(), let s = raw(n) else { return nil }
        return String(decoding: s, as: UTF8.self)
    }
    /// nil: malformed; .some(nil): an absent string.
    mutating func optional() -> String?? {
        guard let present = bool() else { return nil }
        if !present { return .some(nil) }
        guard let s = string() else { return nil }
        return .some(s)
    }
    mutating func array<T>(of _: T.Type) -> [T]? {
        guard let n = int(), n >= 0, n <= (bytes.count - offset) / max(1, MemoryLayout<T>.stride),
              let s = raw(n * MemoryLayout<T>.stride) else { return nil }
        return [T](unsafeUninitializedCapacity: n) { buffer, count in
            if n > 0 { UnsafeMutableRawBufferPointer(buffer).baseAddress!.copyMemory(from: s.baseAddress!, byteCount: s.count) }
            count = n
        }
    }
    mutating func count() -> Int? {
        guard let n = int(), n >= 0, n <= bytes.count - offset else { return nil }   // every item takes a byte at least
        return n
    }
}

extension Bool: ChildTransferable {
    func write(to out: inout TransferWriter) { out.bool(self) }
    init?(from input: inout TransferReader) {
        guard let b = input.bool() else { return nil }
        self = b
    }
}

extension Optional: ChildTransferable where Wrapped: ChildTransferable {
    func write(to out: inout TransferWriter) {
        out.bool(self != nil)
        self?.write(to: &out)
    }
    init?(from input: inout TransferReader) {
        guard let present = input.bool() else { return nil }
        if !present { self = .none; return }
        guard let value = Wrapped(from: &input) else { return nil }
        self = .some(value)
    }
}

extension KerasH5File: ChildTransferable {
    func write(to out: inout TransferWriter) {
        out.optional(modelConfig)
        out.optional(trainingConfig)
        out.optional(kerasVersion)
        out.optional(backend)
        out.int(weights.layerNames.count)
        for name in weights.layerNames { out.string(name) }
        out.optional(weights.kerasVersion)
        out.optional(weights.backend)
        out.int(weights.layers.count)
        for layer in weights.layers {
            out.string(layer.name)
            out.int(layer.weights.count)
            for w in layer.weights {
                out.string(w.name)
                out.array(w.shape)
                switch w.values {
                case .float32(let v): out.int(0); out.array(v)
                case .float64(let v): out.int(1); out.array(v)
                case .float16(let v): out.int(2); out.array(v)
                case .int32(let v): out.int(3); out.array(v)
                case .int64(let v): out.int(4); out.array(v)
                }
            }
        }
    }

    init?(from input: inout TransferReader) {
        guard let modelConfig = input.optional(), let trainingConfig = input.optional(),
              let kerasVersion = input.optional(), let backend = input.optional(),
              let nameCount = input.count() else { return nil }
        var layerNames: [String] = []
        for _ in 0..<nameCount {
            guard let name = input.string() else { return nil }
            layerNames.append(name)
        }
        guard let groupVersion = input.optional(), let groupBackend = input.optional(),
              let layerCount = input.count() else { return nil }
        var layers: [LayerWeights] = []
        for _ in 0..<layerCount {
            guard let name = input.string(), let weightCount = input.count() else { return nil }
            var weights: [Weight] = []
            for _ in 0..<weightCount {
                guard let weightName = input.string(), let shape = input.array(of: Int.self), let kind = input.int() else { return nil }
                let values: WeightValues
                switch kind {
                case 0: guard let v = input.array(of: Float.self) else { return nil }; values = .float32(v)
                case 1: guard let v = input.array(of: Double.self) else { return nil }; values = .float64(v)
                case 2: guard let v = input.array(of: UInt16.self) else { return nil }; values = .float16(v)
                case 3: guard let v = input.array(of: Int32.self) else { return nil }; values = .int32(v)
                case 4: guard let v = input.array(of: Int64.self) else { return nil }; values = .int64(v)
                default: return nil
                }
                weights.append(Weight(name: weightName, shape: shape, values: values))
            }
            layers.append(LayerWeights(name: name, weights: weights))
        }
        self.init(modelConfig: modelConfig, trainingConfig: trainingConfig, kerasVersion: kerasVersion, backend: backend,
                  weights: WeightsGroup(layerNames: layerNames, layers: layers, kerasVersion: groupVersion, backend: groupBackend))
    }
}
