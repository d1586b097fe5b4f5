import ArgumentParser
import Runtime

extension Precision: ExpressibleByArgument {}

/// Refuses `flag precision` when this machine cannot run it: bf16 asked for is never run as
/// float32 instead, since the figures (speed, logits) would silently be another precision's.
func checkPrecision(_ precision: Precision, flag: String) throws {
    if let reason = precision.unsupportedReason { throw CommandLineError("\(flag) \(precision.rawValue): \(reason)") }
}
