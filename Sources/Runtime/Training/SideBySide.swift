import Foundation

// The teachers' forward passes and the student's frozen prefix as one job of the worker pool.
//
// Both already run whole images per worker when the images are large (each image through a
// single-threaded batch-1 plan of that worker's), but one after the other: the teacher's pass ends
// when its last image does, with the other worker idle if it finished first, and the prefix then
// starts. In one job the workers take the next image of either as they finish one, so a batch
// whose image count does not divide among the workers (the last, partial batch) or a worker
// slowed by another process leaves no worker waiting until the very end. Each image goes through
// the same single-threaded plan as before, so the logits and the prefix's values are the same
// bits (`SideBySideForwardTests`). A teacher that shares part of the prefix (`SharedPrefix.swift`)
// runs each image and then the rest of that image's prefix in one task, from the values its pass
// returned.

extension Distiller {
    /// One pass of the job: a teacher's batch-1 plan on a range of images, or one image through
    /// the student's frozen prefix.
    private enum Pass {
        case teacher(Int, Int)     // teacher, its range
        case image(Int)
        /// One image through the teacher that shares the prefix, then the rest of the prefix.
        case shared(Int, Int)      // teacher, image
    }

    /// The teachers' weighted mean logits for `x`, with the student's frozen prefix run on `x`
    /// into `plan` (after `plan.beginForward`), both in one pool job; nil (and nothing run) where
    /// the step runs them one after the other: a teacher cache, feature pairs, a single worker,
    /// or a teacher or prefix whose passes are not whole images on single-threaded plans (small
    /// images, batch 1), where one job would change how the kernels split their work.
    func teacherLogitsBesidePrefix(_ x: Tensor, plan: TrainingPlan, seed: UInt64, step: Int) throws -> Tensor? {
        guard sideBySide, features == nil, !teachers.isEmpty, plan.prefix.isEmpty || plan.prefixPerImage,
              !plan.prefix.isEmpty || teachers.count > 1, !ParallelRegion.inside else { return nil }
        let n = x.batch
        let itemShapes = [Array(x.shape.dropFirst())]
        var found: [(ranges: [Range<Int>], plans: [Int: [CompiledPlan]])] = []
        for teacher in teachers {
            try teacher.checkInputs([x])
            let (ranges, _, plans) = try teacher.passes(itemShapes: itemShapes, items: n, batchSize: n)
            guard ranges.count > 1 else { return nil }
            found.append((ranges, plans))
        }
        // The teacher whose pass also gives the student's prefix its shared values
        // (`SharedPrefix.swift`), when that pass goes image by image as the prefix does.
        let sharing = sharedPrefix.flatMap { s in plan.shared != nil && found[s.teacher].ranges.count == n ? s.teacher : nil }
        var passes: [Pass] = []
        for (t, run) in found.enumerated() {
            passes += run.ranges.indices.map { t == sharing ? .shared(t, $0) : .teacher(t, $0) }
        }
        if !plan.prefix.isEmpty && sharing == nil { passes += (0..<n).map { .image($0) } }
        var workers = min(RuntimeThreads.count, passes.count)
        if !plan.prefix.isEmpty { workers = min(workers, plan.prefix.count) }
        guard workers > 1 else { return nil }
        // A plan of every teacher's for each worker (compiled here: compiling is not thread-safe).
        for (t, teacher) in teachers.enumerated() {
            for count in found[t].plans.keys where found[t].plans[count]!.count < workers {
                found[t].plans[count] = try (0..<workers).map { try teacher.plan(for: itemShapes.map { [count] + $0 }, instance: $0) }
            }
        }
        let runs = found
        let first = runs.indices.map { t in runs[..<t].reduce(0) { $0 + $1.ranges.count } }
        var parts = [[Tensor]](repeating: [], count: runs.reduce(0) { $0 + $1.ranges.count })
        parts.withUnsafeMutableBufferPointer { out in
            poolFor(workers: workers, tasks: passes.count) { w, task in
                switch passes[task] {
                case .teacher(let t, let i):
                    let range = runs[t].ranges[i]
                    out[first[t] + i] = runs[t].plans[range.count]![w].run([x], items: range)
                case .image(let b):
                    plan.runPrefix(plan.prefix[w], [x], b..<(b + 1), training: true, seed: seed, step: step)
                case .shared(let t, let b):
                    // The shared values, then the logits (the session's last output).
                    let outs = runs[t].plans[1]![w].run([x], items: b..<(b + 1))
                    out[first[t] + b] = [outs.last!]
                    plan.runPrefix(fromCut: Array(outs.dropLast()), worker: w, [x], image: b, training: true,
                                   seed: seed, step: step)
                }
            }
        }
        let logits = runs.indices.map { t in
            InferenceSession.joined(Array(parts[first[t]..<(first[t] + runs[t].ranges.count)]), items: n).last!
        }
        return try Self.meanLogits(logits, weights: teacherWeights)
    }
}
