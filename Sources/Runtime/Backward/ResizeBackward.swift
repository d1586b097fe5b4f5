import Graph
// Resize (Resizing, CenterCrop's upsizing) backward: each output pixel hands its gradient back to
// the input pixels the forward read, with the forward's weights (`resizeImages`): bilinear, the
// four half-pixel neighbours of the window; nearest, the one pixel it copied; bicubic, its 4x4
// taps (row weight times column weight); area, the pixels it covers (fractions times the area
// scale). Input pixels outside the window get zero. Images run in parallel (a pixel's sources
// never leave its image).

func resizeImagesBackward(dOutput dy: UnsafePointer<Float>, dInput dx: UnsafeMutablePointer<Float>,
                          batch: Int, height: Int, width: Int, channels c: Int,
                          window: (top: Int, left: Int, height: Int, width: Int), outHeight outH: Int,
                          outWidth outW: Int, interpolation: Interpolation, accumulate: Bool) {
    let count = batch * height * width * c
    if accumulate {
        // Summed apart and added once, so that accumulating gives exactly what writing would plus
        // what was there (bicubic sums up to 16 contributions per pixel).
        let fresh = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
        defer { fresh.deallocate() }
        resizeImagesBackward(dOutput: dy, dInput: fresh, batch: batch, height: height, width: width, channels: c,
                             window: window, outHeight: outH, outWidth: outW, interpolation: interpolation,
                             accumulate: false)
        addInto(dx, fresh, count)
        return
    }
    zeroFill(dx, count)
    guard batch > 0, outH > 0, outW > 0, c > 0 else { return }
    parallelForStatic(batch) { _, images in
        for n in images {
            let image = dx + (n * height * width + window.top * width + window.left) * c
            @inline(__always) func give(_ y: Int, _ x: Int, _ g: UnsafePointer<Float>, _ weight: Float) {
                let p = image + (y * width + x) * c
                for ch in 0..<c { p[ch] += g[ch] * weight }
            }
            for oy in 0..<outH {
                let row = dy + (n * outH + oy) * outW * c
                switch interpolation {
                case .nearest:
                    let y = nearestSource(oy, window.height, outH)
                    for ox in 0..<outW { give(y, nearestSource(ox, window.width, outW), row + ox * c, 1) }
                case .bilinear:
                    let yw = HalfPixelWeight(oy, inSize: window.height, outSize: outH)
                    for ox in 0..<outW {
                        let xw = HalfPixelWeight(ox, inSize: window.width, outSize: outW)
                        let g = row + ox * c
                        give(yw.lower, xw.lower, g, (1 - yw.lerp) * (1 - xw.lerp))
                        give(yw.lower, xw.upper, g, (1 - yw.lerp) * xw.lerp)
                        give(yw.upper, xw.lower, g, yw.lerp * (1 - xw.lerp))
                        give(yw.upper, xw.upper, g, yw.lerp * xw.lerp)
                    }
                case .bicubic:
                    let yt = CubicTaps(oy, inSize: window.height, outSize: outH)
                    for ox in 0..<outW {
                        let xt = CubicTaps(ox, inSize: window.width, outSize: outW)
                        for j in 0..<4 { for k in 0..<4 { give(yt.index[j], xt.index[k], row + ox * c, yt.weight[j] * xt.weight[k]) } }
                    }
                case .area:
                    let ys = AreaSpan(oy, inSize: window.height, outSize: outH)
                    let scale = areaScale(window, outH, outW)
                    for ox in 0..<outW {
                        let xs = AreaSpan(ox, inSize: window.width, outSize: outW)
                        for (iy, wy) in zip(ys.indices, ys.weights) {
                            for (ix, wx) in zip(xs.indices, xs.weights) { give(iy, ix, row + ox * c, scale * wy * wx) }
                        }
                    }
                }
            }
        }
    }
}
