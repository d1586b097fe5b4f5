import Graph

/// A student compiled for training at one batch size: the frozen prefix as a fused inference plan,
/// the trainable rest as TrainNodes with a value buffer and a gradient buffer each (kept for the
/// whole step: the backward pass reads the forward's values), plus per-node caches (batch-norm
/// statistics, dropout masks).
final class TrainingPlan {
    let split: TrainingSplit
    let batch: Int
    /// The frozen prefix: one plan for the whole batch, or (large images, `prefixPerImage`)
    /// batch-1 plans, one per worker, with the images shared among the workers as
    /// InferenceSession shares them. Empty when nothing is frozen.
    let prefix: [CompiledPlan]
    let prefixPerImage: Bool
    /// The frozen prefix from a teacher's values at a cut (`SharedPrefix.swift`; only with
    /// `prefixPerImage`): the cut's graph nodes, and per worker a batch-1 plan of the rest of the
    /// prefix (inputs: the model's, then the cut's values; outputs: the boundary's, as `prefix`'s).
    let shared: (cut: [Int], plans: [CompiledPlan])?
    let params: ParameterStore
    private(set) var values: [UnsafeMutablePointer<Float>] = []
    private(set) var grads: [UnsafeMutablePointer<Float>] = []
    /// Per node: batch mean and variance (batch norm) or the dropout mask.
    private(set) var caches: [Int: UnsafeMutablePointer<Float>] = [:]
    let workspace: UnsafeMutablePointer<Float>
    let workspaceCount: Int
    /// Somewhere to write an input gradient nobody reads (see `scratchGradient`).
    let scratch: UnsafeMutablePointer<Float>
    let scratchCount: Int
    /// Whether the last forward pass ran in training mode (dropout masks are valid).
    private(set) var lastForwardTraining = false
    /// Data parallelism: batch-norm statistics over every rank (`--sync-batchnorm`), and where
    /// this rank's rows start in the whole batch (dropout masks follow the global row).
    var batchNormSync: BatchNormSync?
    private var rowOffset = 0
    /// When set, seconds per kind of trainable node, forward and backward (`bench --train --profile`).
    var nodeTimes: [String: Double]?
    /// Training-mode batch norm -> the element-wise activation that is its only consumer. In
    /// training the pair runs as one pass each way (`BatchNormActivationFusion.swift`).
    let activationAfter: [Int: Int]
    /// The inverse: activation node -> its batch norm.
    let batchNormBefore: [Int: Int]
    /// Squeeze-and-excitation multiply -> its pattern, and the pool -> that multiply: the
    /// multiply's backward leaves x's gradient to the pool's (`SqueezeExciteFusion.swift`).
    let squeezeExcite: [Int: SqueezeExcite]
    let squeezeExciteOfPool: [Int: Int]
    /// Fused activation node -> the squeeze-and-excitation average pool of its output, which its
    /// batch norm's training forward makes as it stores the activation (`poolInBatchNorm`).
    let poolAfterActivation: [Int: Int]
    /// Pools the last forward pass's batch norms made (their own forward is skipped).
    private(set) var pooledByBatchNorm = Set<Int>()
    /// Off: every pool reads its input itself (the reference in tests).
    var poolInBatchNorm = true
    /// Padding nodes folded into the convolution after them (`TrainingLowering.foldingPadding`):
    /// nothing reads them, so they are never computed.
    let folded: Set<Int>
    /// Off: the unfused backward (the reference in tests).
    var fuseSqueezeExcite = true
    /// Off: a squeeze-and-excitation input's gradient is stored by the pool's backward even when
    /// its batch norm's backward could make it (`SqueezeExciteFusion.swift`; the reference in tests).
    var fuseExciteIntoBatchNorm = true
    /// How many such gradients the last backward pass made in a batch norm's pass (for tests).
    var excitesMadeByBatchNorm = 0
    /// 1x1 convolution -> the squeeze-and-excitation multiply it reads, which it makes itself as
    /// it reads x and s, forward and for its kernel's gradient (`SqueezeExciteFusion.swift`).
    let exciteIntoConv: [Int: Int]
    /// The multiplies of `exciteIntoConv` (their forward is skipped).
    let excitesFolded: Set<Int>
    /// Off: every such multiply stores its output for the convolution (the reference in tests).
    /// Set between steps, not between a forward pass and its backward.
    var foldExciteIntoConv = true

