import PCI
#if canImport(Glibc)
import Glibc
#endif

/// A command-line error: printed as one line on stderr, exit status 1.
public struct CommandError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One function a target named: its config space, and the function itself when
/// registers beyond config space (BARs) can be reached. The decoder's own subject
/// type, so a resolved target decodes as it is.
public typealias ResolvedTarget = DecodeSubject

extension DecodeSubject {
    /// A target for any PCIFunction (emulated, vfio-user, ...): config space is
    /// snapshotted through `configRead`, BARs stay reachable through `barRead`.
    public init(function: any PCIFunction, name: String? = nil) throws(CommandError) {
        do {
            self.init(name: name ?? function.address, config: try function.configSnapshot(), function: function)
        } catch {
            throw CommandError("\(function.address): cannot read config space: \(error)")
        }
    }
}

/// Settings every scheme may use.
public struct TargetOptions: Sendable {
    /// Where sysfs is mounted (tests point it at a fake tree).
    public var sysfsRoot: String
    /// BAR images for file targets: BAR index to (offset of the image in the BAR, path).
    public var barImages: [Int: (offset: UInt64, path: String)]
    /// Name sysfs functions with their domain always (lspci's -D); otherwise as lspci prints them, `00:03.0`
    /// unless the domain is not 0.
    public var showDomain = false

    public init(sysfsRoot: String = "/sys", barImages: [Int: (offset: UInt64, path: String)] = [:]) {
        self.sysfsRoot = sysfsRoot
        self.barImages = barImages
    }
}

extension TargetOptions {
    /// The functions `-s SELECTOR` picks out of `targets` (all of them without a selector); a target whose name
    /// is not a PCI address (emulated:..., vfio-user:...) is function 00:00.0. An error when none matches.
    public static func select(_ targets: [ResolvedTarget], _ selector: String?) throws(CommandError) -> [ResolvedTarget] {
        guard let selector else { return targets }
        let s: PCISelector
        do { s = try PCISelector(selector) } catch { throw CommandError(error.description) }
        let picked = targets.filter { s.matches(PCIAddress($0.name) ?? PCIAddress(bus: 0, device: 0, function: 0)) }
        guard !picked.isEmpty else { throw CommandError("-s \(selector): no function matches (have: \(targets.map(\.name).joined(separator: ", ")))") }
        return picked
    }

    /// One `--bar N=FILE[@OFFSET]`: BAR N's image is FILE, starting OFFSET bytes into the BAR (any number form
    /// `ByteCount` takes).
    public static func parseBarImage(_ spec: String) throws(CommandError) -> (bar: Int, offset: UInt64, path: String) {
        guard let eq = spec.firstIndex(of: "="), let n = Int(spec[..<eq]), (0...5).contains(n) else {
            throw CommandError("--bar \(spec): expected N=FILE[@OFFSET] with N in 0...5")
        }
        var path = String(spec[spec.index(after: eq)...])
        var offset: UInt64 = 0
        if let at = path.lastIndex(of: "@") {
            do { offset = try ByteCount.parse(String(path[path.index(after: at)...])) } catch {
                throw CommandError("--bar \(spec): offset: \(error)")
            }
            path = String(path[..<at])
        }
        guard !path.isEmpty else { throw CommandError("--bar \(spec): no file named") }
        return (n, offset, path)
    }
}

/// Resolves `SCHEME:REST` target strings, e.g. `emulated:type2` or `vfio-user:/run/x.sock`.
public protocol TargetScheme: Sendable {
    /// The prefix before the first colon.
    var scheme: String { get }
    /// One-line description for help text.
    var summary: String { get }
    func resolve(_ rest: String, options: TargetOptions) throws(CommandError) -> [ResolvedTarget]
}

/// A scheme whose REST names the one function it opens (`vfio-user:SOCKET`, `control:SOCKET`, `emulated:NAME`): an
/// empty REST is refused with what it should name, and the target is the opened function, named by its address.
/// Each such scheme is a value stating only its name, summary, REST form and how to open (`OpeningScheme.vfioUser`).
public struct OpeningScheme: TargetScheme {
    public let scheme: String
    public let summary: String
    /// What REST names, with an example, for the error an empty REST gets: `a socket path (vfio-user:/run/dev.sock)`.
    public let restForm: String
    let open: @Sendable (_ rest: String, _ options: TargetOptions) throws(CommandError) -> any PCIFunction

    public init(_ scheme: String, summary: String, restForm: String,
                open: @escaping @Sendable (_ rest: String, _ options: TargetOptions) throws(CommandError) -> any PCIFunction) {
        self.scheme = scheme
        self.summary = summary
        self.restForm = restForm
        self.open = open
    }

    public func resolve(_ rest: String, options: TargetOptions) throws(CommandError) -> [ResolvedTarget] {
        guard !rest.isEmpty else { throw CommandError("\(scheme): needs \(restForm)") }
        return [try ResolvedTarget(function: try open(rest, options))]
    }
}

/// Turns a TARGET argument into functions. Built-in: `sysfs:ADDR` and `file:PATH`;
/// without a scheme, an existing path is a file (lspci dump or binary config space)
/// and a PCI address (`0000:3b:00.0` or `3b:00.0`) is a sysfs function. Later
/// layers register more schemes (`emulated:NAME`, `vfio-user:PATH`).
public struct TargetResolver: Sendable {
    public var options: TargetOptions
    public private(set) var schemes: [String: any TargetScheme] = [:]

