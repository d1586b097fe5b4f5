import ArgumentParser
import Foundation

@main
struct Distillctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distillctl",
        abstract: "Run Keras models fast on a CPU, distil them into students, and write Keras files back.",
        subcommands: [SummaryCommand.self, PredictCommand.self, VerifyCommand.self, ConvertCommand.self,
                      DistillCommand.self, TrainCommand.self, TeacherCacheCommand.self, BenchCommand.self])

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
            let text = message(for: error).split(whereSeparator: \.isNewline).first.map(String.init) ?? "\(error)"
            let arguments = CommandLine.arguments.dropFirst()
            let sub = configuration.subcommands.map { $0._commandName }.first { arguments.first == $0 }
            FileHandle.standardError.write(Data("distillctl: error: \(text) (see 'distillctl\(sub.map { " " + $0 } ?? "") --help')\n".utf8))
            Foundation.exit(code.rawValue)
        }
    }
}
