// Feature distillation: a student layer's output pulled towards a teacher layer's.
//
// Each pair adds weight * loss(student map, teacher map) to the step's loss. The student map is
// first matched to the teacher's: average pooling of a larger student map (integer factors), else
// a bilinear resize of the teacher map to the student's size (no gradient is needed there); then,
// for mse/cosine/mae when the channel counts differ, a trainable 1x1 convolution (the adaptor,
// glorot_uniform kernel, zero bias) maps the student's channels onto the teacher's. The adaptors
// train with the student through the same optimizer but are not part of the student: the written
// model has exactly its own layers, and checkpoints carry the adaptors beside it.
//
// The reductions are Keras 3's (keras.distillation.FeatureDistillation with the loss given by
// name): mse and mae the mean over every element; cosine the mean over every position of
// -sum_c(l2_normalize(t) * l2_normalize(s)) along the channels (keras.losses.cosine_similarity,
// from -1 for aligned vectors to 1 for opposite ones, norms floored at 1e-7); at (attention transfer,
// Zagoruyko & Komodakis 2017, the authors' code): per image the map q_p = sum_c x_pc^2, divided by
// its L2 norm over the positions (floored at 1e-12), then the mean over images and positions of
// the squared difference. Data parallelism: every normaliser counts the whole batch's images, so
// the ranks' gradients sum to the whole batch's.
import Foundation
import Graph

/// The loss between a pair of feature maps.
public enum FeatureLoss: String, Sendable, Codable, CaseIterable {
    case mse, cosine, mae, at
}

/// One teacher layer, one student layer, the loss between their outputs and its weight.
public struct FeaturePair: Sendable, Equatable, Codable, CustomStringConvertible {
    public var teacherLayer: String
    public var studentLayer: String
    public var loss: FeatureLoss
    public var weight: Double

    public init(teacherLayer: String, studentLayer: String, loss: FeatureLoss = .mse, weight: Double = 1) {
        self.teacherLayer = teacherLayer
        self.studentLayer = studentLayer
        self.loss = loss
        self.weight = weight
    }

    /// `TEACHER_LAYER:STUDENT_LAYER[:LOSS[:WEIGHT]]` (layer names as `findLayer` takes them).
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard (2...4).contains(parts.count), !parts[0].isEmpty, !parts[1].isEmpty else {
            throw RuntimeError("'\(text)' is not TEACHER_LAYER:STUDENT_LAYER[:LOSS[:WEIGHT]]")
        }
        var loss = FeatureLoss.mse
        if parts.count > 2 {
            guard let l = FeatureLoss(rawValue: parts[2].lowercased()) else {
                throw RuntimeError("'\(text)': unknown loss '\(parts[2])' (mse, cosine, mae or at)")
            }
            loss = l
        }
        var weight = 1.0
        if parts.count > 3 {
            guard let w = Double(parts[3]), w >= 0, w.isFinite else {
                throw RuntimeError("'\(text)': the weight '\(parts[3])' is not a number of 0 or more")
            }
            weight = w
        }
        self.init(teacherLayer: parts[0], studentLayer: parts[1], loss: loss, weight: weight)
    }

    public var description: String { "\(teacherLayer):\(studentLayer):\(loss.rawValue):\(weight)" }
}

/// The value and gradient of one feature loss on matched maps.
public enum FeatureLosses {
    /// Floors of the norms: Keras's `normalize` (backend epsilon) and PyTorch's `F.normalize`.
    static let cosineEpsilon: Float = 1e-7
    static let attentionEpsilon: Double = 1e-12

