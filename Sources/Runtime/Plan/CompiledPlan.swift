import Foundation
import Graph

/// A plan compiled for one batch size and input shape: operations in order, every intermediate
/// value at a fixed offset in one arena allocated once, constants copied into their own block.
/// Running it allocates nothing but the output tensors.
final class CompiledPlan {
    let nodes: [PlanNode]
    let outputs: [Int]
    let buffers: BufferPlan
    private let arena: UnsafeMutablePointer<Float>
    let constants: ConstantPool
    let workspace: UnsafeMutablePointer<Float>
    let workspaceCount: Int
    /// Per depthwise step whose output a `meanOfRowSums` step pools: its channel sums per output
    /// row, [batch * outH, C].
    private(set) var rowSums: [Int: UnsafeMutablePointer<Float>] = [:]
    private var steps: [() -> Void] = []
    /// What this plan's training-mode random steps (PlanOp.dropout, PlanOp.augment) draw from;
    /// inactive: their inference form.
    let noiseClock = NoiseClock()
    /// The number format of the matrix products (pointwise convolutions, the fused expansions,
    /// dense layers); everything else runs in float32 either way.
    let precision: Precision
    /// Inputs (by index) that no step reads: `run` copies nothing from them, so any tensor will do.
    let unreadInputs: Set<Int>

    /// `sharing`: another plan of the same nodes whose constants (weights, read-only while
    /// running) this one uses too, so plans running side by side on several workers keep one
    /// copy of the weights in the shared cache instead of one each.
    /// `precision` (ignored when sharing: the shared plan's): bfloat16 needs `KernelISA.bf16Available`.
    init(nodes: [PlanNode], outputs: [Int], sharing other: CompiledPlan? = nil, precision: Precision = .float32) {
        self.precision = other?.precision ?? precision
        precondition(self.precision == .float32 || KernelISA.bf16Available, "bfloat16 plan without AVX512_BF16")
        self.nodes = nodes
        self.outputs = outputs
        buffers = BufferPlan(nodes: nodes, outputs: outputs)
        arena = allocateAlignedFloats(buffers.arenaCount)    // BufferPlan's 64-byte offsets, from a line
        arena.initialize(repeating: 0, count: buffers.arenaCount)
        constants = other?.constants ?? ConstantPool(nodes: nodes, precision: self.precision)
        for node in nodes {
            if case .meanOfRowSums = node.op, rowSums[node.inputs[0]] == nil {
                let s = nodes[node.inputs[0]].shape
                rowSums[node.inputs[0]] = .allocate(capacity: s[0] * s[1] * s[3])
            }
        }
        let read = Set(nodes.flatMap(\.inputs) + outputs)
        unreadInputs = Set(nodes.indices.compactMap { i -> Int? in
            guard case .input(let index) = nodes[i].op, !read.contains(i) else { return nil }
            return index
        })
        workspaceCount = max(16, nodes.indices.map { CompiledPlan.workspaceNeeded(nodes, $0) }.max() ?? 0)
        workspace = allocateAlignedFloats(workspaceCount)
        workspace.initialize(repeating: 0, count: workspaceCount)
        steps = nodes.indices.map { makeStep($0) }
    }

    deinit {
        arena.deallocate()
        workspace.deallocate()
        rowSums.values.forEach { $0.deallocate() }
    }

    func pointer(_ node: Int) -> UnsafeMutablePointer<Float> { arena + buffers.offsets[node] }

    /// Peak bytes this plan holds (arena, constants, workspace).
    var bytes: Int { (buffers.arenaCount + constants.count + workspaceCount) * MemoryLayout<Float>.size }

    func run(_ inputs: [Tensor]) -> [Tensor] { run(inputs, items: 0..<(inputs.first?.batch ?? 0)) }

    /// Runs items `items` of `inputs` (batch first; the plan's batch is items.count), copying
    /// just those rows into the arena instead of slicing the tensors first.
    func run(_ inputs: [Tensor], items: Range<Int>) -> [Tensor] {
        for (i, node) in nodes.enumerated() {
            if case .input(let index) = node.op, !unreadInputs.contains(index) {
                let perItem = node.count / max(1, items.count)
                precondition(perItem * items.upperBound <= inputs[index].data.count, "plan input out of range")
                inputs[index].data.withUnsafeBufferPointer {
                    pointer(i).update(from: $0.baseAddress! + items.lowerBound * perItem, count: node.count)
                }
            }
        }
        for step in steps { step() }
        return outputs.map { o in
            Tensor(shape: nodes[o].shape, data: Array(UnsafeBufferPointer(start: pointer(o), count: nodes[o].count)))
        }
    }

    /// Runs the steps one at a time and reports each one's time (for profiles).
    func runProfiled(_ inputs: [Tensor], record: (PlanNode, Double) -> Void) {
        _ = run(inputs)   // warm
        for (i, step) in steps.enumerated() {
            let start = DispatchTimeNanos.now()
            step()
            record(nodes[i], Double(DispatchTimeNanos.now() - start) / 1e9)
        }
    }
}

enum DispatchTimeNanos {
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// Kernels, biases and affine parameters copied into one block, so steps capture raw pointers.
final class ConstantPool {
    private(set) var offsets: [Int: [Int]] = [:]     // node -> offsets of its constants, in op order
    let base: UnsafeMutablePointer<Float>
    let count: Int

    init(nodes: [PlanNode], precision: Precision = .float32) {
        var arrays: [(Int, [Float])] = []
        for (i, node) in nodes.enumerated() {
            for a in constantArrays(node.op, precision: precision) { arrays.append((i, a)) }
        }
        count = max(1, arrays.reduce(0) { $0 + $1.1.count })
        base = .allocate(capacity: count)
        var at = 0
        for (i, a) in arrays {
            if !a.isEmpty { a.withUnsafeBufferPointer { (base + at).initialize(from: $0.baseAddress!, count: a.count) } }
            offsets[i, default: []].append(at)
            at += a.count
        }
    }

