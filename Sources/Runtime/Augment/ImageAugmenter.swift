// Keras's ImageDataGenerator augmentation: `get_random_transform` (the distributions, not numpy's
// random stream) and `apply_transform` (affine resample, channel shift, flips, brightness, in
// Keras's order).

public struct ImageAugmenter: Sendable {
    public let config: AugmentConfig

    /// Checks the ranges Keras would reject or misread (negative ranges, zoom <= 0, an int shift
    /// below 1, a brightness range reaching below 0, non-finite numbers).
    public init(_ config: AugmentConfig) throws {
        let c = config
        func check(_ ok: Bool, _ what: String) throws {
            if !ok { throw RuntimeError("augmentation: \(what)") }
        }
        let numbers = [c.rotationRange, c.shearRange, c.zoomLower, c.zoomUpper, c.channelShiftRange, c.cval]
        try check(numbers.allSatisfy(\.isFinite), "every range must be a finite number")
        try check(c.rotationRange >= 0, "rotation_range must be >= 0 (degrees), got \(c.rotationRange)")
        try check(c.shearRange >= 0, "shear_range must be >= 0 (degrees), got \(c.shearRange)")
        try check(c.channelShiftRange >= 0, "channel_shift_range must be >= 0, got \(c.channelShiftRange)")
        try check(c.zoomLower > 0 && c.zoomLower <= c.zoomUpper,
                  "zoom_range must be [lower, upper] with 0 < lower <= upper, got [\(c.zoomLower), \(c.zoomUpper)]")
        for (name, range) in [("width_shift_range", c.widthShiftRange), ("height_shift_range", c.heightShiftRange)] {
            switch range {
            case .none: break
            case .uniform(let r): try check(r.isFinite && r >= 0, "\(name) must be >= 0, got \(r)")
            case .integer(let n): try check(n >= 0, "\(name) must be >= 0, got \(n)")
            case .values(let v): try check(v.allSatisfy(\.isFinite), "\(name) values must be finite numbers")
            }
        }
        if let b = c.brightnessRange {
            try check(b.lowerBound.isFinite && b.upperBound.isFinite && b.lowerBound >= 0,
                      "brightness_range must be [lower, upper] with 0 <= lower <= upper, got [\(b.lowerBound), \(b.upperBound)]")
        }
        self.config = config
    }

    /// One draw of Keras's distributions for an image of `height` x `width`:
    /// theta ~ U(-rotation_range, rotation_range); tx from height_shift_range, ty from
    /// width_shift_range (see `ShiftRange`); shear ~ U(-shear_range, shear_range); zx, zy ~ U(lower,
    /// upper) independently unless the zoom range is [1, 1]; each enabled flip with probability
    /// 1/2; channel shift ~ U(-r, r); brightness ~ U(lower, upper).
    public func randomParameters(height: Int, width: Int, using rng: inout SplitMix64) -> TransformParameters {
        let c = config
        var p = TransformParameters()
        if c.rotationRange != 0 { p.theta = rng.uniform(-c.rotationRange, c.rotationRange) }
        p.tx = drawShift(c.heightShiftRange, size: height, &rng)
        p.ty = drawShift(c.widthShiftRange, size: width, &rng)
        if c.shearRange != 0 { p.shear = rng.uniform(-c.shearRange, c.shearRange) }
        if !(c.zoomLower == 1 && c.zoomUpper == 1) {
            p.zx = rng.uniform(c.zoomLower, c.zoomUpper)
            p.zy = rng.uniform(c.zoomLower, c.zoomUpper)
        }
        if c.horizontalFlip { p.flipHorizontal = rng.nextUnit() < 0.5 }
        if c.verticalFlip { p.flipVertical = rng.nextUnit() < 0.5 }
        if c.channelShiftRange != 0 {
            p.channelShiftIntensity = rng.uniform(-c.channelShiftRange, c.channelShiftRange)
        }
        if let b = c.brightnessRange { p.brightness = rng.uniform(b.lowerBound, b.upperBound) }
        return p
    }

