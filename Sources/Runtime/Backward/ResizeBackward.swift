import Graph
// Resize (Resizing, CenterCrop's upsizing) backward: each output pixel hands its gradient back to
// the input pixels the forward read, with the forward's weights (`resizeImages`): bilinear, the
// four half-pixel neighbours of the window; nearest, the one pixel it copied. Input pixels outside
// the window get zero. Images run in parallel (a pixel's sources never leave its image).

func resizeImagesBackward(dOutput dy: UnsafePointer<Float>, dInput dx: UnsafeMutablePointer<Float>,
                          batch: Int, height: Int, width: Int, channels c: Int,
                          window: (top: Int, left: Int, height: Int, width: Int), outHeight outH: Int,
                          outWidth outW: Int, interpolation: Interpolation, accumulate: Bool) {
    if !accumulate { zeroFill(dx, batch * height * width * c) }
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
                case .bicubic, .area:
                    preconditionFailure("no backward for a \(interpolation) resize (refused by resizeWindow)")
                }
            }
        }
    }
}

/// The window and interpolation a Resizing (or an upsizing CenterCrop) resizes in training, for an
/// input of `inShape` (batch included): the whole image, or Keras's centred crop to the target's
/// aspect ratio. Bicubic and area resizes have no backward yet: refused naming the layer.
func resizeWindow(_ op: LayerOp, _ inShape: [Int], layer: String) throws
    -> (top: Int, left: Int, height: Int, width: Int, interpolation: Interpolation) {
    switch op {
    case .resize(let s):
        guard s.interpolation.isLinear else {
            throw RuntimeError("layer '\(layer)': a \(s.interpolation) resize inside the trainable part cannot be trained yet "
                               + "(nearest and bilinear can); move it before the first trainable layer")
        }
        let w = s.cropToAspectRatio
            ? aspectCropWindow(height: inShape[1], width: inShape[2], targetHeight: s.height, targetWidth: s.width)
            : (0, 0, inShape[1], inShape[2])
        return (w.0, w.1, w.2, w.3, s.interpolation)
    case .centerCrop(let h, let w):
        let window = aspectCropWindow(height: inShape[1], width: inShape[2], targetHeight: h, targetWidth: w)
        return (window.top, window.left, window.height, window.width, .bilinear)
    default:
        preconditionFailure("not a resize: \(op)")
    }
}
