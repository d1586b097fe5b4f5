// The soft (teacher) term of the distillation loss, value and gradient with respect to the
// student's logits s, for the three logit losses. With p = softmax(s / T), q = softmax(t / T)
// per row, N the rows of the batch:
//
// kd    T^2 * mean_rows KL(q || p), Keras's KLDivergence (both clipped to [1e-7, 1]); Hinton et al.
//
// dkd   Decoupled KD (Zhao et al., CVPR 2022), as the authors' mdistiller computes it:
//         T^2 / N * sum_rows (a * TCKD + b * NCKD)
//       TCKD = KL([q_g, 1 - q_g] || [p_g, 1 - p_g]), g the row's target class;
//       NCKD = KL(q' || p'), q', p' the softmax over the non-target classes only.
//       Gradient w.r.t. a = s / T:  TCKD: (p_g - q_g) at g, -(p_g - q_g) p'_k elsewhere;
//       NCKD: p'_k - q'_k off g, 0 at g. The target is the row's label; an unlabelled row
//       takes the teacher's top class (the only class the teacher can vouch for).
//
// dist  DIST (Huang et al., NeurIPS 2022), as the authors' reference code computes it:
//         T^2 * (beta * (1 - mean_rows rho(P_r, Q_r)) + gamma * (1 - mean_classes rho(P_:c, Q_:c)))
//       rho the Pearson correlation, u.v / (|u| |v| + 1e-8) of the mean-centred vectors. The
//       class-wise term correlates each class's probabilities over the batch, so it couples the
//       rows: it is computed over the whole batch at once (a data-parallel caller gathers it).
//       Gradient of rho w.r.t. x (u = x - mean x): v / D - (u.v) |v| u / (|u| D^2), D = |u||v| +
//       1e-8, then centred; a zero |u| passes no gradient through the norm (as PyTorch's).
//
// All three are multiplied by T^2 inside (as Hinton and both reference implementations do), so
// the soft term's gradient keeps its size as T changes. Arithmetic in Double after the float32
// division s / T (as Keras divides).
import Foundation

/// Which logit loss the teacher's soft targets enter through.
public enum SoftLoss: Sendable, Equatable {
    case kd
    case dkd(alpha: Double, beta: Double)
    case dist(beta: Double, gamma: Double)


    /// The loss and its parameters, as a checkpoint records them: "kd", "dkd(alpha=1, beta=8)".
    public var description: String {
        switch self {
        case .kd: return "kd"
        case .dkd(let a, let b): return "dkd(alpha=\(a), beta=\(b))"
        case .dist(let b, let g): return "dist(beta=\(b), gamma=\(g))"
        }
    }

    /// Whether the loss of a row depends on the other rows of the batch.
    public var couplesRows: Bool { if case .dist = self { return true } else { return false } }
}

extension Losses {
    /// The soft term (T^2 included) summed over the rows and divided by `rowsNormalizer`; writes
    /// `weight` times its gradient with respect to the student's logits into `gradient` (assigned,
    /// not added). `targets`: each row's class for DKD.
    static func softTerm(_ loss: SoftLoss, student: UnsafePointer<Float>, teacher: UnsafePointer<Float>, rows n: Int,
                         classes k: Int, temperature: Double, targets: [Int], rowsNormalizer: Double, weight: Double,
                         gradient: UnsafeMutablePointer<Float>?) -> Double {
        switch loss {
        case .kd:
            return kdTerm(student, teacher, n, k, temperature, rowsNormalizer, weight, gradient)
        case .dkd(let a, let b):
            precondition(k >= 2, "DKD needs at least two classes")
            return dkdTerm(student, teacher, n, k, temperature, targets, a, b, rowsNormalizer, weight, gradient)
        case .dist(let beta, let gamma):
            precondition(Double(n) == rowsNormalizer, "DIST needs the whole batch at once")
            return distTerm(student, teacher, n, k, temperature, beta, gamma, weight, gradient)
        }
    }

