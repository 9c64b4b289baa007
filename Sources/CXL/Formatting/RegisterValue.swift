import PCI

/// A register's raw value with field access through the catalog, so formatters
/// never restate bit positions.
public struct RegisterValue: Sendable {
    public let layout: RegisterLayout
    public let raw: UInt64
    /// False when the register could not be read (past the end of the image).
    public let present: Bool

    public init(_ layout: RegisterLayout, _ raw: UInt64?) {
        self.layout = layout
        self.raw = raw ?? 0
        self.present = raw != nil
    }

    /// Reads `layout` at `base` in a config space; a missing register reads as 0.
    public init(_ layout: RegisterLayout, config: ConfigSpace, base: Int) {
        self.init(layout, config.read(layout, base: base))
    }

    /// The field's value. A name the catalog does not declare is a programming
    /// error (names are constants, never input): it stops at first use, in every
    /// build, instead of reading a silent 0.
    public subscript(_ field: String) -> UInt64 {
        guard let f = layout.field(field) else { preconditionFailure("\(layout.name) has no field \(field)") }
        return f.extract(raw)
    }

    /// The value of a field handle from the catalog.
    public subscript(_ field: RegisterField) -> UInt64 { field.extract(raw) }

    public func isSet(_ field: String) -> Bool { self[field] != 0 }
    /// lspci's `+`/`-`.
    public func flag(_ field: String) -> String { isSet(field) ? "+" : "-" }
    public func meaning(_ field: String) -> String? { layout.field(field)?.name(of: self[field]) }

    public var json: JSONValue { layout.json(raw: raw, at: layout.offset) }
}
