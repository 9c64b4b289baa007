import Foundation

/// This test process's scratch directory, removed when the process exits: tests leave nothing behind in the
/// temporary directory, even those that do not clean up after themselves.
enum TestScratch {
    static let root: String = {
        let path = NSTemporaryDirectory() + "swift-cxl-tests-\(getpid())-\(#fileID.split(separator: "/")[0])"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: TestScratch.root) }
        return path
    }()

    /// A new, empty directory under `root`.
    static func directory(_ tag: String) throws -> String {
        let path = root + "/\(tag)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
