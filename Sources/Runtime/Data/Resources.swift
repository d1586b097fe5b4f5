// Memory a run will take, estimated before it allocates: a batch size or thread count typed with
// a few zeros too many should end in one line saying how much it would need, not in a Swift
// allocation trap or minutes of swapping.
import Foundation
import Graph

/// The machine's memory: physical, what the kernel could hand out now (MemAvailable), and the
/// cgroup's limit when the process runs in one (a container).
public struct MachineMemory: Sendable {
    public var total: Int
    public var available: Int

    public static func current() -> MachineMemory {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        var total = pages > 0 && pageSize > 0 ? pages * pageSize : Int.max
        var available = total
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
           let kb = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
            available = kb * 1024
        }
        // cgroup v2, then v1: a container's limit is the machine it really has.
        for file in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            if let text = try? String(contentsOfFile: file, encoding: .utf8),
               let limit = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), limit > 0, limit < total {
                total = limit
                available = min(available, limit)
            }
        }
        return MachineMemory(total: total, available: available)
    }
}

/// A run that would need more memory than the machine has: `what` names the run (the caller's
/// words), the estimate and the machine's memory.
public struct MemoryEstimateError: Error, CustomStringConvertible, Sendable {
    public var what: String
    public var needed: Int
    public var machine: MachineMemory

    public var description: String {
        "\(what) needs about \(memoryText(needed)) of memory; this machine has \(memoryText(machine.total))"
            + " (\(memoryText(machine.available)) available)"
    }
}

/// Refuses `bytes` (an estimate) when it exceeds what the machine can give now.
public func checkMemory(what: String, bytes: Int, machine: MachineMemory = .current()) throws {
    guard bytes > machine.available else { return }
    throw MemoryEstimateError(what: what, needed: bytes, machine: machine)
}

/// Binary units, as memory is counted: "1.5 GiB".
func memoryText(_ n: Int) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var value = Double(n), unit = 0
    while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
    return unit == 0 ? "\(n) bytes" : String(format: "%.1f %@", value, units[unit])
}

/// `a * b`, saturating at Int.max (estimates of absurd sizes must not trap on overflow).
func saturatingProduct(_ values: [Int]) -> Int {
    var p = 1
    for v in values {
        let (r, overflow) = p.multipliedReportingOverflow(by: max(0, v))
        if overflow { return Int.max }
        p = r
    }
    return p
}

func saturatingSum(_ values: [Int]) -> Int {
    values.reduce(0) { let (r, o) = $0.addingReportingOverflow($1); return o ? Int.max : r }
}

extension InferenceSession {
    /// Values per item of each output (the product of its shape without the batch axis), for
    /// inputs shaped `itemShapes` (default: the model's), found without running anything.
    public func outputItemCounts(itemShapes: [[Int]]? = nil) throws -> [Int] {
        let (nodes, outputs) = try planNodes(inputShapes: (itemShapes ?? inputShapes).map { [1] + $0 })
        return outputs.map { nodes[$0].count }
    }

    /// Bytes a `run` of `items` inputs shaped `itemShapes` (no batch axis; default the model's),
    /// `batchSize` at a time, holds at its peak: the inputs and outputs, each worker's plan (its
    /// arena and workspace scaled from a one-item plan, which is laid out without allocating), and
    /// the plan's constants (the weights as the kernels take them).
    /// `wholeBatch`: the batch's activations all at once, as a training step holds them (inference
    /// runs large images one at a time).
    public func estimatedBytes(items: Int, batchSize: Int, itemShapes: [[Int]]? = nil,
                               threads: Int = RuntimeThreads.count, wholeBatch: Bool = false) throws -> Int {
        let shapes = itemShapes ?? inputShapes
        guard shapes.allSatisfy({ $0.allSatisfy { $0 > 0 } }) else { return 0 }   // sizes only known with the data
        let (nodes, outputs) = try planNodes(inputShapes: shapes.map { [1] + $0 })
        let arena = BufferPlan(nodes: nodes, outputs: outputs).arenaCount
        let largest = nodes.map(\.count).max() ?? 0
        let oneByOne = !wholeBatch && InferenceSession.imagesOneByOne(largestValue: largest)
        let step = max(1, min(batchSize, items, oneByOne ? 1 : Int.max))
        let passes = (items + step - 1) / step
        let workers = max(1, min(threads, passes))
        // Per item: the arena and the largest kernel workspace (both grow with the plan's batch).
        let workspace = max(16, nodes.indices.map { CompiledPlan.workspaceNeeded(nodes, $0) }.max() ?? 0)
        let constants = nodes.reduce(0) { $0 + constantArrays($1.op).reduce(0) { $0 + $1.count } }
        let inputFloats = saturatingSum(shapes.map { saturatingProduct([items] + $0) })
        let outputFloats = saturatingSum(outputs.map { saturatingProduct([items, nodes[$0].count]) })
        let floats = saturatingSum([saturatingProduct([workers, step, arena + workspace]), constants, inputFloats,
                                    saturatingProduct([2, outputFloats])])
        return saturatingProduct([floats, MemoryLayout<Float>.size])
    }
}
