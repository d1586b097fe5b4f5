// DKD and DIST under mpirun: 2 ranks x 4 images give the weights of 1 rank x 8. DIST couples the
// rows of a batch (its class-wise correlations run over the batch), so each rank gathers the
// whole batch's logits; DKD is per row and takes each rank's share as kd does.
//
// Both are checked over 4 steps, not 25: float32 differences between batch sizes (the teacher's
// and student's logits at batch 4 and 8 differ at 1e-7) grow step by step. For DIST because on the
// untrained example student every class's probabilities barely vary over a batch and the
// class-wise correlation divides by that spread (3e-8 after 2 steps, 6e-8 after 4, 1.4e-4 after
// 25); for DKD where OpenBLAS takes its AVX-512 (SkylakeX) kernels, which sum a 4-row product in
// another order than an 8-row one (AMD Zen 4: 7e-5 after 25 steps, against 9e-8 with its Haswell
// kernels). A wrong share of a rank's loss or gradient shows from the first step.
import Foundation
import Runtime
import TestSupport
import XCTest

extension DistributedTests {
    func testDKDAndDISTTwoRanksOfFourMatchOneRankOfEight() throws {
        let common = sgdDistillOnExample
        for (loss, images) in [("dkd", 32), ("dist", 32)] {
            let train = ["--train", try subsetCSV(images)]
            let one = try mpi(1, common + train + ["--loss", loss, "--output", path("one-\(loss).h5")])
            XCTAssertEqual(one.status, 0, one.stderr)
            let two = try mpi(2, common + train + ["--loss", loss, "--output", path("two-\(loss).h5")])
            XCTAssertEqual(two.status, 0, two.stderr)
            let d = try maxDifference(path("one-\(loss).h5"), path("two-\(loss).h5"))
            print("--loss \(loss): 2 ranks vs 1, largest weight difference \(d)")
            XCTAssertLessThanOrEqual(d, 1e-6, loss)
        }
        // Training moved the weights well past the tolerance.
        let untrained = example.appendingPathComponent("student.h5").path
        XCTAssertGreaterThan(try maxDifference(untrained, path("one-dist.h5")), 1e-3)
        XCTAssertGreaterThan(try maxDifference(untrained, path("one-dkd.h5")), 1e-3)
    }
}
