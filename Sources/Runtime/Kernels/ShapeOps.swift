// Data-movement kernels (no arithmetic), all over row-major float32:
//   concatenate: inputs [outer, axisLength_i, inner] -> [outer, sum(axisLength_i), inner]
//   zeroPad2d:   [N, H, W, C] -> [N, top + H + bottom, left + W + right, C], zeros around
//   crop2d:      [N, H, W, C] -> [N, H - top - bottom, W - left - right, C]
//   transpose:   shape S, permutation P -> shape [S[P[0]], S[P[1]], ...] (Keras Permute, with the
//                batch axis included in P as axis 0)

/// Concatenate along one axis. For axis k of shape S: outer = S[0..<k].product, inner =
/// S[(k+1)...].product, and each input's `axisLength` its S[k].
public func concatenate(_ inputs: [(data: UnsafePointer<Float>, axisLength: Int)], outer: Int, inner: Int,
                        output: UnsafeMutablePointer<Float>) {
    let total = inputs.reduce(0) { $0 + $1.axisLength }
    parallelFor(outer, minChunk: max(1, 65_536 / max(1, total * inner))) { _, range in
        for o in range {
            var dst = output + o * total * inner
            for (data, length) in inputs {
                let n = length * inner
                dst.update(from: data + o * n, count: n)
                dst += n
            }
        }
    }
}

/// ZeroPadding2D.
public func zeroPad2d(input: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
                      top: Int, bottom: Int, left: Int, right: Int, output: UnsafeMutablePointer<Float>) {
    let outH = height + top + bottom, outW = width + left + right, c = channels
    parallelFor(batch * outH, minChunk: max(1, 65_536 / max(1, outW * c))) { _, range in
        for row in range {
            let n = row / outH, y = row % outH
            let dst = output + row * outW * c
            let iy = y - top
            if iy < 0 || iy >= height {
                dst.update(repeating: 0, count: outW * c)
                continue
            }
            dst.update(repeating: 0, count: left * c)
            (dst + left * c).update(from: input + ((n * height + iy) * width) * c, count: width * c)
            (dst + (left + width) * c).update(repeating: 0, count: right * c)
        }
    }
}

/// Cropping2D.
public func crop2d(input: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
                   top: Int, bottom: Int, left: Int, right: Int, output: UnsafeMutablePointer<Float>) {
    let outH = height - top - bottom, outW = width - left - right, c = channels
    precondition(outH >= 0 && outW >= 0, "crop2d: cropping larger than the input")
    parallelFor(batch * outH, minChunk: max(1, 65_536 / max(1, outW * c))) { _, range in
        for row in range {
            let n = row / max(1, outH), y = row % max(1, outH)
            (output + row * outW * c).update(from: input + ((n * height + y + top) * width + left) * c,
                                             count: outW * c)
        }
    }
}

/// Axis permutation of a row-major tensor: output axis i is input axis perm[i].
public func transpose(input: UnsafePointer<Float>, shape: [Int], perm: [Int], output: UnsafeMutablePointer<Float>) {
    let rank = shape.count
    precondition(perm.count == rank && Set(perm) == Set(0..<rank), "transpose: \(perm) is not a permutation")
    guard rank > 0 else { output[0] = input[0]; return }
    var inStrides = [Int](repeating: 1, count: rank)
    for i in stride(from: rank - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * shape[i + 1] }
    let outShape = perm.map { shape[$0] }
    let strides = perm.map { inStrides[$0] }          // input stride of each output axis
    let inner = outShape[rank - 1], innerStride = strides[rank - 1]
    let outer = outShape.dropLast().reduce(1, *)
    guard inner > 0, outer > 0 else { return }
    parallelFor(outer, minChunk: max(1, 65_536 / inner)) { _, range in
        for o in range {
            var rem = o, src = 0
            for axis in stride(from: rank - 2, through: 0, by: -1) {
                src += (rem % outShape[axis]) * strides[axis]
                rem /= outShape[axis]
            }
            let dst = output + o * inner, p = input + src
            if innerStride == 1 {
                dst.update(from: p, count: inner)
            } else {
                for j in 0..<inner { dst[j] = p[j * innerStride] }
            }
        }
    }
}
