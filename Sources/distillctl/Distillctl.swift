import ArgumentParser

@main
struct Distillctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distillctl",
        abstract: "Run Keras models fast on a CPU, distil them into students, and write Keras files back.",
        subcommands: [SummaryCommand.self, PredictCommand.self, VerifyCommand.self, ConvertCommand.self,
                      DistillCommand.self, TrainCommand.self, TeacherCacheCommand.self, BenchCommand.self, ReportCommand.self])
}
