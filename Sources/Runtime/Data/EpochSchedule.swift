// Which items go into which batch, epoch by epoch.
//
// The order of epoch e is a pure function of (seed, e): a Fisher-Yates shuffle driven by
// SplitMix64 seeded with derivedSeed(seed, .shuffle, e). Nothing carries over from earlier
// epochs, so a run resumed at (epoch e, batch b) sees exactly the batches an uninterrupted run
// saw from there on. The last partial batch is kept (the seed's validation loop crashed on it).

public struct EpochSchedule: Sendable, Equatable {
    public let count: Int
    public let batchSize: Int
    public let shuffle: Bool
    public let seed: UInt64

    public init(count: Int, batchSize: Int, shuffle: Bool, seed: UInt64) throws {
        guard count > 0 else { throw RuntimeError("no images to iterate over") }
        guard batchSize > 0 else { throw RuntimeError("batch size must be at least 1, got \(batchSize)") }
        self.count = count
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
    }

    /// ceil(count / batchSize): every item once per epoch, the last batch possibly smaller.
    public var batchesPerEpoch: Int { (count + batchSize - 1) / batchSize }

    /// Item indices of epoch `epoch` in visiting order (0..<count when not shuffling).
    public func order(epoch: Int) -> [Int] {
        var order = Array(0..<count)
        guard shuffle else { return order }
        var rng = SplitMix64(seed: derivedSeed(seed, .shuffle, UInt64(bitPattern: Int64(epoch))))
        var i = count - 1
        while i > 0 {
            order.swapAt(i, rng.index(below: i + 1))
            i -= 1
        }
        return order
    }

    /// The positions within an epoch's order that batch `batch` covers.
    public func range(ofBatch batch: Int) -> Range<Int> {
        precondition(batch >= 0 && batch < batchesPerEpoch, "batch \(batch) of \(batchesPerEpoch)")
        return batch * batchSize ..< min(count, (batch + 1) * batchSize)
    }

    /// The item indices of batch `batch` of epoch `epoch`.
    public func items(epoch: Int, batch: Int) -> [Int] {
        Array(order(epoch: epoch)[range(ofBatch: batch)])
    }
}

/// Where a run is in its data: the next batch to produce. Saved with a checkpoint; with the same
/// seed and dataset, `BatchLoader.batches(from:)` continues exactly where the run stopped.
public struct DataPosition: Sendable, Equatable, Codable {
    public var epoch: Int
    public var batch: Int

    public init(epoch: Int, batch: Int) {
        self.epoch = epoch
        self.batch = batch
    }

    /// The position after finishing batch `batch` of `epoch` (rolling over to the next epoch).
    public static func after(epoch: Int, batch: Int, batchesPerEpoch: Int) -> DataPosition {
        batch + 1 >= batchesPerEpoch ? DataPosition(epoch: epoch + 1, batch: 0) : DataPosition(epoch: epoch, batch: batch + 1)
    }
}
