import Graph

/// The number format of a model's matrix products at inference. `bfloat16` rounds the weights
/// (once, when a plan is built) and the activations (as the products read them) to bf16 and
/// accumulates in float32 (AVX512_BF16's vdpbf16ps); it applies to the pointwise convolutions
/// and dense layers, where EfficientNet spends most of its multiply-adds, while depthwise and
/// the other convolutions, pooling, normalisation and activations stay float32.
public enum Precision: String, Sendable, CaseIterable {
    case float32 = "f32"
    case bfloat16 = "bf16"

    /// Why this machine cannot run `self`, or nil when it can.
    public var unsupportedReason: String? {
        switch self {
        case .float32: return nil
        case .bfloat16:
            if KernelISA.bf16Available { return nil }
            return "bf16 needs a CPU with AVX512_BF16 (vdpbf16ps), and this one has none"
                + (KernelISA.available ? "" : " (nor usable AVX-512)")
        }
    }
}

/// Runs a loaded model for inference. Plans are compiled once per batch size and input shape
/// and reused; `run` splits larger batches.
public final class InferenceSession {
    public let model: LoadedModel
    /// Graph nodes whose values are returned (the model's outputs, or the requested layers).
    public let outputNodes: [Int]
    /// Return a trailing softmax's input (the logits) instead of the probabilities.
    public let logits: Bool
    /// The matrix products' number format (float32 unless asked).
    public let precision: Precision
    /// Compiled plans by input shapes and instance (one per worker running passes side by side).
    private var plans: [[Int]: CompiledPlan] = [:]

    /// `outputLayers`: layer names whose outputs to return instead of the model's outputs.
    /// `logits`: where an output ends in a softmax (a Softmax layer or a softmax activation),
    /// return the values before it, as distillation needs. `precision`: `.bfloat16` is refused
    /// (thrown, never replaced by float32) on a machine without AVX512_BF16.
    public convenience init(model: LoadedModel, outputLayers: [String]? = nil, logits: Bool = false,
                            precision: Precision = .float32) throws {
        try self.init(model: model, outputNodes: outputLayers.map { try $0.map { try model.graph.findLayer($0) } }
                          ?? model.graph.outputs,
                      names: outputLayers.map(Self.distinct) ?? Self.outputNames(of: model.graph), valuesFirst: 0,
                      logits: logits, precision: precision)
    }

    /// The values of graph nodes `values` as they are, then the model's outputs (as logits when
    /// `logits`): a teacher's pass that also hands over what a student's prefix shares with it
    /// (`SharedPrefix.swift`).
    convenience init(model: LoadedModel, values: [Int], logits: Bool, precision: Precision) throws {
        try self.init(model: model, outputNodes: values + model.graph.outputs,
                      names: Self.distinct(values.map { model.graph.nodes[$0].layerKey } + Self.outputNames(of: model.graph)),
                      valuesFirst: values.count, logits: logits, precision: precision)
    }

    private init(model: LoadedModel, outputNodes: [Int], names: [String], valuesFirst: Int, logits: Bool,
                 precision: Precision) throws {
        if let reason = precision.unsupportedReason { throw RuntimeError(reason) }
        self.model = model
        self.logits = logits
        self.precision = precision
        self.outputNodes = outputNodes
        outputNames = names
        self.valuesFirst = valuesFirst
    }

    /// Outputs before this index are never replaced by the logits before their softmax.
    private let valuesFirst: Int

    /// A model's output names, as Keras's `model.output_names` gives them (see `outputNames`).
    public static func outputNames(of graph: ModelGraph) -> [String] {
        distinct(graph.outputs.map { node in
            graph.topLevel.first { $0.outputNodeIDs.contains(node) }?.name ?? graph.nodes[node].topLevelName
        })
    }

    /// What `run` returns, named as Keras's `model.output_names` names a model's outputs: by the
    /// top-level layer each comes from (a requested layer by the name it was asked by). A name
    /// that comes again gets `_1`, `_2`, ... so that every output can be written under its own.
    public let outputNames: [String]

    static func distinct(_ names: [String]) -> [String] {
        var seen: Set<String> = []
        return names.map { name in
            var unique = name, k = 0
            while seen.contains(unique) { k += 1; unique = "\(name)_\(k)" }
            seen.insert(unique)
            return unique
        }
    }

    /// The model's inputs' names: their Input layers' (the keys of Keras's predict with a dict).
    public var inputNames: [String] { model.graph.inputs.map { model.graph.nodes[$0].topLevelName } }

    /// The model's input shapes without the batch axis (-1 where the model accepts any size).
    public var inputShapes: [[Int]] { model.graph.inputs.map { model.graph.nodes[$0].outputShape } }

    /// Runs `inputs` (batch first), at most `batchSize` items at a time.
    /// When that makes several passes (a large image's batch goes one image at a time, see
    /// `microBatch`) and there are several workers, the passes are shared among the workers, each
    /// with a plan of its own and every kernel inside it single-threaded: whole images in
    /// parallel scale better than each kernel split in two (no hand-over between the workers
    /// at every layer, each image's activations stay in one core's cache).
    public func run(_ inputs: [Tensor], batchSize: Int = 32) throws -> [Tensor] {
        try checkInputs(inputs)
        let n = inputs[0].batch
        let (ranges, workers, plans) = try passes(itemShapes: inputs.map { Array($0.shape.dropFirst()) },
                                                  items: n, batchSize: batchSize)
        var parts = [[Tensor]](repeating: [], count: ranges.count)
        parts.withUnsafeMutableBufferPointer { out in
            parallelFor(ranges.count, threads: max(1, workers)) { w, items in
                for i in items { out[i] = plans[ranges[i].count]![w].run(inputs, items: ranges[i]) }
            }
        }
        return Self.joined(parts, items: n)
    }

