import Graph

/// The backward pass of a TrainingPlan: from d loss / d logits back to every trainable weight.
/// Gradients of values are written by the first consumer and accumulated by the others; weight
/// gradients accumulate over the calls of a shared layer within the step.
extension TrainingPlan {
    /// `extra`: gradients of other losses with respect to nodes at or below the logits (feature
    /// distillation), added to node i's gradient once all its consumers (higher indices) have run.
    /// Returns the parameter entries whose gradients it wrote (the first write overwrites, so the
    /// others need no zeroing beforehand).
    @discardableResult
    func backward(logitsGradient: UnsafePointer<Float>, extra: [Int: [Float]] = [:]) -> Set<Int> {
        var written = [Bool](repeating: false, count: nodes.count)
        var weightWritten = Set<Int>()
        // Squeeze-and-excitation tensors whose excite part of the gradient waits for the pool's
        // backward: tensor -> its multiply.
        var pendingExcite: [Int: Int] = [:]
        // Squeeze-and-excitation tensors whose whole gradient waits for their batch norm's
        // backward (`SqueezeExciteFusion.swift`): tensor -> what makes it.
        var deferred: [Int: DeferredExcite] = [:]
        excitesMadeByBatchNorm = 0
        grads[split.logits].update(from: logitsGradient, count: nodes[split.logits].count)
        written[split.logits] = true
        for i in stride(from: split.logits, through: 0, by: -1) {
            if let g = extra[i] {
                precondition(g.count == nodes[i].count, "an extra gradient of the wrong size")
                precondition(activationAfter[i] == nil, "an extra gradient for a value fused away")
                if written[i] {
                    for k in 0..<g.count { grads[i][k] += g[k] }
                } else {
                    grads[i].update(from: g, count: g.count)
                    written[i] = true
                }
            }
            if let m = pendingExcite.removeValue(forKey: i) {
                // The pool's backward did not run (its gradient was never written): the excite's
                // part alone, as the unfused backward writes it.
                let se = squeezeExcite[m]!, s = nodes[m].shape
                timed("backward", m) {
                    channelScaleBackward(input: values[i], scale: values[se.scale], dOutput: grads[m], batch: s[0],
                                         pixels: s[1] * s[2], channels: s[3], dInput: grads[i], dScale: nil,
                                         accumulate: written[i])
                }
                written[i] = true
            }
            guard written[i] else { continue }
            timed("backward", i) { backwardNode(i, &written, &weightWritten, &pendingExcite, &deferred, extra) }
        }
        return weightWritten
    }

    /// The gradient buffer of input `k` of node `i`, and whether to add into it; nil when the
    /// input needs no gradient (a value from the frozen prefix).
    private func inputGradient(_ i: Int, _ k: Int, _ written: inout [Bool]) -> (UnsafeMutablePointer<Float>, Bool)? {
        let input = nodes[i].inputs[k]
        if case .external = nodes[input].op { return nil }
        defer { written[input] = true }
        return (grads[input], written[input])
    }

    private func weightGradient(_ ref: Int, _ weightWritten: inout Set<Int>) -> (UnsafeMutablePointer<Float>, Bool)? {
        guard let g = params.entry(ref).gradient else { return nil }
        return (g, !weightWritten.insert(ref).inserted)
    }