    /// Runs `body` (node i's `pass`), adding its time to `nodeTimes` when that is set.
    @inline(__always)
    func timed(_ pass: String, _ i: Int, _ body: () -> Void) {
        guard nodeTimes != nil else { return body() }
        let start = DispatchTimeNanos.now()
        body()
        nodeTimes![pass + " " + nodes[i].kindName, default: 0] += Double(DispatchTimeNanos.now() - start) / 1e9
    }

    var nodes: [TrainNode] { split.nodes }

    /// `keepValues`: graph nodes whose values are read after the forward pass besides the outputs
    /// (feature distillation), so never fused away.
    /// `foldPadding` off: explicit padding stays a node of its own (the reference in tests).
    /// `sharing`: a cut from which the frozen prefix may go on from a teacher's values.
    init(model: LoadedModel, params: ParameterStore, batch: Int, keepValues: Set<Int> = [], foldPadding: Bool = true,
         sharing cut: [Int] = []) throws {
        self.batch = batch
        self.params = params
        let graph = model.graph
        let inputShapes = graph.inputs.map { graph.nodes[$0].outputShape }
        var split = try TrainingLowering.split(graph, params, batch: batch, inputShapes: inputShapes)
        var folded = Set<Int>()
        if foldPadding {
            (split, folded) = TrainingLowering.foldingPadding(split, keeping: Set(keepValues.compactMap { split.trainNode[$0] }))
        }
        self.split = split
        self.folded = folded
        activationAfter = TrainingPlan.batchNormActivationPairs(split, keeping: Set(keepValues.compactMap { split.trainNode[$0] }))
        batchNormBefore = Dictionary(uniqueKeysWithValues: activationAfter.map { ($1, $0) })
        squeezeExcite = TrainingPlan.squeezeExcitePatterns(split)
        squeezeExciteOfPool = Dictionary(uniqueKeysWithValues: squeezeExcite.map { ($1.pool, $0) })
        exciteIntoConv = TrainingPlan.excitesIntoConvolutions(split, squeezeExcite,
                                                              keeping: Set(keepValues.compactMap { split.trainNode[$0] }))
        excitesFolded = Set(exciteIntoConv.values)
        let activations = Set(activationAfter.values)
        poolAfterActivation = Dictionary(uniqueKeysWithValues: squeezeExcite.values.compactMap { se in
            activations.contains(se.full) ? (se.full, se.pool) : nil
        })
        var shared: (cut: [Int], plans: [CompiledPlan])? = nil
        if split.boundary.isEmpty {
            prefix = []
            prefixPerImage = false
        } else {
            let boundary = split.boundary
            func fused(batch: Int, cut: [Int] = []) throws -> (nodes: [PlanNode], outputs: [Int]) {
                var lowering = Lowering(graph: graph, weights: model.weights)
                // Keras runs the Dropout layers of a frozen part in training mode too (only frozen
                // BatchNormalization switches to inference): the prefix keeps them.
                lowering.trainingMode = true
                let lowered = try lowering.lower(outputs: boundary, inputShapes: inputShapes.map { [batch] + $0 },
                                                 cut: cut.map { ($0, [batch] + graph.nodes[$0].outputShape) })
                var fusion = Fusion(nodes: lowered.nodes, outputs: lowered.outputs)
                return fusion.run()
            }
            // Frozen batch norm runs in inference mode and dropout masks follow the global row,
            // so an image's prefix output does not depend on the others in the batch.
            let single = try fused(batch: 1)
            prefixPerImage = batch > 1 && InferenceSession.imagesOneByOne(largestValue: single.nodes.map(\.count).max() ?? 0)
            if prefixPerImage {
                let first = CompiledPlan(nodes: single.nodes, outputs: single.outputs)
                let workers = max(1, min(RuntimeThreads.count, batch))
                prefix = [first] + (1..<workers).map { _ in
                    CompiledPlan(nodes: single.nodes, outputs: single.outputs, sharing: first)
                }
                if !cut.isEmpty {
                    let rest = try fused(batch: 1, cut: cut)
                    let restFirst = CompiledPlan(nodes: rest.nodes, outputs: rest.outputs)
                    shared = (cut, [restFirst] + (1..<workers).map { _ in
                        CompiledPlan(nodes: rest.nodes, outputs: rest.outputs, sharing: restFirst)
                    })
                }
            } else {
                let all = try fused(batch: batch)
                prefix = [CompiledPlan(nodes: all.nodes, outputs: all.outputs)]
            }
        }
        self.shared = shared
        for (i, node) in split.nodes.enumerated() {
            let n = folded.contains(i) ? 1 : max(1, node.count)
            values.append(allocateAlignedFloats(n))
            grads.append(allocateAlignedFloats(n))
            values.last!.initialize(repeating: 0, count: n)
            grads.last!.initialize(repeating: 0, count: n)
        }
        for (i, node) in split.nodes.enumerated() {
            let size: Int
            switch node.op {
            case .batchNorm: size = 2 * node.shape.last!
            case .dropout(_, let noise): size = dropoutMaskShape(node.shape, noise).reduce(1, *)
            default: continue
            }
            caches[i] = allocateAlignedFloats(size)
            caches[i]!.initialize(repeating: 0, count: size)
        }
        let trainNodes = split.nodes
        workspaceCount = max(16, trainNodes.indices.map { TrainingPlan.workspaceNeeded(trainNodes, $0) }.max() ?? 0)
        workspace = allocateAlignedFloats(workspaceCount)
        workspace.initialize(repeating: 0, count: workspaceCount)
        scratchCount = max(1, trainNodes.map(\.count).max() ?? 1)
        scratch = allocateAlignedFloats(scratchCount)
        scratch.initialize(repeating: 0, count: scratchCount)
    }

