// What to augment, in the words of Keras's ImageDataGenerator (tf-keras 2.21,
// tf_keras/src/preprocessing/image.py), and one draw of it (`TransformParameters`, the dictionary
// `get_random_transform` returns and `apply_transform` takes).

/// How points that fall outside the input are filled: scipy.ndimage's modes of the same names,
/// which is what Keras passes on (`mode=fill_mode` in `apply_affine_transform`). Keras's docstring
/// pictures them on whole pixels; between pixels scipy's exact rules apply (see AffineResample.swift):
/// - `constant`: any sample point outside [0, n-1] (in pixel-centre coordinates) is `cval`;
///   no blending of cval with edge pixels.
/// - `nearest`: the edge pixel.
/// - `reflect`: half-sample symmetric (`d c b a | a b c d | d c b a`), period 2n.
/// - `wrap`: scipy's *non-grid* wrap: sample points are wrapped with period n-1, so the first
///   and last pixel centres coincide (not `grid-wrap`, period n, which Keras's picture suggests).
public enum FillMode: String, Sendable, CaseIterable, Codable {
    case constant, nearest, reflect, wrap
}

/// `width_shift_range` / `height_shift_range`, in the three forms Keras accepts.
public enum ShiftRange: Sendable, Equatable {
    /// Keras's default (0 / falsy): no shift.
    case none
    /// A float `r`: uniform in [-r, r); a fraction of the image size when r < 1, pixels otherwise.
    case uniform(Double)
    /// An int `n` >= 1: `np.random.choice(n)` (0..<n) times a random sign -- whole pixels.
    case integer(Int)
    /// A list: one of the values times a random sign; a fraction of the size when every value
    /// is below 1 (Keras tests `np.max(range) < 1`), pixels otherwise.
    case values([Double])

    var isActive: Bool {
        switch self {
        case .none: return false
        case .uniform(let r): return r != 0
        case .integer(let n): return n != 0
        case .values(let v): return !v.isEmpty
        }
    }

    /// Keras's `np.max(range) < 1`: the drawn value is then multiplied by the image size.
    var isFraction: Bool {
        switch self {
        case .none: return false
        case .uniform(let r): return r < 1
        case .integer(let n): return n < 1
        case .values(let v): return (v.max() ?? 0) < 1
        }
    }
}

/// The arguments of `ImageDataGenerator(...)` that augment (rescale, centring and ZCA are
/// preprocessing, not augmentation, and are not here). Defaults are Keras's.
public struct AugmentConfig: Sendable, Equatable {
    /// Degrees; theta ~ U(-r, r).
    public var rotationRange: Double = 0
    public var widthShiftRange: ShiftRange = .none
    public var heightShiftRange: ShiftRange = .none
    /// Degrees (not a fraction: the seed's `shear_range = 0.2` shears by at most 0.2 degrees).
    public var shearRange: Double = 0
    /// [lower, upper]; Keras's float `z` means [1 - z, 1 + z]. zx and zy are drawn independently.
    public var zoomLower: Double = 1
    public var zoomUpper: Double = 1
    public var channelShiftRange: Double = 0
    public var horizontalFlip = false
    public var verticalFlip = false
    /// [lower, upper] for PIL's ImageEnhance.Brightness factor; nil: no brightness change.
    public var brightnessRange: ClosedRange<Double>? = nil
    public var fillMode: FillMode = .nearest
    public var cval: Double = 0

    public init() {}

    /// Keras's float `zoom_range = z`: [1 - z, 1 + z].
    public mutating func setZoom(_ z: Double) {
        zoomLower = 1 - z
        zoomUpper = 1 + z
    }

    /// True when no parameter can change an image (Keras would still copy it).
    public var isIdentity: Bool {
        rotationRange == 0 && !widthShiftRange.isActive && !heightShiftRange.isActive && shearRange == 0
            && zoomLower == 1 && zoomUpper == 1 && channelShiftRange == 0 && !horizontalFlip
            && !verticalFlip && brightnessRange == nil
    }

    /// The seed's generator: `image_data_generator(rotation_range = 40, width_shift_range = 0.2,
    /// height_shift_range = 0.2, shear_range = 0.2, zoom_range = 0.5, horizontal_flip = TRUE,
    /// fill_mode = "reflect")`.
    public static var seedExample: AugmentConfig {
        var c = AugmentConfig()
        c.rotationRange = 40
        c.widthShiftRange = .uniform(0.2)
        c.heightShiftRange = .uniform(0.2)
        c.shearRange = 0.2
        c.setZoom(0.5)
        c.horizontalFlip = true
        c.fillMode = .reflect
        return c
    }
}

/// One draw of the random transform, with Keras's names and meanings (`get_random_transform`):
/// - `theta`: rotation, degrees;
/// - `tx`: drawn from `height_shift_range` (times the image *height* when a fraction) -- Keras's
///   matrix then moves the image along its *columns* by tx pixels, and
/// - `ty`: drawn from `width_shift_range` (times the *width*) -- moves it along its *rows*.
///   (Keras's naming crosses over here; reproduced as is. Equal ranges, as in the seed, hide it.)
/// - `shear`: degrees; `zx`, `zy`: zoom factors (> 1 shows less of the image, zoomed out);
/// - flips, `channelShiftIntensity`, `brightness` (PIL factor) as in `apply_transform`.
public struct TransformParameters: Sendable, Equatable, Codable {
    public var theta = 0.0
    public var tx = 0.0
    public var ty = 0.0
    public var shear = 0.0
    public var zx = 1.0
    public var zy = 1.0
    public var flipHorizontal = false
    public var flipVertical = false
    public var channelShiftIntensity: Double? = nil
    public var brightness: Double? = nil

    public init(theta: Double = 0, tx: Double = 0, ty: Double = 0, shear: Double = 0, zx: Double = 1,
                zy: Double = 1, flipHorizontal: Bool = false, flipVertical: Bool = false,
                channelShiftIntensity: Double? = nil, brightness: Double? = nil) {
        self.theta = theta
        self.tx = tx
        self.ty = ty
        self.shear = shear
        self.zx = zx
        self.zy = zy
        self.flipHorizontal = flipHorizontal
        self.flipVertical = flipVertical
        self.channelShiftIntensity = channelShiftIntensity
        self.brightness = brightness
    }

    /// Keras resamples (calls scipy) only when one of these differs from the identity.
    public var hasAffine: Bool {
        theta != 0 || tx != 0 || ty != 0 || shear != 0 || zx != 1 || zy != 1
    }
}
