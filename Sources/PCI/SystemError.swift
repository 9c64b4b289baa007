#if canImport(Glibc)
import Glibc
#endif

/// strerror(3) text for an errno: every message that reports a failed system call says it in words
/// ("No such file or directory"), never "errno 2".
public func systemErrorText(_ code: Int32) -> String { String(cString: strerror(code)) }