    private func backwardNode(_ i: Int, _ written: inout [Bool], _ weightWritten: inout Set<Int>,
                              _ pendingExcite: inout [Int: Int], _ deferred: inout [Int: DeferredExcite],
                              _ extra: [Int: [Float]]) {
        let node = nodes[i]
        let dy = UnsafePointer(grads[i])
        let y = UnsafePointer(values[i])
        let x = node.inputs.first.map { UnsafePointer(values[$0]) }
        let inShape = node.inputs.first.map { nodes[$0].shape } ?? []
        switch node.op {
        case .external:
            return
        case .conv(let p, let k, let b):
            let g = TrainingPlan.geometry(nodes, i, p)
            if let b, let (db, acc) = weightGradient(b, &weightWritten) {
                biasBackward(dOutput: dy, rows: node.count / g.outC, channels: g.outC, dBias: db, accumulate: acc)
            }
            if let (dk, acc) = weightGradient(k, &weightWritten) {
                if foldsExcites, let m = exciteIntoConv[i], let se = squeezeExcite[m] {
                    // The input is an excite never stored: its products made as they are read.
                    pointwiseBackwardKernel(input: values[se.full], channelScale: values[se.scale], dOutput: dy,
                                            geometry: g, dKernel: dk, accumulate: acc)
                } else {
                    conv2dBackwardKernel(input: x!, dOutput: dy, geometry: g, dKernel: dk, accumulate: acc,
                                         workspace: workspace, workspaceCount: workspaceCount)
                }
            }
            if let (dx, acc) = inputGradient(i, 0, &written) {
                conv2dBackwardInput(dOutput: dy, geometry: g, kernel: weight(k), dInput: dx, accumulate: acc,
                                    workspace: workspace, workspaceCount: workspaceCount)
            }
        case .groupedConv(let p, let groups, let k, let b):
            let g = TrainingPlan.geometry(nodes, i, p)
            if let b, let (db, acc) = weightGradient(b, &weightWritten) {
                biasBackward(dOutput: dy, rows: node.count / g.outC, channels: g.outC, dBias: db, accumulate: acc)
            }
            if let (dk, acc) = weightGradient(k, &weightWritten) {
                groupedConv2dBackwardKernel(input: x!, dOutput: dy, geometry: g, groups: groups, dKernel: dk, accumulate: acc,
                                            workspace: workspace, workspaceCount: workspaceCount)
            }
            if let (dx, acc) = inputGradient(i, 0, &written) {
                groupedConv2dBackwardInput(dOutput: dy, geometry: g, groups: groups, kernel: weight(k), dInput: dx,
                                           accumulate: acc, workspace: workspace, workspaceCount: workspaceCount)
            }
        case .depthwise(let p, let m, let k, let b):
            let g = TrainingPlan.geometry(nodes, i, p)
            if let b, let (db, acc) = weightGradient(b, &weightWritten) {
                biasBackward(dOutput: dy, rows: node.count / g.outC, channels: g.outC, dBias: db, accumulate: acc)
            }
            if let (dk, acc) = weightGradient(k, &weightWritten) {
                depthwiseConv2dBackwardKernel(input: x!, dOutput: dy, geometry: g, multiplier: m, dKernel: dk,
                                              accumulate: acc, workspace: workspace, workspaceCount: workspaceCount)
            }
            if let (dx, acc) = inputGradient(i, 0, &written) {
                depthwiseConv2dBackwardInput(dOutput: dy, geometry: g, multiplier: m, kernel: weight(k), dInput: dx,
                                             accumulate: acc)
            }
        case .dense(let fi, let fo, let k, let b):
            let rows = node.count / fo
            if let b, let (db, acc) = weightGradient(b, &weightWritten) {
                biasBackward(dOutput: dy, rows: rows, channels: fo, dBias: db, accumulate: acc)
            }
            if let (dk, acc) = weightGradient(k, &weightWritten) {
                denseBackwardKernel(input: x!, dOutput: dy, rows: rows, inFeatures: fi, outFeatures: fo, dKernel: dk,
                                    accumulate: acc, workspace: workspace, workspaceCount: workspaceCount)
            }
            if let (dx, acc) = inputGradient(i, 0, &written) {
                denseBackwardInput(dOutput: dy, rows: rows, inFeatures: fi, outFeatures: fo, kernel: weight(k),
                                   dInput: dx, accumulate: acc)
            }
        case .batchNorm(let gamma, let beta, _, _, let eps, _, _):
            let c = node.shape.last!
            let stats = caches[i]!
            // Fused with its activation: from that node's gradient, through f' and the norm at once.
            let fused = activationAfter[i]
            let dy = fused.map { UnsafePointer(grads[$0]) } ?? dy
            guard case (let dx, var acc)? = inputGradient(i, 0, &written) ?? scratchGradient(inShape) else { return }
            let dGamma = gamma.flatMap { weightGradient($0, &weightWritten) }
            let dBeta = beta.flatMap { weightGradient($0, &weightWritten) }
            // The kernel takes one accumulate flag for dInput, dGamma and dBeta. They differ for a
            // BatchNormalization called twice in the model (then dInput is zeroed and everything
            // accumulates) and for an input another consumer has already written (then the
            // parameters' gradients, not zeroed before the pass, are zeroed here).
            let paramAcc = (dGamma?.1 ?? false) || (dBeta?.1 ?? false)
            if paramAcc && !acc { dx.update(repeating: 0, count: nodes[node.inputs[0]].count); acc = true }
            if acc && !paramAcc {
                dGamma?.0.update(repeating: 0, count: c)
                dBeta?.0.update(repeating: 0, count: c)
            }
            // The activation's gradient left unstored by a squeeze-and-excitation pool's backward:
            // made in the first pass's registers, or (when the pass cannot take it) stored now.
            func run(_ excite: ExciteGradient?) {
                batchNormTrainingBackward(input: x!, rows: node.count / c, channels: c,
                                          gamma: gamma.map { UnsafePointer(weight($0)) },
                                          beta: beta.map { UnsafePointer(weight($0)) }, batchMean: stats,
                                          batchVariance: stats + c, epsilon: eps,
                                          activation: fused.map { fusedActivation($0) } ?? .linear, dOutput: dy,
                                          dInput: dx, dGamma: dGamma?.0, dBeta: dBeta?.0, accumulate: acc,
                                          sync: batchNormSync, excite: excite)
            }
            guard let j = fused, let d = deferred.removeValue(forKey: j) else { return run(nil) }
            if acc {
                storeExciteGradient(d, into: grads[j])
                return run(nil)
            }
            excitesMadeByBatchNorm += 1
            withExciteGradient(d) { run($0) }
        case .affine(let scale, let shift):
            guard let (dx, acc) = inputGradient(i, 0, &written) else { return }
            scale.withUnsafeBufferPointer { s in
                shift.withUnsafeBufferPointer { t in
                    channelAffineBackward(input: x!, rows: node.count / scale.count, channels: scale.count,
                                          scale: s.baseAddress, shift: t.baseAddress, activation: .linear, dOutput: dy,
                                          dInput: dx, dScale: nil, dShift: nil, accumulate: acc)
                }
            }
        case .activation(let a):
            if let bn = batchNormBefore[i] {
                written[bn] = true      // its batch norm reads this node's gradient itself
                return
            }
            guard let (dx, acc) = inputGradient(i, 0, &written) else { return }
            activationBackward(a, input: x!, dOutput: dy, dInput: dx, count: node.count, accumulate: acc)
        case .softmax(let axis, let log):
            guard let (dx, acc) = inputGradient(i, 0, &written) else { return }
            let s = node.shape
            let (outer, length, inner) = (s[..<axis].reduce(1, *), s[axis], s[(axis + 1)...].reduce(1, *))
            if log {
                logSoftmaxBackward(output: y, dOutput: dy, dInput: dx, outer: outer, axisLength: length, inner: inner,
                                   accumulate: acc)
            } else {
                softmaxBackward(output: y, dOutput: dy, dInput: dx, outer: outer, axisLength: length, inner: inner,
                                accumulate: acc)
            }
        case .dropout(let rate, let noiseShape):
            guard let (dx, acc) = inputGradient(i, 0, &written) else { return }
            if rate > 0 && lastForwardTraining {
                applyDropoutMask(dy, mask: caches[i]!, dx, shape: node.shape,
                                 maskShape: dropoutMaskShape(node.shape, noiseShape), accumulate: acc)
            } else {
                identityBackward(dOutput: dy, dInput: dx, count: node.count, accumulate: acc)
            }
        case .move(let m):
            if let e = squeezeExciteOfPool[i], pendingExcite[node.inputs[0]] == e,
               let (dx, acc) = inputGradient(i, 0, &written) {
                // Squeeze-and-excitation: the excite's part and the pool's in one pass.
                precondition(!acc, "a squeeze-and-excitation tensor's gradient written before its pool's")
                let full = node.inputs[0]
                pendingExcite[full] = nil
                let d = DeferredExcite(multiply: e, pool: i)
                if fuseExciteIntoBatchNorm, extra[full] == nil, batchNormBefore[full] != nil,
                   ExciteGradient.fusable(fusedActivation(full)) {
                    deferred[full] = d      // made by the batch norm's backward, never stored
                    return
                }
                storeExciteGradient(d, into: dx)
                return
            }
            // Each input's gradient is written or added according to its own flag.
            let xs = node.inputs.map { UnsafePointer(values[$0]) }, shapes = node.inputs.map { nodes[$0].shape }
            for k in node.inputs.indices {
                guard let (dx, acc) = inputGradient(i, k, &written) else { continue }
                m.backward(input: k, xs, shapes, dy: dy, node.shape, dx: dx, accumulate: acc)
            }
        case .merge(let kind):
            let xs = node.inputs.map { UnsafePointer(values[$0]) }, shapes = node.inputs.map { nodes[$0].shape }
            if fuseSqueezeExcite, let se = squeezeExcite[i], !written[se.full] {
                // The scale's gradient only; the tensor's waits for its pool's backward.
                let ds = inputGradient(i, node.inputs.firstIndex(of: se.scale)!, &written)
                if let (ds, acc) = ds {
                    let s = node.shape
                    channelScaleBackward(input: values[se.full], scale: values[se.scale], dOutput: dy, batch: s[0],
                                         pixels: s[1] * s[2], channels: s[3], dInput: nil, dScale: ds, accumulate: acc)
                }
                pendingExcite[se.full] = i
                return
            }
            let wanted = node.inputs.indices.map { inputGradient(i, $0, &written) }
            let flags = Set(wanted.compactMap { $0?.1 })
            if flags.count == 1 && Set(node.inputs).count == node.inputs.count {
                // One call for all inputs (the squeeze-and-excitation multiply then reads dy once
                // for both gradients): the same arithmetic per input as separate calls.
                mergeBackward(inputs: xs, shapes: shapes, outShape: node.shape, kind: kind, dOutput: dy,
                              dInputs: wanted.map { $0?.0 }, accumulate: flags.first!)
                return
            }
            for (k, target) in wanted.enumerated() {
                guard let (dx, acc) = target else { continue }
                var targets = [UnsafeMutablePointer<Float>?](repeating: nil, count: node.inputs.count)
                targets[k] = dx
                mergeBackward(inputs: xs, shapes: shapes, outShape: node.shape, kind: kind, dOutput: dy, dInputs: targets,
                              accumulate: acc)
            }
        case .layerNorm(let dims, let gamma, let beta, let eps):
            let dGamma = gamma.flatMap { weightGradient($0, &weightWritten) }
            let dBeta = beta.flatMap { weightGradient($0, &weightWritten) }
            let dx = inputGradient(i, 0, &written)
            // gamma and beta are written or added together: both belong to one call of the layer.
            layerNormBackward(input: x!, dOutput: dy, geometry: LayerNormGeometry(shape: node.shape, dims: dims),
                              gamma: gamma.map { UnsafePointer(weight($0)) }, epsilon: eps, dInput: dx?.0,
                              accumulate: dx?.1 ?? false, dGamma: dGamma?.0, dBeta: dBeta?.0,
                              accumulateParams: (dGamma?.1 ?? false) || (dBeta?.1 ?? false))
        case .layerScale(let gamma):
            let dGamma = weightGradient(gamma, &weightWritten)
            let dx = inputGradient(i, 0, &written)
            layerScaleBackward(input: x!, dOutput: dy, gamma: weight(gamma), channels: node.shape.last!, count: node.count,
                               dInput: dx?.0, accumulate: dx?.1 ?? false, dGamma: dGamma?.0, accumulateParams: dGamma?.1 ?? false)
        case .view:
            guard let (dx, acc) = inputGradient(i, 0, &written) else { return }
            identityBackward(dOutput: dy, dInput: dx, count: node.count, accumulate: acc)
        }
    }