    /// `student` [images, positions, studentChannels], `teacher` [images, positions, teacherChannels]
    /// (the channel counts equal except for `at`). Returns this share's part of the loss, the sum of
    /// its terms over `normalizerImages` images (the whole batch's), and adds
    /// `weight` * d loss / d student into `gradient` when given.
    public static func value(_ kind: FeatureLoss, student: UnsafePointer<Float>, teacher: UnsafePointer<Float>,
                             images: Int, positions: Int, studentChannels cs: Int, teacherChannels ct: Int,
                             normalizerImages: Int, weight: Double = 1,
                             gradient: UnsafeMutablePointer<Float>? = nil) -> Double {
        let n = Double(max(1, normalizerImages))
        switch kind {
        case .mse, .mae:
            precondition(cs == ct, "mse and mae need equal channel counts")
            let count = images * positions * cs
            let norm = n * Double(positions * cs)
            var sum = 0.0
            let scale = Float(weight / norm)
            for i in 0..<count {
                let d = student[i] - teacher[i]
                if kind == .mse {
                    sum += Double(d) * Double(d)
                    gradient?[i] += 2 * d * scale
                } else {
                    sum += Double(abs(d))
                    gradient?[i] += (d > 0 ? 1 : (d < 0 ? -1 : 0)) * scale
                }
            }
            return sum / norm
        case .cosine:
            precondition(cs == ct, "cosine needs equal channel counts")
            let norm = n * Double(positions)
            let scale = weight / norm
            var sum = 0.0
            for v in 0..<(images * positions) {
                let s = student + v * cs, t = teacher + v * cs
                var ss = 0.0, tt = 0.0, st = 0.0
                for c in 0..<cs {
                    ss += Double(s[c]) * Double(s[c])
                    tt += Double(t[c]) * Double(t[c])
                    st += Double(s[c]) * Double(t[c])
                }
                // x * min(1/|x|, 1/eps), as Keras normalises.
                let eps = Double(cosineEpsilon)
                let invS = min(1 / ss.squareRoot(), 1 / eps), invT = min(1 / tt.squareRoot(), 1 / eps)
                let cosine = st * invS * invT
                sum -= cosine
                guard let g = gradient?.advanced(by: v * cs) else { continue }
                // d(-s.t̂ invS)/ds: -(t̂ - ŝ (ŝ.t̂)) invS above the floor; -t̂ invS (a constant scale) at it.
                let clamped = ss.squareRoot() <= eps
                for c in 0..<cs {
                    let that = Double(t[c]) * invT
                    let shat = Double(s[c]) * invS
                    let d = clamped ? -that * invS : -(that - shat * cosine) * invS
                    g[c] += Float(d * scale)
                }
            }
            return sum / norm
        case .at:
            let norm = n * Double(positions)
            var sum = 0.0
            var qs = [Double](repeating: 0, count: positions), qt = qs
            for b in 0..<images {
                func energy(_ x: UnsafePointer<Float>, _ c: Int, _ q: inout [Double]) -> Double {
                    var total = 0.0
                    for p in 0..<positions {
                        var e = 0.0
                        for k in 0..<c { let v = Double(x[(b * positions + p) * c + k]); e += v * v }
                        q[p] = e
                        total += e * e
                    }
                    return max(total.squareRoot(), attentionEpsilon)
                }
                let ns = energy(student, cs, &qs), nt = energy(teacher, ct, &qt)
                var dot = 0.0   // a_s . g, for the normalisation's backward
                var gq = [Double](repeating: 0, count: positions)
                for p in 0..<positions {
                    let d = qs[p] / ns - qt[p] / nt
                    sum += d * d
                    gq[p] = 2 * d * weight / norm
                    dot += (qs[p] / ns) * gq[p]
                }
                guard let gradient else { continue }
                let clamped = ns <= attentionEpsilon
                for p in 0..<positions {
                    // d(q/|q|)/dq = (I - a a^T)/|q| (or 1/eps below the floor), then dq/dx = 2x.
                    let dq = clamped ? gq[p] / ns : (gq[p] - (qs[p] / ns) * dot) / ns
                    for k in 0..<cs {
                        let i = (b * positions + p) * cs + k
                        gradient[i] += Float(dq * 2 * Double(student[i]))
                    }
                }
            }
            return sum / norm
        }
    }

    /// Bilinear resize of [images, h, w, c] to [images, outH, outW, c] with half-pixel centres, as
    /// `tf.image.resize(method="bilinear")` (no antialiasing).
    public static func resizeBilinear(_ source: [Float], images: Int, height h: Int, width w: Int, channels c: Int,
                                      outHeight oh: Int, outWidth ow: Int) -> [Float] {
        func weights(_ out: Int, _ inSize: Int) -> [(Int, Int, Float)] {
            let scale = Double(inSize) / Double(out)
            return (0..<out).map { i in
                let v = (Double(i) + 0.5) * scale - 0.5
                let f = v.rounded(.down)
                return (max(Int(f), 0), min(Int(v.rounded(.up)), inSize - 1), Float(v - f))
            }
        }
        let ys = weights(oh, h), xs = weights(ow, w)
        var out = [Float](repeating: 0, count: images * oh * ow * c)
        for b in 0..<images {
            for (i, (y0, y1, ly)) in ys.enumerated() {
                for (j, (x0, x1, lx)) in xs.enumerated() {
                    for k in 0..<c {
                        func at(_ y: Int, _ x: Int) -> Float { source[((b * h + y) * w + x) * c + k] }
                        let top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * lx
                        let bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * lx
                        out[((b * oh + i) * ow + j) * c + k] = top + (bottom - top) * ly
                    }
                }
            }
        }
        return out
    }
}

