import Foundation

/// This test process's scratch directory, removed when the process exits: tests leave nothing behind in the
/// temporary directory, even those that do not clean up after themselves.
public enum TestScratch {
    public static let root: String = {
        let path = NSTemporaryDirectory() + "swift-cxl-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: TestScratch.root) }
        return path
    }()

    /// A new, empty directory under `root`.
    public static func directory(_ tag: String) throws -> String {
        let path = root + "/\(tag)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// Runs `program args` to completion; its exit status and standard output (stderr discarded).
public func runProcess(_ program: String, _ args: [String]) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}