    public init(options: TargetOptions = TargetOptions()) {
        self.options = options
        register(SysfsScheme())
        register(FileScheme())
        register(OpeningScheme.emulated)
        register(OpeningScheme.vfioUser)
        register(VFIOScheme())
        register(OpeningScheme.control)
    }

    /// Adds or replaces a scheme.
    public mutating func register(_ scheme: any TargetScheme) { schemes[scheme.scheme] = scheme }

    /// The embedded emulated device every command falls back to when no hardware is at hand.
    public static let embeddedTarget = "emulated:type2"

    /// The target a command uses when none is given: the first CXL function under
    /// sysfs (`--sysfs ROOT`), or, when the machine has none, the embedded emulated
    /// device. Also returns a one-line note saying which was chosen.
    public func defaultTarget() -> (target: String, note: String) {
        let tree = SysfsTree(root: options.sysfsRoot)
        if let fns = try? CXLKit.listFunctions(tree: tree), let cxl = fns.first(where: \.isCXL) {
            return (cxl.address.description, "no TARGET given: using the first CXL function, \(cxl.address)")
        }
        return (Self.embeddedTarget, "no TARGET given and no CXL function in \(tree.devicesDirectory): using the embedded emulated device, \(Self.embeddedTarget)")
    }

    public func resolve(_ target: String) throws(CommandError) -> [ResolvedTarget] {
        guard !target.isEmpty else { throw CommandError("empty target") }
        if let colon = target.firstIndex(of: ":") {
            let prefix = String(target[..<colon])
            if let s = schemes[prefix] {
                try checkBarImages(for: s.scheme, target)
                return try s.resolve(String(target[target.index(after: colon)...]), options: options)
            }
        }
        if access(target, F_OK) == 0 { return try FileScheme().resolve(target, options: options) }
        if PCIAddress(target) != nil {
            try checkBarImages(for: SysfsScheme().scheme, target)
            return try SysfsScheme().resolve(target, options: options)
        }
        let known = schemes.keys.sorted().map { $0 + ":" }.joined(separator: ", ")
        throw CommandError("\(target): no such file, not a PCI address, and not a known target scheme (\(known))")
    }

    /// `--bar` images stand in for the BARs of a file target; any other target reaches its own BARs, so an image
    /// given with it would be silently ignored: an error instead.
    private func checkBarImages(for scheme: String, _ target: String) throws(CommandError) {
        guard !options.barImages.isEmpty, scheme != FileScheme().scheme else { return }
        throw CommandError("--bar applies to file targets (a dump or config-space file); \(target) reaches its own BARs")
    }
}

/// `sysfs:ADDR`: config from `config`, BARs through `resourceN`.
public struct SysfsScheme: TargetScheme {
    public init() {}
    public var scheme: String { "sysfs" }
    public var summary: String { "a PCI function under /sys/bus/pci/devices (config and resourceN files)" }

    public func resolve(_ rest: String, options: TargetOptions) throws(CommandError) -> [ResolvedTarget] {
        guard let addr = PCIAddress(rest) else { throw CommandError("\(rest): not a PCI address (expected DDDD:BB:DD.F or BB:DD.F)") }
        let tree = SysfsTree(root: options.sysfsRoot)
        guard tree.exists(addr) else { throw CommandError("\(addr): no such PCI function in \(tree.devicesDirectory)") }
        do {
            let fn = try tree.open(addr)
            let config = try fn.readConfigFile()
            return [ResolvedTarget(name: options.showDomain ? addr.description : addr.lspciDescription, config: config, function: fn)]
        } catch {
            throw CommandError(error.description)
        }
    }
}

/// `file:PATH`: an lspci `-x/-xxx/-xxxx` dump (one or more functions) or a raw
/// binary config space, optionally with BAR images (`--bar`).
public struct FileScheme: TargetScheme {
    public init() {}
    public var scheme: String { "file" }
    public var summary: String { "an lspci -x/-xxx/-xxxx dump or a binary config-space file" }

    public func resolve(_ rest: String, options: TargetOptions) throws(CommandError) -> [ResolvedTarget] {
        var isDir = stat()
        if stat(rest, &isDir) == 0, (isDir.st_mode & S_IFMT) == S_IFDIR { throw CommandError("\(rest): is a directory") }
        guard let bytes = readWholeFile(rest, limit: 16 << 20) else {
            throw CommandError("\(rest): cannot read: \(systemErrorText(errno))")
        }
        let functions: [DumpedFunction]
        do { functions = try ConfigFile.load(bytes: bytes, name: rest) } catch { throw CommandError(error.message) }
        var images: [Int: (base: UInt64, bytes: [UInt8])] = [:]
        for (bar, img) in options.barImages {
            guard let b = readWholeFile(img.path) else { throw CommandError("\(img.path): cannot read BAR\(bar) image: \(systemErrorText(errno))") }
            images[bar] = (img.offset, b)
        }
        if !images.isEmpty && functions.count > 1 {
            throw CommandError("\(rest): --bar needs a file holding one function, this one holds \(functions.count)")
        }
        return functions.map { f in
            let fn: (any PCIFunction)? = images.isEmpty ? nil : ImagePCIFunction(address: f.addressText, config: f.config, barImages: images)
            return ResolvedTarget(name: f.addressText, description: f.description.isEmpty ? nil : f.description, config: f.config, function: fn)
        }
    }
}
