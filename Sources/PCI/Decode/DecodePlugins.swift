// Plug-in points of the PCI decoder. PCI knows nothing of CXL: the CXL module
// registers a DVSECDecoder for vendor 0x1E98 and a FunctionDecodeExtension for the
// component registers; the command layer wires them together.

/// Flag character as lspci prints it: `+` or `-`.
@inline(__always) public func flag(_ b: Bool) -> String { b ? "+" : "-" }
@inline(__always) public func flag<T: BinaryInteger>(_ v: T, _ mask: T) -> String { v & mask != 0 ? "+" : "-" }

/// What is being decoded: a config space, and when the function is reachable
/// (sysfs, emulated, vfio-user, or a dump with BAR images) its BARs.
public struct DecodeSubject: Sendable {
    /// Address or name printed at the start of the header line (`0d:00.0`).
    public var name: String
    /// Text after the address on the header line; nil prints lspci's ID-less form.
    public var description: String?
    public var config: ConfigSpace
    public var function: (any PCIFunction)?

    public init(name: String, description: String? = nil, config: ConfigSpace, function: (any PCIFunction)? = nil) {
        self.name = name
        self.description = description
        self.config = config
        self.function = function
    }
}

/// Everything a plug-in sees while one function is decoded.
public struct DecodeContext: Sendable {
    public let subject: DecodeSubject
    public let capabilities: CapabilityList
    /// 0 = header line only, 1 = `-v`, 2 = `-vv`, 3 = `-vvv`.
    public let verbosity: Int

    public var config: ConfigSpace { subject.config }
    public var function: (any PCIFunction)? { subject.function }

    public init(subject: DecodeSubject, capabilities: CapabilityList, verbosity: Int) {
        self.subject = subject
        self.capabilities = capabilities
        self.verbosity = verbosity
    }

    /// PCI Express Device/Port Type, if the function has a PCI Express capability.
    public var devicePortType: UInt8? {
        guard let cap = capabilities.standard(.pciExpress),
              let v = config.read(PCIExpressCapability.capabilities, base: cap.offset) else { return nil }
        return UInt8(PCIExpressCapability.devicePortType.extract(v))
    }
}

/// Decodes the DVSECs of one vendor (matched on DVSEC Vendor ID).
public protocol DVSECDecoder: Sendable {
    var vendorID: UInt16 { get }
    /// Text after `Len=NN` on the capability line; lspci 3.9 prints `: CXL` for CXL
    /// DVSECs it accepts and ` <?>` otherwise.
    func titleSuffix(_ header: DVSECInstance, context: DecodeContext) -> String
    /// Detail lines, complete with their leading tabs (lspci uses two). Called from -vv.
    func textLines(_ header: DVSECInstance, context: DecodeContext) -> [String]
    /// The decoded body, merged into the capability's JSON object under "dvsec".
    func json(_ header: DVSECInstance, context: DecodeContext) -> JSONValue
}

/// Adds a section after the capability list (text) and a member to the function's
/// JSON object, e.g. CXL component registers read through a BAR.
public protocol FunctionDecodeExtension: Sendable {
    /// Lines, with leading tabs; empty when there is nothing to say.
    func textLines(context: DecodeContext) -> [String]
    /// A key and value for the function's JSON object, or nil.
    func json(context: DecodeContext) -> (key: String, value: JSONValue)?
}
