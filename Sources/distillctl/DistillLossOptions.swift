import ArgumentParser
import Foundation
import Graph
import Runtime

/// The logit loss `distill` puts between the student and the teachers' soft targets.
struct LossOptions: ParsableArguments {
    enum Kind: String, ExpressibleByArgument, CaseIterable { case kd, dkd, dist }

    @Option(help: ArgumentHelp("The soft (teacher) term: kd, dkd or dist; each is multiplied by T^2 and weighted by 1 - alpha.", discussion: """
        kd:   KL(softmax(teacher/T) || softmax(student/T)), Keras's KLDivergence (Hinton et al.).
        dkd:  decoupled KD (Zhao et al. 2022): dkd-alpha * TCKD + dkd-beta * NCKD, TCKD the KL of the binary (target class, the rest) probabilities, NCKD the KL among the non-target classes; the target is the label (the teacher's top class for an unlabelled image).
        dist: DIST (Huang et al. 2022): dist-beta * (1 - mean Pearson correlation of each image's class probabilities) + dist-gamma * (1 - mean Pearson correlation of each class's probabilities over the batch).
        """))
    var loss: Kind = .kd

    @Option(help: "DKD's weight of the target-class term (TCKD; default 1).") var dkdAlpha: Double?
    @Option(help: "DKD's weight of the non-target-class term (NCKD; default 8).") var dkdBeta: Double?
    @Option(help: "DIST's weight of the inter-class (per image) relation (default 1).") var distBeta: Double?
    @Option(help: "DIST's weight of the intra-class (per class, over the batch) relation (default 1).") var distGamma: Double?

    /// The chosen loss, after checking its weights (an error names the flag).
    func softLoss() throws -> SoftLoss {
        for (name, value) in [("--dkd-alpha", dkdAlpha), ("--dkd-beta", dkdBeta), ("--dist-beta", distBeta), ("--dist-gamma", distGamma)] {
            guard let value else { continue }
            guard value >= 0 && value.isFinite else { throw ValidationError("\(name) must be 0 or more") }
            let owner = name.hasPrefix("--dkd") ? Kind.dkd : .dist
            if loss != owner { throw ValidationError("\(name) is for --loss \(owner.rawValue)") }
        }
        switch loss {
        case .kd: return .kd
        case .dkd: return .dkd(alpha: dkdAlpha ?? 1, beta: dkdBeta ?? 8)
        case .dist: return .dist(beta: distBeta ?? 1, gamma: distGamma ?? 1)
        }
    }
}

/// The teachers of `distill`: one or several models, or a teacher cache.
struct TeacherOptions: ParsableArguments {
    @Option(help: "A teacher: a full model (.h5 or .keras), or a weights-only file (.h5 or .weights.h5) with --teacher-arch. Repeat for several teachers: the soft targets come from the weighted mean of their logits.")
    var teacher: [String] = []

    @Option(help: "The teachers' logits from `distillctl teacher-cache`, used instead of running them (no augmentation). With --teacher too, the cache must be those teachers'.")
    var teacherCache: String?

    @Option(help: "Architecture JSON for a weights-only teacher (one per --teacher, in the same order, when given).")
    var teacherArch: [String] = []

    @Option(help: "Weights of the teachers' logits, comma-separated, in --teacher order (divided by their sum; default equal).")
    var teacherWeights: String?

    @Option(help: "Number format of the teachers' pointwise convolutions and dense layers: f32, or bf16 (needs AVX512_BF16; float32 accumulation). The student always trains in f32.")
    var teacherPrecision: Precision = .float32

    func check() throws {
        guard !teacher.isEmpty || teacherCache != nil else { throw ValidationError("give --teacher, or --teacher-cache") }
        try checkPrecision(teacherPrecision, flag: "--teacher-precision")
        if !teacherArch.isEmpty && teacherArch.count != teacher.count {
            throw ValidationError("\(teacherArch.count) --teacher-arch for \(teacher.count) --teacher: give one per teacher, or none")
        }
        _ = try weights()
    }