/// The adaptor of one pair: a 1x1 convolution's kernel [in, out] and bias [out], with gradients.
final class FeatureAdaptor {
    let inChannels: Int, outChannels: Int
    let kernel: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>
    let dKernel: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>
    let name: String

    init(name: String, inChannels: Int, outChannels: Int, seed: UInt64) {
        self.name = name
        self.inChannels = inChannels
        self.outChannels = outChannels
        let k = inChannels * outChannels
        kernel = .allocate(capacity: k)
        dKernel = .allocate(capacity: k)
        bias = .allocate(capacity: outChannels)
        dBias = .allocate(capacity: outChannels)
        // glorot_uniform of a 1x1 convolution: fan in = input channels, fan out = output channels.
        let limit = (6 / Double(inChannels + outChannels)).squareRoot()
        var rng = SplitMix64(seed: seed)
        for i in 0..<k { kernel[i] = Float(rng.uniform(-limit, limit)) }
        bias.initialize(repeating: 0, count: outChannels)
        dKernel.initialize(repeating: 0, count: k)
        dBias.initialize(repeating: 0, count: outChannels)
    }

    deinit { [kernel, bias, dKernel, dBias].forEach { $0.deallocate() } }

    var buffers: [ParameterBuffer] {
        [ParameterBuffer(name: name + "/kernel", value: kernel, gradient: dKernel, count: inChannels * outChannels),
         ParameterBuffer(name: name + "/bias", value: bias, gradient: dBias, count: outChannels)]
    }
}

/// The feature pairs of a distillation, resolved against the teacher and the student.
final class FeatureDistillation {
    struct Match {
        var pair: FeaturePair
        /// The student's graph node, and the teacher session's output giving the teacher map.
        var studentNode: Int
        var teacherOutput: Int
        /// (height, width, channels), a vector as (1, 1, n).
        var student: (h: Int, w: Int, c: Int)
        var teacher: (h: Int, w: Int, c: Int)
        /// Student pooled by these factors, or the teacher map resized, to (height, width).
        var pool: (Int, Int)?
        var resize: Bool
        var height: Int, width: Int
        var adaptor: FeatureAdaptor?
    }
    let matches: [Match]
    /// The teacher layers the first teacher's session returns (before its logits).
    let teacherLayers: [String]

    var adaptors: [FeatureAdaptor] { matches.compactMap(\.adaptor) }

