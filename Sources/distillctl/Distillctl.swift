import ArgumentParser
import Foundation

@main
struct Distillctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distillctl",
        abstract: "Run Keras models fast on a CPU, distil them into students, and write Keras files back.",
        subcommands: [SummaryCommand.self, PredictCommand.self, VerifyCommand.self, ConvertCommand.self,
                      DistillCommand.self, TrainCommand.self, TeacherCacheCommand.self, BenchCommand.self, ReportCommand.self])

    /// As ArgumentParser's own main, except that a usage error is one line (the parser's message
    /// and where the help is) instead of the message, the usage and a help hint on several lines.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            // --help, --version, and errors the commands already printed (ExitCode) go as before.
            if code == .success || error is ExitCode { exit(withError: error) }
            var text = message(for: error).split(whereSeparator: \.isNewline).first.map(String.init) ?? "\(error)"
            let arguments = CommandLine.arguments.dropFirst()
            // The parser takes "-1" after an option for another option and says the value is
            // missing; the user gave a negative number.
            if text.hasPrefix("Missing value for '--"),
               let i = arguments.firstIndex(where: { text.hasPrefix("Missing value for '\($0) ") || text == "Missing value for '\($0)'" }),
               arguments.index(after: i) < arguments.endIndex,
               case let value = arguments[arguments.index(after: i)], value.hasPrefix("-"), Double(value) != nil {
                text = "\(arguments[i]) \(value): a negative number is not a valid value"
            }
            let sub = configuration.subcommands.map { $0._commandName }.first { arguments.first == $0 }
            FileHandle.standardError.write(Data("distillctl: error: \(text) (see 'distillctl\(sub.map { " " + $0 } ?? "") --help')\n".utf8))
            Foundation.exit(code.rawValue)
        }
    }
}
