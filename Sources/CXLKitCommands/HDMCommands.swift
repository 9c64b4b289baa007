import PCI
import CXL
import CXLEmulator

/// What `cxlkit hdm commit` programs into one HDM decoder.
public struct HDMCommitRequest: Sendable {
    public var decoder: Int
    /// HPA base and size: multiples of 256 MiB (CXL 3.1 §8.2.4.20.5-6).
    public var base: UInt64
    public var size: UInt64
    public var dpaSkip: UInt64 = 0
    public var lockOnCommit = false
    /// Also set HDM Decoder Enable in HDM Decoder Global Control.
    public var enableDecoding = false
    public var timeoutMilliseconds = 1000
    public init(decoder: Int, base: UInt64, size: UInt64) {
        self.decoder = decoder
        self.base = base
        self.size = size
    }
}

extension HDMCommitRequest {
    /// The request `cxlkit hdm commit` options describe, checked the way a user needs it explained: each number
    /// parsed without overflow (`ByteCount`), then the range (Base + Size inside the 64-bit HPA space; DPA Skip +
    /// Size inside the 64-bit DPA space), then the 256 MiB granule the registers hold (CXL 3.1 §8.2.4.20.5-6).
    public static func parse(decoder: Int, base: String, size: String, dpaSkip: String) throws(CommandError) -> HDMCommitRequest {
        func number(_ option: String, _ text: String) throws(CommandError) -> UInt64 {
            do { return try ByteCount.parse(text) } catch { throw CommandError("--\(option) \(text): \(error)") }
        }
        let b = try number("base", base), s = try number("size", size), k = try number("dpa-skip", dpaSkip)
        guard decoder >= 0, decoder < HDMDecoderCapability.maximumDecoders else {
            throw CommandError("--decoder \(decoder): out of range (0...\(HDMDecoderCapability.maximumDecoders - 1))")
        }
        guard s > 0 else { throw CommandError("--size \(size): must be non-zero") }
        guard !b.addingReportingOverflow(s).overflow else {
            throw CommandError("--base \(base) --size \(size): out of range: base + size passes the end of the 64-bit address space")
        }
        guard !k.addingReportingOverflow(s).overflow else {
            throw CommandError("--dpa-skip \(dpaSkip) --size \(size): out of range: DPA skip + size passes 2^64")
        }
        let gran: UInt64 = 256 << 20
        for (name, text, v) in [("base", base, b), ("size", size, s), ("dpa-skip", dpaSkip, k)] where v % gran != 0 {
            throw CommandError("--\(name) \(text): must be a multiple of 256 MiB (the decoder registers hold bits 63:28)")
        }
        var r = HDMCommitRequest(decoder: decoder, base: b, size: s)
        r.dpaSkip = k
        return r
    }
}

/// A device that can say why a commit failed (the registers only say Error Not Committed): the emulated device.
public protocol HDMCommitDiagnosing {
    func commitFailure(decoder n: Int) -> CommitFailure?
}