    deinit {
        values.forEach { $0.deallocate() }
        grads.forEach { $0.deallocate() }
        caches.values.forEach { $0.deallocate() }
        workspace.deallocate()
        scratch.deallocate()
    }

    static func geometry(_ nodes: [TrainNode], _ i: Int, _ p: ConvParams) -> Conv2DGeometry {
        p.geometry(input: nodes[nodes[i].inputs[0]].shape, output: nodes[i].shape)
    }

    static func workspaceNeeded(_ nodes: [TrainNode], _ i: Int) -> Int {
        switch nodes[i].op {
        case .conv(let p, _, _):
            let g = geometry(nodes, i, p)
            return max(conv2dWorkspaceCount(g), conv2dBackwardWorkspaceCount(g))
        case .groupedConv(let p, let groups, _, _):
            return groupedConv2dWorkspaceCount(geometry(nodes, i, p), groups: groups)
        case .depthwise(let p, _, _, _):
            return depthwiseConv2dBackwardKernelWorkspaceCount(geometry(nodes, i, p))
        case .dense(let fi, let fo, _, _):
            return denseBackwardKernelWorkspaceCount(inFeatures: fi, outFeatures: fo)
        default:
            return 0
        }
    }

    func weight(_ i: Int) -> UnsafeMutablePointer<Float> { params.entry(i).values }

    /// The forward pass. `training` selects batch statistics and dropout; `seed` and `step` make
    /// dropout masks reproducible.
    func forward(_ inputs: [Tensor], training: Bool, seed: UInt64, step: Int, rowOffset: Int = 0) {
        var none: PhaseTimes? = nil
        forward(inputs, training: training, seed: seed, step: step, rowOffset: rowOffset, phases: &none)
    }