    /// Hinton's term with Keras's clipped KLDivergence. With m_j = [p_j >= 1e-7] (the clip passes
    /// no gradient below its floor) and M = sum_j m_j q'_j:  d/ds_k = T (p_k M - m_k q'_k) / N.
    private static func kdTerm(_ student: UnsafePointer<Float>, _ teacher: UnsafePointer<Float>, _ n: Int, _ classes: Int,
                               _ temperature: Double, _ rowsNormalizer: Double, _ weight: Double,
                               _ gradient: UnsafeMutablePointer<Float>?) -> Double {
        let softWeight = weight * temperature / rowsNormalizer  // weight * T^2 / n * (1/T)
        var klSum = 0.0
        var ps = [Double](repeating: 0, count: classes), pt = ps
        for r in 0..<n {
            let s = student + r * classes, t = teacher + r * classes
            temperedSoftmax(s, classes, Float(temperature), into: &ps)
            temperedSoftmax(t, classes, Float(temperature), into: &pt)
            var mass = 0.0
            for j in 0..<classes {
                // Keras: float32 probabilities, clipped to [1e-7, 1].
                let ptc = Double(min(max(Float(pt[j]), probabilityEpsilon), 1))
                let psf = Float(ps[j])
                let psc = Double(min(max(psf, probabilityEpsilon), 1))
                klSum += ptc * log(ptc / psc)
                if psf >= probabilityEpsilon { mass += ptc }
            }
            if let g = gradient {
                let row = g + r * classes
                for k in 0..<classes {
                    let ptc = Double(min(max(Float(pt[k]), probabilityEpsilon), 1))
                    let passes = Float(ps[k]) >= probabilityEpsilon
                    row[k] = Float(softWeight * (ps[k] * mass - (passes ? ptc : 0)))
                }
            }
        }
        return temperature * temperature * klSum / rowsNormalizer
    }

    /// Decoupled KD, in log space: log p_g = a_g - lse(a), log(1 - p_g) = lse(a without g) - lse(a),
    /// log p'_j = a_j - lse(a without g).
    private static func dkdTerm(_ student: UnsafePointer<Float>, _ teacher: UnsafePointer<Float>, _ n: Int, _ k: Int,
                                _ temperature: Double, _ targets: [Int], _ alpha: Double, _ beta: Double,
                                _ rowsNormalizer: Double, _ weight: Double, _ gradient: UnsafeMutablePointer<Float>?) -> Double {
        let T = Float(temperature)
        var a = [Double](repeating: 0, count: k), b = a
        var sum = 0.0
        // x * log(x / y) with the convention 0 log 0 = 0 (PyTorch's kl_div for a zero target).
        func kl(_ logX: Double, _ logY: Double) -> Double {
            let x = exp(logX)
            return x > 0 ? x * (logX - logY) : 0
        }
        for r in 0..<n {
            let g = targets[r]
            for j in 0..<k {
                a[j] = Double(student[r * k + j] / T)
                b[j] = Double(teacher[r * k + j] / T)
            }
            let (lseA, lseAo) = (lse(a, except: nil), lse(a, except: g))
            let (lseB, lseBo) = (lse(b, except: nil), lse(b, except: g))
            let logPg = a[g] - lseA, logPo = lseAo - lseA
            let logQg = b[g] - lseB, logQo = lseBo - lseB
            let tckd = kl(logQg, logPg) + kl(logQo, logPo)
            var nckd = 0.0
            for j in 0..<k where j != g { nckd += kl(b[j] - lseBo, a[j] - lseAo) }
            sum += alpha * tckd + beta * nckd
            if let gradient {
                let row = gradient + r * k
                let scale = weight * temperature / rowsNormalizer
                let gap = exp(logPg) - exp(logQg)
                for j in 0..<k {
                    if j == g {
                        row[j] = Float(scale * alpha * gap)
                    } else {
                        let p2 = exp(a[j] - lseAo), q2 = exp(b[j] - lseBo)
                        row[j] = Float(scale * (-alpha * gap * p2 + beta * (p2 - q2)))
                    }
                }
            }
        }
        return temperature * temperature * sum / rowsNormalizer
    }