    /// Resolves `pairs`: teacher layers in `teacher`, student layers in the trainable part of the
    /// split (a layer in the frozen prefix, or after the logits, has no gradient to give).
    init(pairs: [FeaturePair], student: LoadedModel, split: TrainingSplit, teacher: LoadedModel, seed: UInt64) throws {
        let sg = student.graph, tg = teacher.graph
        let imageShape = sg.nodes[sg.inputs[0]].outputShape
        let teacherShapes: [Int: [Int]]
        do { teacherShapes = try tg.concreteShapes(inputShapes: [imageShape]) } catch {
            throw RuntimeError("feature distillation: the teacher '\(tg.name)' does not take the student's images \(imageShape): \(error)")
        }
        var layers: [String] = []
        var matches: [Match] = []
        for (index, pair) in pairs.enumerated() {
            func fail(_ why: String) -> RuntimeError { RuntimeError("feature pair \(pair.teacherLayer):\(pair.studentLayer): \(why)") }
            let tNode: Int, sNode: Int
            do { tNode = try tg.findLayer(pair.teacherLayer) } catch { throw fail("the teacher: \(error)") }
            do { sNode = try sg.findLayer(pair.studentLayer) } catch { throw fail("the student: \(error)") }
            guard let trainNode = split.trainNode[sNode], !split.nodes[trainNode].isExternal else {
                throw fail("student layer '\(pair.studentLayer)' is in the frozen part of the student, where no gradient "
                           + "reaches: pick a trainable layer or one after it")
            }
            guard trainNode <= split.logits else {
                throw fail("student layer '\(pair.studentLayer)' comes after the logits (layer '\(split.nodes[split.logits].layer)'): "
                           + "pick a layer at or before them")
            }
            func hwc(_ shape: [Int], _ who: String, _ name: String) throws -> (h: Int, w: Int, c: Int) {
                switch shape.count {
                case 3 where shape.allSatisfy({ $0 > 0 }): return (shape[0], shape[1], shape[2])
                case 1 where shape[0] > 0 && pair.loss != .at: return (1, 1, shape[0])
                default:
                    throw fail("\(who) layer '\(name)' gives \(shape); "
                               + (pair.loss == .at ? "at needs a feature map (height, width, channels)"
                                                   : "a feature needs a map (height, width, channels) or a vector"))
                }
            }
            let s = try hwc(Array(split.nodes[trainNode].shape.dropFirst()), "student", pair.studentLayer)
            let t = try hwc(teacherShapes[tNode] ?? [], "teacher", pair.teacherLayer)
            var pool: (Int, Int)? = nil
            var resize = false
            if (s.h, s.w) != (t.h, t.w) {
                if s.h >= t.h, s.w >= t.w, s.h % t.h == 0, s.w % t.w == 0 { pool = (s.h / t.h, s.w / t.w) } else { resize = true }
            }
            let (h, w) = pool != nil ? (t.h, t.w) : (s.h, s.w)
            var adaptor: FeatureAdaptor? = nil
            if pair.loss != .at && s.c != t.c {
                adaptor = FeatureAdaptor(name: "feature_adaptor_\(index)", inChannels: s.c, outChannels: t.c,
                                         seed: SplitMix64.mix(seed ^ 0xFEA7_0000_0000_0000 &+ UInt64(index)))
            }
            if !layers.contains(pair.teacherLayer) { layers.append(pair.teacherLayer) }
            matches.append(Match(pair: pair, studentNode: sNode, teacherOutput: layers.firstIndex(of: pair.teacherLayer)!,
                                 student: s, teacher: t, pool: pool, resize: resize, height: h, width: w, adaptor: adaptor))
        }
        self.matches = matches
        teacherLayers = layers
    }

    /// The pairs as a run's identity records them.
    static func identity(_ pairs: [FeaturePair]) -> String? {
        pairs.isEmpty ? nil : pairs.map(\.description).joined(separator: ", ")
    }

