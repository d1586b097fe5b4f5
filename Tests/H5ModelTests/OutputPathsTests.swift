import Foundation
import XCTest
@testable import H5Model

/// The output-path checks every writer relies on, one by one.
final class OutputPathsTests: XCTestCase {
    var folder: String = ""

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "output-paths-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: folder) }

    func kind(_ body: () throws -> Void) -> OutputPathError.Kind? {
        do { try body(); return nil } catch let e as OutputPathError { return e.kind } catch { XCTFail("\(error)"); return nil }
    }

    func testLinksAndDotsResolveToTheInput() throws {
        let input = folder + "/model.h5"
        XCTAssertTrue(FileManager.default.createFile(atPath: input, contents: Data("x".utf8)))
        try FileManager.default.createSymbolicLink(atPath: folder + "/soft.h5", withDestinationPath: input)
        XCTAssertEqual(link(input, folder + "/hard.h5"), 0)
        try FileManager.default.createDirectory(atPath: folder + "/sub", withIntermediateDirectories: false)
        for output in [input, folder + "/soft.h5", folder + "/hard.h5", folder + "/sub/../model.h5", folder + "/./model.h5"] {
            XCTAssertEqual(kind { try OutputPaths.checkDistinct(outputs: [output], inputs: [input]) }, .sameAsInput(input), output)
        }
        // A new file is compared by its resolved path: two names of it are one output.
        XCTAssertEqual(kind { try OutputPaths.checkDistinct(outputs: [folder + "/new.h5", folder + "/sub/../new.h5"], inputs: []) },
                       .sameAsOutput(folder + "/new.h5"))
        XCTAssertNil(kind { try OutputPaths.checkDistinct(outputs: [folder + "/new.h5"], inputs: [input]) })
    }

    func testLocations() throws {
        XCTAssertEqual(kind { try OutputPaths.checkLocation(folder) }, .isFolder)
        XCTAssertEqual(kind { try OutputPaths.checkLocation(folder + "/missing/a.h5") }, .folderMissing(folder + "/missing"))
        XCTAssertTrue(FileManager.default.createFile(atPath: folder + "/plain", contents: Data()))
        XCTAssertEqual(kind { try OutputPaths.checkLocation(folder + "/plain/a.h5") }, .notAFolder(folder + "/plain"))
        XCTAssertEqual(kind { try OutputPaths.checkFolderLocation(folder + "/plain") }, .notAFolder(folder + "/plain"))
        XCTAssertNil(kind { try OutputPaths.checkLocation(folder + "/a.h5") })
        XCTAssertNil(kind { try OutputPaths.checkFolderLocation(folder + "/new/deeper") })   // created later, parents too
        XCTAssertEqual(kind { try OutputPaths.checkAbsent(folder + "/plain") }, .wouldReplace)
        // The probe leaves nothing behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), ["plain"])
    }

    func testSpaceIsSummedPerFileSystem() throws {
        guard OutputPaths.spaceCheckEnabled else { return XCTFail("DISTILLCTL_NO_SPACE_CHECK is set for the tests") }
        XCTAssertNil(kind { try OutputPaths.checkSpace([(folder + "/a.h5", 1000)]) })
        let half = Int.max / 4
        guard case .noSpace(let needed, _, let where_)? = kind({ try OutputPaths.checkSpace([(folder + "/a.h5", half), (folder + "/b.h5", half)]) }) else {
            return XCTFail("two outputs larger than any disk together were accepted")
        }
        XCTAssertEqual(needed, 2 * half)
        XCTAssertEqual(where_, folder)
    }
}
