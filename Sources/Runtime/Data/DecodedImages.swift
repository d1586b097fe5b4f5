// The images the pre-flight check decoded, kept (within a memory budget) so the batches do not
// decode them a second time. Decoding is most of an image's cost (an 800x600 JPEG: about 4 ms
// of the 5.3 ms decode + resize + augmentation), and the check has to decode every image anyway.
// What is kept is `load_img`'s result (under `--fast-decode`, the fast decode's, as the batches
// would make it), the colour-converted and resized 8-bit image: the batches
// convert it to float and augment it exactly as they would a fresh decode, so they are the same
// bit for bit, in every epoch (augmentation draws depend on (seed, epoch, item), not on where
// the pixels came from).
import Foundation
import Graph

/// Resized 8-bit images by file path, for one target size, colour mode, interpolation and
/// decode (Keras's, or `--fast-decode`'s DCT scaling). Immutable once built, so every loading
/// thread reads it without a lock.
public final class DecodedImages: Sendable {
    public let height: Int, width: Int, channels: Int
    public let interpolation: Interpolation
    /// Which decode made them: a loader gets them only if it decodes the same way.
    public let fastDecode: Bool
    private let images: [String: Image]

    init(height: Int, width: Int, channels: Int, interpolation: Interpolation, fastDecode: Bool, images: [String: Image]) {
        (self.height, self.width, self.channels, self.interpolation) = (height, width, channels, interpolation)
        self.fastDecode = fastDecode
        self.images = images
    }

    public var count: Int { images.count }

    /// The image for `path` if it is held and was made as `options` would make it (the same
    /// decode, size, colour mode and interpolation).
    func image(_ path: String, for options: LoaderOptions) -> Image? {
        guard serves(options) else { return nil }
        return images[path]
    }

    func serves(_ options: LoaderOptions) -> Bool {
        options.fastDecode == fastDecode && options.height == height && options.width == width
            && options.channels == channels && options.interpolation == interpolation
    }

    /// Bytes the pre-flight check keeps at most: an eighth of the machine's memory, at most
    /// 512 MiB (3,400 images of 228x228 RGB; the seed's whole 21,397-image Cassava set would need
    /// 3.3 GB, so beyond the budget images are decoded again as before).
    /// DISTILLCTL_DECODED_IMAGES_MB overrides it (0: keep none).
    public static var defaultBudget: Int {
        if let mb = ProcessInfo.processInfo.environment["DISTILLCTL_DECODED_IMAGES_MB"].flatMap(Int.init), mb >= 0 {
            return mb << 20
        }
        return min(512 << 20, Int(clamping: ProcessInfo.processInfo.physicalMemory / 8))
    }
}

extension Image {
    /// Bytes its samples take.
    var byteCount: Int { mode == .i16 ? pixels16.count * 2 : pixels.count }
}