    /// The relative weights as given, or nil (equal).
    func weights() throws -> [Double]? {
        guard let teacherWeights else { return nil }
        let parts = teacherWeights.split(separator: ",", omittingEmptySubsequences: false)
        var values: [Double] = []
        for part in parts {
            guard let v = Double(part.trimmingCharacters(in: .whitespaces)), v >= 0, v.isFinite else {
                throw ValidationError("--teacher-weights \(teacherWeights): '\(part)' is not a number of 0 or more")
            }
            values.append(v)
        }
        guard values.contains(where: { $0 > 0 }) else { throw ValidationError("--teacher-weights \(teacherWeights): all zero") }
        return values
    }

    /// Reads the cache, if any, and returns the teacher weights (normalised, one per teacher of
    /// the cache when there is one). The models are left to `loadModels`, which the training job
    /// runs after the student and the data sets are checked, before its image threads start.
    func loadCache() throws -> (cache: TeacherCache?, weights: [Double]) {
        try check()
        let cache = try teacherCache.map { try TeacherCache.read(path: $0) }
        let count = cache?.teachers.count ?? teacher.count
        let given = try weights()
        if let given, given.count != count {
            throw ValidationError("--teacher-weights gives \(given.count) weights for \(count) teacher\(count == 1 ? "" : "s")")
        }
        return (cache, try Distiller.normalizedWeights(given ?? [Double](repeating: 1, count: count)))
    }

    /// Loads the teachers, refuses a NaN or infinite weight, and checks that `cache` (from
    /// `loadCache`) is theirs.
    func loadModels(cache: TeacherCache?) throws -> [LoadedModel] {
        let models = try teacher.enumerated().map { i, path in
            try LoadedModel.load(path: path, archPath: teacherArch.isEmpty ? nil : teacherArch[i])
        }
        for (model, path) in zip(models, teacher) { try TrainingJob.refuseNonFinite(model, path: path, role: "teacher") }
        // With both, the cache must be these teachers' (the models then only give their test accuracy).
        if let cache, !models.isEmpty, cache.teachers != models.map({ TeacherCache.identity(of: $0) }) {
            throw ValidationError("\(teacherCache!): the cache was made by another teacher (\(cache.teacher)), not \(teacher.joined(separator: ", "))")
        }
        return models
    }
}

/// Feature distillation pairs of `distill`.
struct FeatureOptions: ParsableArguments {
    @Option(help: ArgumentHelp("A teacher layer and a student layer whose outputs to bring together: TEACHER_LAYER:STUDENT_LAYER[:LOSS[:WEIGHT]], LOSS mse (default), cosine, mae or at, WEIGHT 1 by default. Repeatable.", discussion: """
        Adds sum(WEIGHT * LOSS) to the loss: alpha * CE + (1 - alpha) * soft + sum(weight_i * feature_loss_i) (soft: the --loss term, T^2 * KL for kd). Layers are named as for --output-layer (nested names work); the student layer must train and come at or before the logits; the features come from the first --teacher.
        mse, mae: the mean over every element (Keras's mean_squared_error / mean_absolute_error). cosine: the mean over positions of -cos(teacher, student) along the channels (Keras's cosine_similarity loss: -1 when aligned). at: attention transfer (Zagoruyko & Komodakis 2017): per image sum_c(x^2) over the positions, L2-normalised, then the mean squared difference (the paper's beta/2 = 500 is WEIGHT 500).
        Shapes: a larger student map is average-pooled (integer factors), else the teacher map is resized (bilinear); for mse, cosine and mae a channel count that differs gets a trainable 1x1 convolution on the student side (glorot_uniform, seeded by --seed), trained with the student and not written: the output has exactly the student's layers. Checkpoints carry it.
        Keras 3's Distiller weighs its FeatureDistillation by (1 - student_loss_weight): its weight w there is (1 - alpha) * w here.
        """))
    var feature: [String] = []

    func pairs() throws -> [FeaturePair] {
        try feature.map { text in
            do { return try FeaturePair(parsing: text) } catch { throw ValidationError("--feature \(error)") }
        }
    }

    func validate() throws { _ = try pairs() }
}
