// Keras's progress display (tf_keras/src/utils/generic_utils.py, Progbar): on a terminal,
// `verbose = 1`, one bar per epoch redrawn in place,
//
//     Epoch 3/10
//     412/875 [=============>................] - ETA: 41s - loss: 0.5123 - accuracy: 0.8120
//
// ending as `875/875 [====...] - 79s 90ms/step - loss: ... - val_accuracy: ...`; piped to a file,
// `verbose = 2`, one line per epoch: `875/875 - 79s - loss: ... - val_accuracy: ...`.
import Foundation

public final class KerasProgress: TrainingReporter {
    public let terminal: Bool
    let write: (String) -> Void
    var lastDraw = Date.distantPast
    var epochStart = Date()

    /// `write` receives text without an implied newline (it must flush).
    public init(terminal: Bool, write: @escaping (String) -> Void) {
        self.terminal = terminal
        self.write = write
    }

    public func epochBegan(_ epoch: Int, of epochs: Int, batches: Int) {
        epochStart = Date()
        lastDraw = .distantPast
        write("Epoch \(epoch + 1)/\(epochs)\n")
    }

    public func batchEnded(_ batch: Int, of batches: Int, secondsPerBatch: Double, logs: [(String, Double)]) {
        guard terminal, batch < batches else { return }
        // Keras redraws at most every 0.05 s.
        let now = Date()
        guard now.timeIntervalSince(lastDraw) >= 0.05 else { return }
        lastDraw = now
        let eta = secondsPerBatch * Double(batches - batch)
        write("\r" + Self.bar(batch, batches) + " - ETA: " + Self.eta(eta) + Self.format(logs) + "\u{1B}[K")
    }

    public func epochEnded(_ record: EpochRecord, batches: Int) {
        let seconds = record.seconds
        var logs: [(String, Double)] = [("loss", record.loss)]
        if let v = record.hardLoss, record.softLoss != nil { logs.append(("hard_loss", v)) }
        if let v = record.softLoss { logs.append(("soft_loss", v)) }
        if let v = record.accuracy { logs.append(("accuracy", v)) }
        if let v = record.valLoss { logs.append(("val_loss", v)) }
        if let v = record.valAccuracy { logs.append(("val_accuracy", v)) }
        let time = String(format: " - %.0fs", seconds)
        if terminal {
            let perStep = String(format: " %.0fms/step", seconds * 1000 / Double(max(1, batches)))
            write("\r" + Self.bar(batches, batches) + time + perStep + Self.format(logs) + "\u{1B}[K\n")
        } else {
            let width = String(batches).count
            write(String(repeating: " ", count: width - String(batches).count) + "\(batches)/\(batches)" + time + Self.format(logs) + "\n")
        }
    }

    public func note(_ text: String) {
        write(text + "\n")
    }

    /// `current/target [===>....]`, 30 characters wide, as Keras draws it.
    public static func bar(_ current: Int, _ target: Int) -> String {
        let digits = String(target).count
        let count = String(current)
        var s = String(repeating: " ", count: max(0, digits - count.count)) + count + "/\(target) ["
        let filled = Int(30 * Double(current) / Double(max(1, target)))
        if filled > 0 {
            s += String(repeating: "=", count: filled - 1)
            s += current < target ? ">" : "="
        }
        s += String(repeating: ".", count: 30 - filled) + "]"
        return s
    }

    public static func eta(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s > 3600 { return String(format: "%d:%02d:%02d", s / 3600, (s % 3600) / 60, s % 60) }
        if s > 60 { return String(format: "%d:%02d", s / 60, s % 60) }
        return "\(s)s"
    }

    /// ` - name: value` pairs, `%.4f` (or `%.4e` for tiny values), as Keras prints logs.
    public static func format(_ logs: [(String, Double)]) -> String {
        logs.map { name, v in " - \(name): " + (abs(v) > 1e-3 || v == 0 ? String(format: "%.4f", v) : String(format: "%.4e", v)) }
            .joined()
    }
}