    /// The outputs of consecutive passes over `n` items, joined along the batch axis.
    static func joined(_ parts: [[Tensor]], items n: Int) -> [Tensor] {
        if parts.count == 1 { return parts[0] }
        return parts[0].indices.map { k in
            Tensor(shape: [n] + parts[0][k].shape.dropFirst(), data: parts.flatMap { $0[k].data })
        }
    }

    /// How `run` goes through `n` items of these shapes (without the batch axis): the passes,
    /// the workers sharing them, and each pass size's plans, one per worker. Plans are compiled
    /// here, before any worker starts (compiling is not thread-safe); the last range may be shorter.
    func passes(itemShapes: [[Int]], items n: Int, batchSize: Int) throws
        -> (ranges: [Range<Int>], workers: Int, plans: [Int: [CompiledPlan]]) {
        let step = min(batchSize, try microBatch(itemShapes: itemShapes))
        let ranges = stride(from: 0, to: n, by: step).map { $0..<min($0 + step, n) }
        let workers = ParallelRegion.inside ? 1 : min(RuntimeThreads.count, ranges.count)
        var plans: [Int: [CompiledPlan]] = [:]
        for count in Set(ranges.map(\.count)) {
            plans[count] = try (0..<max(1, workers)).map { try plan(for: itemShapes.map { [count] + $0 }, instance: $0) }
        }
        return (ranges, workers, plans)
    }

    /// Compiles now the plans a later `run` of `items` items of these shapes (without the batch
    /// axis) will use, so that compiling can happen while something else waits (a training
    /// job's images being checked) rather than in the first `run`.
    public func prepare(itemShapes: [[Int]], items: Int, batchSize: Int) throws {
        _ = try passes(itemShapes: itemShapes, items: items, batchSize: batchSize)
    }

    /// Images per pass through the plan. A large image's activations (EfficientNet at 228x228:
    /// 5 MB in its biggest layer) overflow the caches at batch 8 and run slower per image than one
    /// at a time, so such inputs go through a batch-1 plan item by item; small ones in one pass.
    func microBatch(itemShapes: [[Int]]) throws -> Int {
        let single = try plan(for: itemShapes.map { [1] + $0 })
        return InferenceSession.imagesOneByOne(largestValue: single.nodes.map(\.count).max() ?? 0) ? 1 : Int.max
    }

    /// Whether a model whose largest value per image has this many floats runs one image per pass.
    static func imagesOneByOne(largestValue: Int) -> Bool { largestValue * MemoryLayout<Float>.size > 1 << 20 }

    /// The compiled plan for these input shapes (batch included), compiled on first use;
    /// `instance` k > 0 is a separate copy with buffers of its own for worker k.
    func plan(for shapes: [[Int]], instance: Int = 0) throws -> CompiledPlan {
        let key = shapes.flatMap { $0 + [-1] } + [instance]
        if let plan = plans[key] { return plan }
        let plan: CompiledPlan
        if instance > 0 {
            let first = try self.plan(for: shapes, instance: 0)
            plan = CompiledPlan(nodes: first.nodes, outputs: first.outputs, sharing: first)
        } else {
            plan = try compile(inputShapes: shapes)
        }
        plans[key] = plan
        return plan
    }

    /// Compiles the plan for these input shapes (batch included).
    func compile(inputShapes: [[Int]]) throws -> CompiledPlan {
        let (nodes, outputs) = try planNodes(inputShapes: inputShapes)
        return CompiledPlan(nodes: nodes, outputs: outputs, precision: precision)
    }

    /// The fused plan's operations for these input shapes, not yet given any memory.
    func planNodes(inputShapes: [[Int]]) throws -> (nodes: [PlanNode], outputs: [Int]) {
        var lowering = Lowering(graph: model.graph, weights: model.weights)
        var lowered = try lowering.lower(outputs: outputNodes, inputShapes: inputShapes)
        if logits {
            lowered.outputs = lowered.outputs.enumerated().map { k, o in
                if k >= valuesFirst, case .softmax(let axis, false) = lowered.nodes[o].op, axis == lowered.nodes[o].shape.count - 1 {
                    return lowered.nodes[o].inputs[0]
                }
                return o
            }
        }
        var fusion = Fusion(nodes: lowered.nodes, outputs: lowered.outputs)
        let fused = fusion.run()
        return (fused.nodes, fused.outputs)
    }

    func checkInputs(_ inputs: [Tensor]) throws {
        let expected = inputShapes
        guard inputs.count == expected.count else {
            throw RuntimeError("the model takes \(expected.count) inputs, got \(inputs.count)")
        }
        let batch = inputs.first?.batch ?? 0
        for (i, (x, want)) in zip(inputs, expected).enumerated() {
            let got = Array(x.shape.dropFirst())
            let fits = got.count == want.count && zip(got, want).allSatisfy { $1 < 0 || $0 == $1 }
            guard fits, x.batch == batch, batch > 0 else {
                throw RuntimeError("input \(i) has shape \(x.shape); the model expects (batch, \(want.map { $0 < 0 ? "any" : String($0) }.joined(separator: ", ")))")
            }
        }
    }
}