    /// The parameters for dataset item `item` in epoch `epoch` of a run seeded with `seed`: a pure
    /// function of the four, whichever thread asks and whenever.
    public func randomParameters(height: Int, width: Int, seed: UInt64, epoch: Int, item: Int) -> TransformParameters {
        var rng = SplitMix64(seed: derivedSeed(seed, .augment, UInt64(bitPattern: Int64(epoch)), UInt64(bitPattern: Int64(item))))
        return randomParameters(height: height, width: width, using: &rng)
    }

    private func drawShift(_ range: ShiftRange, size: Int, _ rng: inout SplitMix64) -> Double {
        var v: Double
        switch range {
        case .none:
            return 0
        case .uniform(let r):
            if r == 0 { return 0 }
            v = rng.uniform(-r, r)
        case .integer(let n):
            if n == 0 { return 0 }
            v = Double(rng.index(below: n))
            v *= rng.index(below: 2) == 0 ? -1 : 1
        case .values(let values):
            if values.isEmpty { return 0 }
            v = values[rng.index(below: values.count)]
            v *= rng.index(below: 2) == 0 ? -1 : 1
        }
        return range.isFraction ? v * Double(size) : v
    }

    /// Keras's `apply_transform(x, p)` on one HWC image (`channels` 1 or 3; any count works),
    /// writing into `dest`, which must not overlap `source` and holds as many values.
    public func apply(_ p: TransformParameters, to source: UnsafeBufferPointer<Float>, height: Int,
                      width: Int, channels: Int, into dest: UnsafeMutableBufferPointer<Float>) {
        apply(p, matrix: AffineMatrix.keras(p, height: height, width: width), to: source,
              height: height, width: width, channels: channels, into: dest)
    }

    /// `apply` with the resampling matrix given (tests feed it the exact doubles Keras computed).
    func apply(_ p: TransformParameters, matrix: AffineMatrix?, to source: UnsafeBufferPointer<Float>,
               height: Int, width: Int, channels: Int, into dest: UnsafeMutableBufferPointer<Float>) {
        let n = height * width * channels
        precondition(source.count == n && dest.count == n, "augment: buffers must hold \(height)x\(width)x\(channels) values")
        guard n > 0, let src = source.baseAddress, let dst = dest.baseAddress else { return }
        if let m = matrix {
            affineResample(src, height: height, width: width, channels: channels, matrix: m,
                           mode: config.fillMode, cval: config.cval, flipHorizontal: p.flipHorizontal,
                           flipVertical: p.flipVertical, into: dst)
        } else {
            copyFlipped(src, height: height, width: width, channels: channels,
                        flipHorizontal: p.flipHorizontal, flipVertical: p.flipVertical, into: dst)
        }
        // Channel shift and brightness are per pixel with whole-image min/max, so doing them
        // after the flips (Keras: before) gives the same values.
        if let s = p.channelShiftIntensity { applyChannelShift(dest, intensity: s) }
        if let b = p.brightness { applyBrightness(dest, factor: b) }
    }

    /// `apply` on an `ImageArray` (convenience for tests and one-off use).
    public func apply(_ p: TransformParameters, to image: ImageArray) -> ImageArray {
        let n = image.values.count
        let out = [Float](unsafeUninitializedCapacity: n) { buffer, count in
            image.values.withUnsafeBufferPointer { src in
                apply(p, to: src, height: image.height, width: image.width, channels: image.channels,
                      into: UnsafeMutableBufferPointer(rebasing: buffer[0..<n]))
            }
            count = n
        }
        return ImageArray(height: image.height, width: image.width, channels: image.channels, values: out)
    }
}

/// The image as is, or mirrored (Keras's `flip_axis` on columns and/or rows).
func copyFlipped(_ src: UnsafePointer<Float>, height: Int, width: Int, channels: Int,
                 flipHorizontal: Bool, flipVertical: Bool, into dst: UnsafeMutablePointer<Float>) {
    let rowLength = width * channels
    for r in 0..<height {
        let s = src + r * rowLength
        let d = dst + (flipVertical ? height - 1 - r : r) * rowLength
        if !flipHorizontal {
            d.update(from: s, count: rowLength)
            continue
        }
        for q in 0..<width {
            (d + (width - 1 - q) * channels).update(from: s + q * channels, count: channels)
        }
    }
}