    /// The gradient of squeeze-and-excitation tensor `full` (excite's part and pool's) into dx.
    private func storeExciteGradient(_ d: DeferredExcite, into dx: UnsafeMutablePointer<Float>) {
        let s = nodes[d.multiply].shape
        channelScaleAndPoolBackward(dOutput: grads[d.multiply], scale: values[squeezeExcite[d.multiply]!.scale],
                                    dPool: grads[d.pool], batch: s[0], pixels: s[1] * s[2], channels: s[3], dInput: dx)
    }

    /// The same gradient as the first batch-norm pass reads it (`ExciteGradient`), with the pool's
    /// part dPool / pixels rounded as `channelScaleAndPoolBackward` rounds it.
    private func withExciteGradient(_ d: DeferredExcite, _ body: (ExciteGradient) -> Void) {
        let s = nodes[d.multiply].shape, count = s[0] * s[3], pixels = s[1] * s[2]
        let inv = 1 / Float(max(1, pixels)), dPool = grads[d.pool]
        withUnsafeTemporaryAllocation(of: Float.self, capacity: count) { buf in
            let term = buf.baseAddress!
            for k in 0..<count { term[k] = dPool[k] * inv }
            body(ExciteGradient(dOutput: grads[d.multiply], scale: values[squeezeExcite[d.multiply]!.scale],
                                poolTerm: term, pixels: pixels))
        }
    }

    /// A throwaway input gradient for layers whose own parameters need the backward pass although
    /// their input does not (the first trainable layer after the frozen prefix).
    private func scratchGradient(_ shape: [Int]) -> (UnsafeMutablePointer<Float>, Bool)? {
        let n = shape.reduce(1, *)
        guard n <= scratchCount else { return nil }
        return (scratch, false)
    }
}