extension CXLKit {
    /// `cxlkit hdm commit`: program decoder n (Base, Size, DPA Skip, Control with IG/IW 0) through the component
    /// register BAR, set Commit, then poll until Committed or Error Not Committed (CXL 3.1 §8.2.4.20.7, .12).
    /// Every register and field comes from the CXL catalog; the HDM capability is found through the Register
    /// Locator DVSEC and the CXL.cachemem capability array, as the state engine finds it. Memory Space Enable is
    /// turned on for the accesses if it is off, and left as it was.
    /// Returns the report and whether the decoder ended committed with the requested base and size.
    public static func hdmCommit(_ function: any PCIFunction, _ req: HDMCommitRequest) throws(CommandError) -> (text: String, committed: Bool) {
        let gran = hdmGranule
        guard req.base % gran == 0, req.size % gran == 0, req.dpaSkip % gran == 0, req.size > 0 else {
            throw CommandError("base, size and DPA skip must be multiples of 256 MiB, size non-zero")
        }
        let snapshot: CXLStateSnapshot
        do { snapshot = try CXLStateEngine(function: function).save() } catch { throw CommandError("\(function.address): \(error)") }
        guard let hdm = snapshot.layout.hdm else { throw CommandError("\(function.address): no HDM Decoder Capability") }
        guard req.decoder >= 0, req.decoder < hdm.decoderCount else {
            throw CommandError("\(function.address): decoder \(req.decoder) not implemented (\(hdm.decoderCount) decoders)")
        }
        var out = ""
        func r32(_ reg: RegisterLayout) throws(CommandError) -> UInt64 {
            do { return try function.barRead(hdm.bar, offset: hdm.hdmOffset + UInt64(reg.offset), width: 4) } catch {
                throw CommandError("\(function.address): read \(reg.name): \(error)")
            }
        }
        func w32(_ reg: RegisterLayout, _ v: UInt64) throws(CommandError) {
            do { try function.barWrite(hdm.bar, offset: hdm.hdmOffset + UInt64(reg.offset), width: 4, value: UInt64(UInt32(truncatingIfNeeded: v))) } catch {
                throw CommandError("\(function.address): write \(reg.name): \(error)")
            }
            out += "  \(reg.name) <- \(hex(UInt64(UInt32(truncatingIfNeeded: v)), digits: 8))\n"
        }
        // Memory Space Enable for the BAR accesses.
        let cmdReg = PCIHeader.command
        let mse = PCIHeader.Command.memorySpaceEnable
        let command: UInt64
        do { command = UInt64(try function.configRead(cmdReg.offset, width: cmdReg.width)) } catch { throw CommandError("\(function.address): \(error)") }
        if mse.extract(command) == 0 {
            do { try function.configWrite(cmdReg.offset, width: cmdReg.width, value: UInt32(mse.insert(1, into: command))) } catch {
                throw CommandError("\(function.address): \(error)")
            }
            out += "  Command: Memory Space Enable set for the accesses\n"
        }
        defer {
            if mse.extract(command) == 0 { try? function.configWrite(cmdReg.offset, width: cmdReg.width, value: UInt32(command)) }
        }

        let n = req.decoder
        let decoder = HDMDecoderRegisters(n)
        let control = decoder.control
        out += "\(function.address): HDM decoder \(n) (HDM capability at BAR\(hdm.bar)+\(hex(hdm.hdmOffset, digits: 8))): base \(hex(req.base, digits: 16)) size \(hex(req.size, digits: 16)) DPA skip \(hex(req.dpaSkip, digits: 16))\n"
        let before = try r32(control)
        if HDMDecoderCapability.Control.committed.extract(before) == 1 {
            out += "  already committed (Control \(hex(before, digits: 8))); Commit is cleared first\n"
        }
        if req.enableDecoding {
            let g = HDMDecoderCapability.globalControl
            try w32(g, HDMDecoderCapability.hdmDecoderEnable.insert(1, into: try r32(g)))
        }
        // The host-side committer programs Base, Size and DPA Skip, writes Control
        // with Commit clear then set, and polls through the clock (CXL 3.1 §8.2.4.20.12).
        let names = Dictionary(uniqueKeysWithValues: (decoder.programming + [control]).map { ($0.offset, $0.name) })
        let plain = HDMRegisterAccess.bar(function, bar: hdm.bar, hdmOffset: hdm.hdmOffset)
        let logged = HDMRegisterAccess(read: plain.read, write: { (o, v) throws(PCIError) in
            try plain.write(o, v)
            out += "  \(names[o] ?? "0x\(String(o, radix: 16))") <- \(hex(UInt64(UInt32(truncatingIfNeeded: v)), digits: 8))\n"
        })
        let ctl = HDMDecoderCapability.Control.lockOnCommit.insert(req.lockOnCommit ? 1 : 0, into: 0)   // IG, IW 0: 1-way
        let clock = SystemCXLClock()
        let committer = HDMCommitter(clock: clock, timeout: .milliseconds(req.timeoutMilliseconds), interval: .milliseconds(1))
        let started = clock.now()
        let result: HDMCommitResult
        do { result = try committer.commit(decoder: n, base: req.base, size: req.size, dpaSkip: req.dpaSkip, control: ctl, through: logged) } catch {
            throw CommandError("\(function.address): decoder \(n): \(error)")
        }
        let waited = (clock.now() - started).components
        let ms = Int(waited.seconds) * 1000 + Int(waited.attoseconds / 1_000_000_000_000_000)
        let now = result.wait.control
        let committed = HDMDecoderCapability.Control.committed.extract(now) == 1
        let errorNotCommitted = HDMDecoderCapability.Control.errorNotCommitted.extract(now) == 1
        let state = committed ? "committed" : (errorNotCommitted ? "Error Not Committed" : "not committed after \(req.timeoutMilliseconds) ms")
        out += "  Decoder \(n) Control -> \(hex(now, digits: 8)): \(state) (\(ms) ms, \(result.wait.polls) read(s))\n"
        if errorNotCommitted {
            if let why = (function as? HDMCommitDiagnosing)?.commitFailure(decoder: n) {
                out += "  why: \(why)\n"
            } else if n > 0, HDMDecoderCapability.Control.committed.extract(try r32(HDMDecoderRegisters(n - 1).control)) == 0 {
                out += "  why: decoder \(n - 1) is not committed (decoders commit in index order, CXL 3.1 §8.2.4.20.12)\n"
            } else {
                out += "  why: the device does not say (Error Not Committed only; check base/size/skip against CXL 3.1 §8.2.4.20.12)\n"
            }
        }
        // What the decoder holds now (the committer read it back).
        let (hb, hs) = (result.base, result.size)
        out += "  read back: base \(hex(hb, digits: 16)) size \(hex(hs, digits: 16))\n"
        let matches = hb == req.base && hs == req.size
        if committed && matches {
            out += "decoder \(n): COMMITTED\n"
        } else if committed {
            out += "decoder \(n): COMMITTED WITH OTHER VALUES (locked: the writes were ignored)\n"
        } else {
            out += "decoder \(n): NOT COMMITTED\n"
        }
        return (out, committed && matches)
    }
}

/// The emulated device knows why its last commit of a decoder failed.
extension EmulatedCXLDevice: HDMCommitDiagnosing {}