    deinit { base.deallocate() }

    /// The k-th constant of node i.
    func pointer(_ i: Int, _ k: Int) -> UnsafeMutablePointer<Float> { base + offsets[i]![k] }
}

/// Whether `op` runs its product in bfloat16 in a plan of this precision: the pointwise
/// convolutions (squeeze-and-excitation's scaled ones too), the fused expansions and dense layers,
/// where EfficientNet spends most of its multiply-adds. Depthwise and other convolutions stay
/// float32 (few multiply-adds per byte: bf16 would save little and cost accuracy).
func runsInBF16(_ op: PlanOp, precision: Precision) -> Bool {
    guard precision == .bfloat16 else { return false }
    switch op {
    case .conv(let p, _, _, _): return p.isPointwise
    case .scaledPointwise, .expandDepthwise, .dense: return true
    default: return false
    }
}

/// A [k, n] kernel packed by `packPointwiseBF16`, its dwords held as Float bit patterns (the
/// constant pool is one block of Float).
func bf16PackedConstant(_ kernel: [Float], k: Int, n: Int) -> [Float] {
    var packed = [UInt32](repeating: 0, count: pointwiseBF16PackedCount(k: k, n: n))
    kernel.withUnsafeBufferPointer { src in packed.withUnsafeMutableBufferPointer { dst in
        packPointwiseBF16(src.baseAddress!, k: k, n: n, into: dst.baseAddress!)
    }}
    return packed.map { Float(bitPattern: $0) }
}

/// A node's constant arrays, in the order `makeStep` asks for them; absent optional arrays are
/// skipped, so the step must use the same conditions. In bfloat16 (`runsInBF16`) the product's
/// kernel is packed by `packPointwiseBF16` instead, in the same place.
func constantArrays(_ op: PlanOp, precision: Precision = .float32) -> [[Float]] {
    if runsInBF16(op, precision: precision) {
        switch op {
        case .conv(let p, let k, let s, _), .scaledPointwise(let p, let k, let s, _):
            return [bf16PackedConstant(k, k: k.count / p.outChannels, n: p.outChannels)] + (s.map { [$0] } ?? [])
        case .dense(let fi, let fo, let k, let s, _):
            return [bf16PackedConstant(k, k: fi, n: fo)] + (s.map { [$0] } ?? [])
        case .expandDepthwise(let f):
            let zeros = [Float](repeating: 0, count: f.expandChannels)
            return [bf16PackedConstant(f.expandKernel, k: f.expandKernel.count / f.expandChannels, n: f.expandChannels),
                    f.expandShift ?? zeros, f.kernel, f.shift ?? zeros]
        default:
            break
        }
    }
    switch op {
    case .conv(let p, let k, let s, _) where p.isPointwise, .scaledPointwise(let p, let k, let s, _):
        // Packed once here for `pointwiseConv` (k = inC rows of outC).
        let inC = k.count / p.outChannels
        var packed = [Float](repeating: 0, count: pointwisePackedCount(k: inC, n: p.outChannels))
        k.withUnsafeBufferPointer { src in packed.withUnsafeMutableBufferPointer { dst in
            packPointwise(src.baseAddress!, k: inC, n: p.outChannels, into: dst.baseAddress!)
        }}
        return [packed] + (s.map { [$0] } ?? [])
    case .conv(_, let k, let s, _), .depthwise(_, _, let k, let s, _), .dense(_, _, let k, let s, _):
        return [k] + (s.map { [$0] } ?? [])
    case .affine(let scale, let shift, _):
        return [scale, shift]
    case .layerNorm(_, let gamma, let beta, _, _):
        return [gamma, beta]
    case .expandDepthwise(let f):
        // The expansion's kernel packed for the pointwise tile; absent biases as zeros.
        let inC = f.expandKernel.count / f.expandChannels
        var packed = [Float](repeating: 0, count: pointwisePackedCount(k: inC, n: f.expandChannels))
        f.expandKernel.withUnsafeBufferPointer { src in packed.withUnsafeMutableBufferPointer { dst in
            packPointwise(src.baseAddress!, k: inC, n: f.expandChannels, into: dst.baseAddress!)
        }}
        let zeros = [Float](repeating: 0, count: f.expandChannels)
        return [packed, f.expandShift ?? zeros, f.kernel, f.shift ?? zeros]
    case .convDepthwise(let f):
        // Absent biases as zeros (the stem's channels are the depthwise's).
        let zeros = [Float](repeating: 0, count: f.conv.outChannels)
        return [f.convKernel, f.convShift ?? zeros, f.kernel, f.shift ?? zeros]
    default:
        return []
    }
}

/// The state a plan's training-mode random steps read at run time: whether they are active, and the
/// seed, step and row offset their draws come from (dropout: the same counter-based masks as the
/// training nodes'; augmentation: one stream per layer, step and global row).
final class NoiseClock {
    var active = false
    var seed: UInt64 = 0
    var step = 0
    var rowOffset = 0

    /// Draws (when `training`) for step `step` of a run seeded `seed`, the plan's first item being
    /// the batch's row `row`.
    func set(training: Bool, seed: UInt64, step: Int, row: Int) {
        (active, self.seed, self.step, rowOffset) = (training, seed, step, row)
    }
}

/// A dropout mask's storage, owned by the step that fills it.
final class MaskStorage {
    let pointer: UnsafeMutablePointer<Float>
    init(_ count: Int) {
        pointer = .allocate(capacity: max(1, count))
        pointer.initialize(repeating: 0, count: max(1, count))
    }
    deinit { pointer.deallocate() }
}