    /// `forward`, adding the time of the frozen prefix and of the trainable part to `phases`.
    func forward(_ inputs: [Tensor], training: Bool, seed: UInt64, step: Int, rowOffset: Int,
                 phases: inout PhaseTimes?) {
        var clock = phases.map { _ in DispatchTimeNanos.now() }
        beginForward(training: training, rowOffset: rowOffset)
        if !prefix.isEmpty {
            if prefixPerImage {
                parallelFor(batch, threads: min(prefix.count, RuntimeThreads.count)) { w, items in
                    for b in items { runPrefix(prefix[w], inputs, b..<(b + 1), training: training, seed: seed, step: step) }
                }
            } else {
                runPrefix(prefix[0], inputs, 0..<batch, training: training, seed: seed, step: step)
            }
        }
        phases?.lap("student frozen prefix", &clock)
        forwardTrainable(training: training, seed: seed, step: step)
        phases?.lap("student trainable forward", &clock)
    }

    /// The state a forward pass starts from; then the prefix (`runPrefix`, for every image), then
    /// `forwardTrainable`.
    func beginForward(training: Bool, rowOffset: Int) {
        lastForwardTraining = training
        self.rowOffset = rowOffset
        pooledByBatchNorm.removeAll(keepingCapacity: true)
    }

    /// Images `items` of the batch through the frozen prefix's `plan` (one of `prefix`, used by
    /// one caller at a time); its outputs into the values of the nodes that take them, at those
    /// images' rows. After `beginForward` (the rows follow its `rowOffset`).
    func runPrefix(_ plan: CompiledPlan, _ inputs: [Tensor], _ items: Range<Int>, training: Bool, seed: UInt64, step: Int) {
        plan.noiseClock.set(training: training, seed: seed, step: step, row: rowOffset + items.lowerBound)
        storePrefixOutputs(plan.run(inputs, items: items), items)
    }

    /// Image `b` through the rest of the prefix from the values at the cut (`shared`'s, in its
    /// order, one image each) that a teacher's pass made, with worker `w`'s plan: as `runPrefix`.
    func runPrefix(fromCut values: [Tensor], worker w: Int, _ inputs: [Tensor], image b: Int, training: Bool,
                   seed: UInt64, step: Int) {
        guard let shared else { preconditionFailure("no prefix shared with a teacher") }
        let plan = shared.plans[w]
        plan.noiseClock.set(training: training, seed: seed, step: step, row: rowOffset + b)
        // The model's inputs as this image alone, where the rest of the prefix reads them at all.
        let own = inputs.enumerated().map { i, x -> Tensor in
            guard !plan.unreadInputs.contains(i) else { return Tensor(shape: [1], data: [0]) }
            let per = x.data.count / max(1, x.batch)
            return Tensor(shape: [1] + x.shape.dropFirst(), data: Array(x.data[(b * per)..<((b + 1) * per)]))
        }
        storePrefixOutputs(plan.run(own + values, items: 0..<1), b..<(b + 1))
    }

    /// The prefix's outputs for images `items` into the values of the nodes that take them.
    private func storePrefixOutputs(_ outs: [Tensor], _ items: Range<Int>) {
        for (slot, t) in outs.enumerated() {
            for (i, node) in nodes.enumerated() {
                if case .external(slot) = node.op {
                    let perItem = node.count / batch
                    t.data.withUnsafeBufferPointer {
                        (values[i] + items.lowerBound * perItem).update(from: $0.baseAddress!, count: t.data.count)
                    }
                }
            }
        }
    }

    /// The trainable part's forward pass, after the prefix's outputs are in place.
    func forwardTrainable(training: Bool, seed: UInt64, step: Int) {
        for i in nodes.indices where !folded.contains(i) {
            timed("forward", i) { forwardNode(i, training: training, seed: seed, step: step) }
        }
    }

