// The per-pixel steps of Keras's `apply_transform`: channel shift and brightness.

/// `apply_channel_shift(x, intensity)`: clip(x + intensity, min(x), max(x)) with min/max over the
/// whole image. Keras's intensity is a numpy float64, so the sum and clip happen in Double (the
/// image comes back float64); the batch stores it as float32, hence one rounding at the end.
func applyChannelShift(_ x: UnsafeMutableBufferPointer<Float>, intensity: Double) {
    guard let lo = x.min(), let hi = x.max() else { return }
    let low = Double(lo), high = Double(hi)
    for i in x.indices {
        x[i] = Float(min(max(Double(x[i]) + intensity, low), high))
    }
}

/// `apply_brightness_shift(x, brightness, scale=False)`, which goes through PIL:
/// 1. `array_to_img(x, scale=local_scale)`: when values leave 0...255 the image is first mapped
///    onto 0...255 ((x - min) / (max - min) * 255, float32); then `astype("uint8")` truncates;
/// 2. `ImageEnhance.Brightness(img).enhance(f)` = `Image.blend(black, img, f)`: PIL's ImagingBlend
///    with a float32 factor: `(UINT8)(f * v)` for 0 <= f <= 1, clipped to 0...255 otherwise
///    (f == 0 and f == 1 are plain copies);
/// 3. `img_to_array`, and when step 1 rescaled, back to the old range: x / 255 * (max - min) + min.
func applyBrightness(_ x: UnsafeMutableBufferPointer<Float>, factor: Double) {
    guard let xMin = x.min(), let xMax = x.max() else { return }
    let localScale = xMin < 0 || xMax > 255
    let f = Float(factor)
    // Step 1, in float32 as numpy does it (x - min, then /= max, then *= 255).
    var scaleMax: Float = 0
    if localScale {
        for i in x.indices {
            let shifted = x[i] - xMin
            x[i] = shifted
            scaleMax = max(scaleMax, shifted)
        }
    }
    let interpolate = f >= 0 && f <= 1
    for i in x.indices {
        var v = x[i]
        if localScale {
            if scaleMax != 0 { v /= scaleMax }
            v *= 255
        }
        let byte = Float(truncatingToByte(v))
        let out: Float
        if f == 0 {
            out = 0
        } else if f == 1 {
            out = byte
        } else if interpolate {
            out = (f * byte).rounded(.towardZero)
        } else {
            let t = f * byte
            out = t <= 0 ? 0 : (t >= 255 ? 255 : t.rounded(.towardZero))
        }
        x[i] = out
    }
    if localScale {
        let range = xMax - xMin
        for i in x.indices { x[i] = x[i] / 255 * range + xMin }
    }
}

/// numpy's float32 -> uint8 cast for values Keras can produce here (0...255 after the checks
/// above): truncation towards zero. Out-of-range values (NaN) are pinned rather than undefined.
@inline(__always)
private func truncatingToByte(_ v: Float) -> UInt8 {
    guard v.isFinite else { return 0 }
    return UInt8(min(max(v, 0), 255).rounded(.towardZero))
}
