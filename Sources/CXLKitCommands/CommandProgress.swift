import Foundation
import CXL
#if canImport(Glibc)
import Glibc
#endif

/// The progress line of long operations (a CXL Reset's wait, a commit poll, serve's start): written to
/// stderr only when stderr is a terminal and `--quiet` is not given, and always overwritten in place, so a
/// script capturing stderr or a journal never sees it.
public final class CommandProgress: @unchecked Sendable {
    /// `-q/--quiet`: no progress and no notes. Set by the CLI around a command's run.
    @TaskLocal public static var quiet = false

    private let lock = NSLock()
    private let write: @Sendable (String) -> Void
    private var shown = false

    /// A line on a terminal; `write` receives the exact bytes (tests pass their own).
    public init(write: @escaping @Sendable (String) -> Void) { self.write = write }

    /// The progress line for this process: nil when stderr is not a terminal or `--quiet` is in force.
    public static func forStderr(isTerminal: Bool = isatty(2) != 0) -> CommandProgress? {
        guard isTerminal, !quiet else { return nil }
        return CommandProgress { s in
            let bytes = Array(s.utf8)
            _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        }
    }

    /// Replace the line with `message` (carriage return, erase to end of line, no newline).
    public func show(_ message: String) {
        lock.withLock {
            shown = true
            write("\r\u{1B}[K" + message)
        }
    }

    /// Erase the line, if anything was shown, so the command's own output starts on a clean line.
    public func finish() {
        lock.withLock {
            if shown { write("\r\u{1B}[K") }
            shown = false
        }
    }

    /// As the library's reporter.
    public var reporter: CXLProgress { CXLProgress { [self] in show($0) } }

    /// The line of the running command, if it shows one.
    @TaskLocal public static var active: CommandProgress?

    /// Runs `body` with the line as `CXLProgress.current` (when there is one), erasing it afterwards.
    public static func around<T>(isTerminal: Bool = isatty(2) != 0, _ body: () throws -> T) rethrows -> T {
        guard let line = forStderr(isTerminal: isTerminal) else { return try body() }
        defer { line.finish() }
        return try $active.withValue(line) { try CXLProgress.$current.withValue(line.reporter, operation: body) }
    }

    /// Erase the running command's line before anything else is printed.
    public static func clear() { active?.finish() }

    /// A note for a person (the default target chosen, what was saved): stderr, unless `--quiet`.
    public static func note(_ text: String) {
        guard !quiet else { return }
        clear()
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