    private func forwardNode(_ i: Int, training: Bool, seed: UInt64, step: Int) {
        let node = nodes[i]
        let out = values[i]
        let x = node.inputs.first.map { UnsafePointer(values[$0]) }
        switch node.op {
        case .external:
            return
        case .conv(let p, let k, let b):
            let g = TrainingPlan.geometry(nodes, i, p)
            let epilogue = Epilogue(shift: b.map { UnsafePointer(weight($0)) })
            if foldsExcites, let m = exciteIntoConv[i], let se = squeezeExcite[m] {
                packPointwiseAVX512(weight(k), k: g.inC, n: g.outC, into: workspace)
                pointwiseConvScaledInput(m: g.outputPixels, n: g.outC, k: g.inC, input: values[se.full],
                                         channelScale: values[se.scale], rowsPerScale: g.outH * g.outW,
                                         packed: workspace, output: out, epilogue: epilogue)
                return
            }
            conv2d(input: x!, geometry: g, kernel: weight(k), output: out, epilogue: epilogue, workspace: workspace,
                   workspaceCount: workspaceCount)
        case .groupedConv(let p, let groups, let k, let b):
            groupedConv2d(input: x!, geometry: TrainingPlan.geometry(nodes, i, p), groups: groups, kernel: weight(k),
                          bias: b.map { UnsafePointer(weight($0)) }, output: out, workspace: workspace,
                          workspaceCount: workspaceCount)
        case .depthwise(let p, let m, let k, let b):
            depthwiseConv2d(input: x!, geometry: TrainingPlan.geometry(nodes, i, p), multiplier: m, kernel: weight(k),
                            output: out, epilogue: Epilogue(shift: b.map { UnsafePointer(weight($0)) }))
        case .dense(let fi, let fo, let k, let b):
            dense(input: x!, rows: node.count / fo, inFeatures: fi, kernel: weight(k), outFeatures: fo, output: out,
                  epilogue: Epilogue(shift: b.map { UnsafePointer(weight($0)) }))
        case .batchNorm(let gamma, let beta, let mean, let variance, let eps, let momentum, let bessel):
            let c = node.shape.last!
            let rows = node.count / c
            if training {
                let stats = caches[i]!
                let fused = activationAfter[i]
                // The squeeze of a squeeze-and-excitation block made as the activation is stored,
                // when there are images enough for every worker (it shares out whole images).
                var pool: (output: UnsafeMutablePointer<Float>, pixels: Int)? = nil
                if poolInBatchNorm, let j = fused, let p = poolAfterActivation[j], batch >= 2 * RuntimeThreads.count {
                    pool = (values[p], node.shape[1] * node.shape[2])
                    pooledByBatchNorm.insert(p)
                }
                let total = batchNormTrainingForward(input: x!, rows: rows, channels: c,
                                                     gamma: gamma.map { UnsafePointer(weight($0)) },
                                                     beta: beta.map { UnsafePointer(weight($0)) }, epsilon: eps,
                                                     activation: fused.map { fusedActivation($0) } ?? .linear,
                                                     output: fused.map { values[$0] } ?? out,
                                                     batchMean: stats, batchVariance: stats + c,
                                                     sync: batchNormSync, averagePool: pool)
                batchNormUpdateMovingStatistics(movingMean: weight(mean), movingVariance: weight(variance),
                                                batchMean: stats, batchVariance: stats + c, channels: c, rows: total,
                                                momentum: Double(momentum), correctVariance: bessel)
            } else {
                let (scale, shift) = foldBatchNorm(
                    gamma: gamma.map { Array(UnsafeBufferPointer(start: weight($0), count: c)) },
                    beta: beta.map { Array(UnsafeBufferPointer(start: weight($0), count: c)) },
                    movingMean: Array(UnsafeBufferPointer(start: weight(mean), count: c)),
                    movingVariance: Array(UnsafeBufferPointer(start: weight(variance), count: c)), epsilon: eps)
                DataOps.affine(x!, out, count: node.count, scale: scale, shift: shift, channels: c)
            }
        case .affine(let scale, let shift):
            DataOps.affine(x!, out, count: node.count, scale: scale, shift: shift, channels: scale.count)
        case .activation(let a):
            if training && batchNormBefore[i] != nil { return }    // computed by its batch norm
            applyActivation(a, from: x!, to: out, count: node.count)
        case .softmax(let axis, let log):
            out.update(from: x!, count: node.count)
            let s = node.shape
            let (outer, length, inner) = (s[..<axis].reduce(1, *), s[axis], s[(axis + 1)...].reduce(1, *))
            if log { logSoftmax(out, outer: outer, axisLength: length, inner: inner) }
            else { softmax(out, outer: outer, axisLength: length, inner: inner) }
        case .dropout(let rate, let noiseShape):
            if training && rate > 0 {
                let maskShape = dropoutMaskShape(node.shape, noiseShape)
                let count = maskShape.reduce(1, *)
                // A mask with a batch axis: this rank's rows are rows rowOffset... of the whole batch.
                let batchAxisFollows = noiseShape.map { $0.count != node.shape.count || $0[0] < 0 } ?? true
                let perRow = batchAxisFollows && count > 0 ? count / maskShape[0] : 0
                dropoutMask(seed: seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15, step: UInt64(step), rate: rate,
                            mask: caches[i]!, count: count, offset: rowOffset * perRow)
                applyDropoutMask(x!, mask: caches[i]!, out, shape: node.shape, maskShape: maskShape, accumulate: false)
            } else {
                out.update(from: x!, count: node.count)
            }
        case .move(let m):
            if pooledByBatchNorm.contains(i) { return }     // made by the batch norm below it
            m.forward(node.inputs.map { UnsafePointer(values[$0]) }, node.inputs.map { nodes[$0].shape }, out, node.shape)
        case .merge(let kind):
            if foldsExcites && excitesFolded.contains(i) { return }     // made by the 1x1 after it
            DataOps.merge(kind, node.inputs.map { UnsafePointer(values[$0]) }, node.inputs.map { nodes[$0].shape }, out, node.shape)
        case .layerNorm(let dims, let gamma, let beta, let eps):
            let n = dims.map { node.shape[$0] }.reduce(1, *)
            withLayerNormParameters(gamma, beta, n) { g, b in
                layerNormalization(x!, out, geometry: LayerNormGeometry(shape: node.shape, dims: dims), gamma: g, beta: b,
                                   epsilon: eps, rms: false)
            }
        case .layerScale(let gamma):
            layerScale(x!, gamma: weight(gamma), channels: node.shape.last!, count: node.count, out)
        case .view:
            out.update(from: x!, count: node.count)
        }
    }
}

extension TrainingPlan {
    /// A LayerNormalization's gamma and beta, ones and zeros standing in for absent ones.
    func withLayerNormParameters(_ gamma: Int?, _ beta: Int?, _ n: Int,
                                 _ body: (UnsafePointer<Float>, UnsafePointer<Float>) -> Void) {
        let ones = [Float](repeating: 1, count: gamma == nil ? n : 0), zeros = [Float](repeating: 0, count: beta == nil ? n : 0)
        ones.withUnsafeBufferPointer { o in
            zeros.withUnsafeBufferPointer { z in
                body(gamma.map { UnsafePointer(weight($0)) } ?? o.baseAddress!, beta.map { UnsafePointer(weight($0)) } ?? z.baseAddress!)
            }
        }
    }
}

/// Keras's noise_shape (None entries follow the input) as the mask's shape, batch included.
func dropoutMaskShape(_ shape: [Int], _ noise: [Int]?) -> [Int] {
    guard let noise, noise.count == shape.count else { return shape }
    return zip(shape, noise).map { $1 < 0 ? $0 : $1 }
}