    /// The weighted feature losses of a step (this share's part of the whole batch's), the
    /// adaptors' gradients written, and per student train node the gradient to add there.
    func step(plan: TrainingPlan, teacherMaps: [Tensor], rows: Int, totalRows: Int) -> (loss: Double, gradients: [Int: [Float]]) {
        zeroGradients()
        var total = 0.0
        var injected: [Int: [Float]] = [:]
        guard rows > 0 else { return (0, injected) }
        for m in matches {
            let node = plan.split.trainNode[m.studentNode]!
            let (h, w) = (m.height, m.width)
            let positions = h * w
            let raw = UnsafeBufferPointer(start: plan.values[node], count: plan.nodes[node].count)
            // Student: pooled to the matched size, then through the adaptor.
            var pooled: [Float]
            if let (fh, fw) = m.pool {
                pooled = [Float](repeating: 0, count: rows * positions * m.student.c)
                let inv = 1 / Float(fh * fw)
                for b in 0..<rows { for i in 0..<h { for j in 0..<w { for c in 0..<m.student.c {
                    var v: Float = 0
                    for di in 0..<fh { for dj in 0..<fw { v += raw[((b * m.student.h + i * fh + di) * m.student.w + j * fw + dj) * m.student.c + c] } }
                    pooled[((b * h + i) * w + j) * m.student.c + c] = v * inv
                } } } }
            } else {
                pooled = Array(raw)
            }
            let channels = m.adaptor?.outChannels ?? m.student.c
            var mapped = pooled
            if let a = m.adaptor {
                mapped = [Float](repeating: 0, count: rows * positions * a.outChannels)
                pooled.withUnsafeBufferPointer { x in
                    mapped.withUnsafeMutableBufferPointer { y in
                        dense(input: x.baseAddress!, rows: rows * positions, inFeatures: a.inChannels, kernel: a.kernel,
                              outFeatures: a.outChannels, output: y.baseAddress!, epilogue: Epilogue(shift: UnsafePointer(a.bias)))
                    }
                }
            }
            // Teacher: resized to the student's size when it is not a multiple of it.
            var teacher = teacherMaps[m.teacherOutput].data
            if m.resize {
                teacher = FeatureLosses.resizeBilinear(teacher, images: rows, height: m.teacher.h, width: m.teacher.w,
                                                       channels: m.teacher.c, outHeight: h, outWidth: w)
            }
            var g = [Float](repeating: 0, count: mapped.count)
            let loss = mapped.withUnsafeBufferPointer { s in
                teacher.withUnsafeBufferPointer { t in
                    g.withUnsafeMutableBufferPointer { gp in
                        FeatureLosses.value(m.pair.loss, student: s.baseAddress!, teacher: t.baseAddress!, images: rows,
                                            positions: positions, studentChannels: channels, teacherChannels: m.teacher.c,
                                            normalizerImages: totalRows, weight: m.pair.weight, gradient: gp.baseAddress!)
                    }
                }
            }
            total += m.pair.weight * loss
            // Back through the adaptor (its weights' gradients, then its input's) and the pooling.
            if let a = m.adaptor {
                var dx = [Float](repeating: 0, count: pooled.count)
                let workspaceCount = denseBackwardKernelWorkspaceCount(inFeatures: a.inChannels, outFeatures: a.outChannels)
                var workspace = [Float](repeating: 0, count: max(1, workspaceCount))
                pooled.withUnsafeBufferPointer { x in
                    g.withUnsafeBufferPointer { dy in
                        workspace.withUnsafeMutableBufferPointer { ws in
                            denseBackwardKernel(input: x.baseAddress!, dOutput: dy.baseAddress!, rows: rows * positions,
                                                inFeatures: a.inChannels, outFeatures: a.outChannels, dKernel: a.dKernel,
                                                accumulate: false, workspace: ws.baseAddress!, workspaceCount: workspaceCount)
                        }
                        biasBackward(dOutput: dy.baseAddress!, rows: rows * positions, channels: a.outChannels, dBias: a.dBias,
                                     accumulate: false)
                        dx.withUnsafeMutableBufferPointer { d in
                            denseBackwardInput(dOutput: dy.baseAddress!, rows: rows * positions, inFeatures: a.inChannels,
                                               outFeatures: a.outChannels, kernel: a.kernel, dInput: d.baseAddress!, accumulate: false)
                        }
                    }
                }
                g = dx
            }
            if let (fh, fw) = m.pool {
                var dRaw = [Float](repeating: 0, count: raw.count)
                let inv = 1 / Float(fh * fw)
                for b in 0..<rows { for i in 0..<h { for j in 0..<w { for c in 0..<m.student.c {
                    let v = g[((b * h + i) * w + j) * m.student.c + c] * inv
                    for di in 0..<fh { for dj in 0..<fw { dRaw[((b * m.student.h + i * fh + di) * m.student.w + j * fw + dj) * m.student.c + c] = v } }
                } } } }
                g = dRaw
            }
            if let existing = injected[node] { for i in g.indices { g[i] += existing[i] } }
            injected[node] = g
        }
        return (total, injected)
    }

    func zeroGradients() {
        for a in adaptors {
            a.dKernel.update(repeating: 0, count: a.inChannels * a.outChannels)
            a.dBias.update(repeating: 0, count: a.outChannels)
        }
    }

    /// The adaptors' weights, by name (what a checkpoint carries).
    var state: [NamedArray] {
        adaptors.flatMap { a in
            [NamedArray(name: a.name + "/kernel", values: Array(UnsafeBufferPointer(start: a.kernel, count: a.inChannels * a.outChannels))),
             NamedArray(name: a.name + "/bias", values: Array(UnsafeBufferPointer(start: a.bias, count: a.outChannels)))]
        }
    }

    func restore(_ arrays: [NamedArray]) throws {
        let mine = state
        guard arrays.map(\.name) == mine.map(\.name), zip(arrays, mine).allSatisfy({ $0.values.count == $1.values.count }) else {
            throw RuntimeError("the checkpoint's feature adaptors (\(arrays.map { "\($0.name) \($0.values.count)" }.joined(separator: ", "))) "
                               + "do not fit this run's (\(mine.map { "\($0.name) \($0.values.count)" }.joined(separator: ", ")))")
        }
        for a in adaptors {
            let k = arrays.first { $0.name == a.name + "/kernel" }!.values, b = arrays.first { $0.name == a.name + "/bias" }!.values
            a.kernel.update(from: k, count: k.count)
            a.bias.update(from: b, count: b.count)
        }
    }
}

extension TrainNode {
    var isExternal: Bool { if case .external = op { return true } else { return false } }
}
