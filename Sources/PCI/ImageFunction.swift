// A read-only PCIFunction over a config-space image and optional BAR images:
// dump files, captured register blocks, test fixtures.

/// Config space from an image, BARs from byte images (e.g. a captured component
/// register block). Writes are refused; reads past an image fail with `outOfRange`.
public final class ImagePCIFunction: PCIFunction {
    public let address: String
    public let config: ConfigSpace
    /// BAR index to (offset inside the BAR where the image starts, bytes).
    public let barImages: [Int: (base: UInt64, bytes: [UInt8])]

    public init(address: String, config: ConfigSpace, barImages: [Int: (base: UInt64, bytes: [UInt8])] = [:]) {
        self.address = address
        self.config = config
        self.barImages = barImages
    }

    public var configSize: Int { config.count >= pcieConfigSpaceSize ? pcieConfigSpaceSize : config.count }

    public func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 {
        guard [1, 2, 4].contains(width), offset % width == 0 else { throw .badAccess("config read of \(width) bytes at 0x\(hex(offset, digits: 3))") }
        guard let v = config.read(offset, width: width) else { throw .outOfRange("config offset 0x\(hex(offset, digits: 3)) past the \(config.count)-byte image") }
        return UInt32(v)
    }

    public func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {
        throw .io("\(address): read-only image")
    }

    public var bars: [BARDescription] {
        barImages.keys.sorted().map { BARDescription(index: $0, kind: .memory64, prefetchable: false,
                                                     size: UInt64(barImages[$0]!.bytes.count) + barImages[$0]!.base) }
    }

    public func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 {
        guard [1, 2, 4, 8].contains(width) else { throw .badAccess("BAR read of \(width) bytes") }
        guard let img = barImages[bar] else { throw .noSuchBAR(bar) }
        guard offset >= img.base, offset - img.base <= UInt64(img.bytes.count), UInt64(img.bytes.count) - (offset - img.base) >= UInt64(width) else {
            throw .outOfRange("BAR\(bar) offset 0x\(hex(offset, digits: 1)) outside the captured image")
        }
        return LittleEndian.load(img.bytes, at: Int(offset - img.base), width: width) ?? 0
    }

    public func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        throw .io("\(address): read-only image")
    }

    public var resetMethods: [PCIResetMethod] { [] }
    public func reset(_ method: PCIResetMethod) throws(PCIError) { throw .resetUnsupported(method.rawValue) }
}
