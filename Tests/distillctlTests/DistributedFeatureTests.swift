// --feature under mpirun: 2 ranks x 4 images give the weights of 1 rank x 8. Each rank's feature
// losses are its rows' part of the whole batch's (the normalisers count the whole batch) and the
// adaptor's gradient joins the fused sum over ranks, so a rank's adaptor and student both move as
// one process's would.
import Foundation
import Runtime
import TestSupport
import XCTest

extension DistributedTests {
    func testFeaturePairsTwoRanksOfFourMatchOneRankOfEight() throws {
        let common = sgdDistillOnExample + ["--train", try subsetCSV(200),
                      "--feature", "block1_relu:block1_relu:cosine", "--feature", "block2_relu:block2_relu:mse:2",
                      "--feature", "block3_relu:block3_relu:at:100"]
        let one = try mpi(1, common + ["--output", path("one-feature.h5")])
        XCTAssertEqual(one.status, 0, one.stderr)
        let two = try mpi(2, common + ["--output", path("two-feature.h5")])
        XCTAssertEqual(two.status, 0, two.stderr)
        let d = try maxDifference(path("one-feature.h5"), path("two-feature.h5"))
        print("--feature: 2 ranks vs 1, largest weight difference \(d)")
        XCTAssertLessThanOrEqual(d, 1e-6)
        let plain = try mpi(1, Array(common.prefix(while: { $0 != "--feature" })) + ["--output", path("plain.h5")])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertGreaterThan(try maxDifference(path("plain.h5"), path("one-feature.h5")), 1e-4, "the pairs changed the training")
    }
}