    /// DIST over the whole batch.
    private static func distTerm(_ student: UnsafePointer<Float>, _ teacher: UnsafePointer<Float>, _ n: Int, _ k: Int,
                                 _ temperature: Double, _ beta: Double, _ gamma: Double, _ weight: Double,
                                 _ gradient: UnsafeMutablePointer<Float>?) -> Double {
        var P = [Double](repeating: 0, count: n * k), Q = P
        var row = [Double](repeating: 0, count: k)
        for r in 0..<n {
            temperedSoftmax(student + r * k, k, Float(temperature), into: &row)
            for j in 0..<k { P[r * k + j] = row[j] }
            temperedSoftmax(teacher + r * k, k, Float(temperature), into: &row)
            for j in 0..<k { Q[r * k + j] = row[j] }
        }
        // dLoss/dP, before T^2.
        var dP = [Double](repeating: 0, count: n * k)
        var interSum = 0.0, intraSum = 0.0
        var x = [Double](repeating: 0, count: k), y = x, dx = x
        for r in 0..<n {
            for j in 0..<k { x[j] = P[r * k + j]; y[j] = Q[r * k + j] }
            interSum += pearson(x, y, gradient: &dx)
            for j in 0..<k { dP[r * k + j] -= beta / Double(n) * dx[j] }
        }
        x = [Double](repeating: 0, count: n); y = x; dx = x
        for c in 0..<k {
            for r in 0..<n { x[r] = P[r * k + c]; y[r] = Q[r * k + c] }
            intraSum += pearson(x, y, gradient: &dx)
            for r in 0..<n { dP[r * k + c] -= gamma / Double(k) * dx[r] }
        }
        let t2 = temperature * temperature
        let loss = t2 * (beta * (1 - interSum / Double(n)) + gamma * (1 - intraSum / Double(k)))
        if let gradient {
            // Through the softmax: d/da_j = p_j (dP_j - sum_i dP_i p_i); d/ds = d/da / T.
            let scale = weight * t2 / temperature
            for r in 0..<n {
                var dot = 0.0
                for j in 0..<k { dot += dP[r * k + j] * P[r * k + j] }
                for j in 0..<k { gradient[r * k + j] = Float(scale * P[r * k + j] * (dP[r * k + j] - dot)) }
            }
        }
        return loss
    }

    /// Pearson correlation as DIST's reference code computes it (cosine of the centred vectors,
    /// 1e-8 added to the product of the norms); its gradient with respect to `x` into `gradient`.
    static func pearson(_ x: [Double], _ y: [Double], gradient: inout [Double]) -> Double {
        let m = Double(x.count)
        let mx = x.reduce(0, +) / m, my = y.reduce(0, +) / m
        var dot = 0.0, uu = 0.0, vv = 0.0
        for i in x.indices {
            let u = x[i] - mx, v = y[i] - my
            dot += u * v; uu += u * u; vv += v * v
        }
        let nu = uu.squareRoot(), nv = vv.squareRoot()
        let d = nu * nv + 1e-8
        var mean = 0.0
        for i in x.indices {
            let u = x[i] - mx, v = y[i] - my
            gradient[i] = v / d - (nu > 0 ? dot / (d * d) * nv * u / nu : 0)
            mean += gradient[i]
        }
        mean /= m
        for i in x.indices { gradient[i] -= mean }
        return dot / d
    }

    /// log(sum(exp(x))) over the row, leaving out one index.
    private static func lse(_ x: [Double], except skip: Int?) -> Double {
        var m = -Double.infinity
        for j in x.indices where j != skip { m = max(m, x[j]) }
        var s = 0.0
        for j in x.indices where j != skip { s += exp(x[j] - m) }
        return m + log(s)
    }
}
