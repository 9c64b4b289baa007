import Foundation
import PCI
import VFIO
import VFIOUser

/// What `cxlkit irq` waits for.
public struct IRQWaitOptions: Sendable {
    /// The MSI-X vector (table entry) to enable and wait on.
    public var vector: Int = 0
    /// Signals to wait for.
    public var count: Int = 1
    /// How long to wait for all of them, in milliseconds.
    public var timeoutMilliseconds: Int = 5000
    public init(vector: Int = 0, count: Int = 1, timeoutMilliseconds: Int = 5000) {
        self.vector = vector; self.count = count; self.timeoutMilliseconds = timeoutMilliseconds
    }
}

/// The outcome of `cxlkit irq`: 0 when every signal arrived, 1 on a timeout (an error throws).
public struct IRQWaitResult: Sendable {
    public var received: Int
    public var exitCode: Int32
}

/// Where the eventfd of one MSI-X vector is handed to the device: `VFIO_DEVICE_SET_IRQS` on a kernel vfio-pci
/// device, `VFIO_USER_DEVICE_SET_IRQS` (the fd as SCM_RIGHTS) on a vfio-user server.
enum IRQEventFDPort {
    case kernel(VFIOKernelDevice)
    case vfioUser(VFIOUserClient)

    /// DATA_EVENTFD | ACTION_TRIGGER for vector `vector` of the MSI-X index.
    func assign(vector: Int, _ fd: VFIOEventFD) throws(CommandError) {
        let msix = VFIOPCIIRQ.msix.rawValue
        switch self {
        case .kernel(let d):
            do { try d.setIRQs(index: msix, start: UInt32(vector), count: 1, action: .trigger, data: .eventfds([fd.fd])) }
            catch { throw CommandError("VFIO_DEVICE_SET_IRQS (MSI-X vector \(vector), eventfd): \(error)") }
        case .vfioUser(let c):
            do { try c.setIRQEventFDs(index: msix, start: UInt32(vector), [fd]) }
            catch { throw CommandError("DEVICE_SET_IRQS (MSI-X vector \(vector), eventfd): \(error)") }
        }
    }

    /// DATA_NONE | ACTION_TRIGGER, count 0: every MSI-X eventfd de-assigned.
    func disable() throws(CommandError) {
        let msix = VFIOPCIIRQ.msix.rawValue
        switch self {
        case .kernel(let d):
            do { try d.disableIRQs(index: msix) } catch { throw CommandError("VFIO_DEVICE_SET_IRQS (MSI-X disable): \(error)") }
        case .vfioUser(let c):
            do { try c.disableIRQs(index: msix) } catch { throw CommandError("DEVICE_SET_IRQS (MSI-X disable): \(error)") }
        }
    }
}

extension CXLKit {
    /// `cxlkit irq`: enables MSI-X vector `options.vector` of a `vfio:` or `vfio-user:` function as a driver does
    /// (Command Bus Master Enable, MSI-X Enable with Function Mask clear in Message Control, the vector's Mask Bit
    /// clear in its MSI-X table entry; PCI 3.0 §6.8.2), hands the device an eventfd for the vector (SET_IRQS
    /// DATA_EVENTFD | ACTION_TRIGGER), and waits (poll) for `options.count` signals within the timeout. `write`
    /// gets one line per signal and a result line. On the way out the eventfd is de-assigned (SET_IRQS DATA_NONE,
    /// count 0) and the Mask Bit, Message Control and Command are written back as they were.
    /// Errors (not a vfio target, no MSI-X, a vector beyond the table, a failing access) throw; a timeout is exit 1.
    public static func waitForInterrupts(_ target: ResolvedTarget, options: IRQWaitOptions,
                                         write: (String) -> Void) throws(CommandError) -> IRQWaitResult {
        guard options.count >= 1 else { throw CommandError("--count must be at least 1") }
        guard options.timeoutMilliseconds >= 0 else { throw CommandError("--timeout-ms must not be negative") }
        guard options.vector >= 0 else { throw CommandError("--vector must not be negative") }
        let port: IRQEventFDPort
        let fn: any PCIFunction
        switch target.function {
        case let k as VFIOKernelPCIFunction: port = .kernel(k.device); fn = k
        case let u as VFIOUserPCIFunction: port = .vfioUser(u.client); fn = u
        default: throw CommandError("\(target.name): irq needs a vfio:BDF or vfio-user:SOCKET target (the eventfd is handed to the device through SET_IRQS)")
        }
        let name = target.name
        func access<T>(_ what: String, _ body: () throws(PCIError) -> T) throws(CommandError) -> T {
            do { return try body() } catch { throw CommandError("\(name): \(what): \(error)") }
        }

        // The MSI-X capability and the vector's table entry (PCI 3.0 §6.8.2.1-4).
        guard let cap = CapabilityList(walking: target.config).standard(.msix) else {
            throw CommandError("\(name): no MSI-X capability")
        }
        let ctlOffset = cap.offset + MSIXCapability.messageControl.offset
        let control = try access("read Message Control") { () throws(PCIError) in try fn.configRead(ctlOffset, width: 2) }
        let tableSize = Int(MSIXCapability.Control.tableSize.extract(UInt64(control))) + 1
        guard options.vector < tableSize else {
            throw CommandError("\(name): MSI-X vector \(options.vector) out of range (the table has \(tableSize) entries)")
        }
        let tableReg = try access("read Table Offset/BIR") { () throws(PCIError) in try fn.configRead(cap.offset + MSIXCapability.tableOffset.offset, width: 4) }
        let bir = Int(MSIXCapability.tableBIR.extract(UInt64(tableReg)))
        guard bir < 6 else { throw CommandError("\(name): MSI-X Table BIR \(bir) is reserved") }
        let vectorControl = UInt64(tableReg & ~7) + UInt64(options.vector * MSIXCapability.tableEntrySize + MSIXCapability.vectorControl.offset)
        let busMaster = UInt32(PCIHeader.Command.busMasterEnable.mask)
        let memorySpace = UInt32(PCIHeader.Command.memorySpaceEnable.mask)
        let enable = UInt32(MSIXCapability.Control.enable.mask)
        let functionMask = UInt32(MSIXCapability.Control.functionMask.mask)
        let maskBit = MSIXCapability.maskBit.mask

        // What is set is undone in reverse order on every way out; a failing undo is one more line.
        var undo: [(String, () throws(PCIError) -> Void)] = []
        defer {
            for (what, body) in undo.reversed() {
                do { try body() } catch { write("irq: undo failed: \(name): \(what): \(error)\n") }
            }
        }
        let command = try access("read Command") { () throws(PCIError) in try fn.configRead(PCIHeader.command.offset, width: 2) }
        // Memory Space (the table is in a memory BAR) and Bus Master (MSI-X is a memory write), as a driver's
        // pci_enable_device + pci_set_master.
        undo.append(("restore Command", { () throws(PCIError) in try fn.configWrite(PCIHeader.command.offset, width: 2, value: command) }))
        try access("set Bus Master Enable") { () throws(PCIError) in
            try fn.configWrite(PCIHeader.command.offset, width: 2, value: command | memorySpace | busMaster)
        }
        let savedVC = try access("read MSI-X table entry \(options.vector) (BAR\(bir)+0x\(String(vectorControl, radix: 16)))") { () throws(PCIError) in
            try fn.barRead(bir, offset: vectorControl, width: 4)
        }
        undo.append(("restore Message Control", { () throws(PCIError) in try fn.configWrite(ctlOffset, width: 2, value: control) }))
        try access("set MSI-X Enable") { () throws(PCIError) in try fn.configWrite(ctlOffset, width: 2, value: (control | enable) & ~functionMask) }
        undo.append(("restore the Mask Bit", { () throws(PCIError) in try fn.barWrite(bir, offset: vectorControl, width: 4, value: savedVC) }))
        try access("unmask MSI-X vector \(options.vector)") { () throws(PCIError) in
            try fn.barWrite(bir, offset: vectorControl, width: 4, value: savedVC & ~maskBit)
        }
        let efd: VFIOEventFD
        do { efd = try VFIOEventFD.create(nonBlocking: true) } catch { throw CommandError("eventfd: \(error)") }
        // The eventfd goes out last and is taken back first: no signal into a closing fd.
        try port.assign(vector: options.vector, efd)
        defer { do { try port.disable() } catch { write("irq: undo failed: \(error.message)\n") } }

        let start = DispatchTime.now().uptimeNanoseconds
        // Capped at a day: no overflow for any --timeout-ms.
        let deadline = start + UInt64(min(options.timeoutMilliseconds, 86_400_000)) * 1_000_000
        var received = 0
        func elapsed() -> String { String(format: "%.1f ms", Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6) }
        while received < options.count {
            let now = DispatchTime.now().uptimeNanoseconds
            let left = now >= deadline ? 0 : Int32(clamping: (deadline - now + 999_999) / 1_000_000)
            guard let n = efd.wait(timeoutMilliseconds: left) else {
                if DispatchTime.now().uptimeNanoseconds < deadline { continue }
                break
            }
            // The counter adds up signals that arrived since the last read: each is one interrupt.
            for _ in 0..<min(Int(clamping: n), options.count - received) {
                received += 1
                write("interrupt \(received)/\(options.count): MSI-X vector \(options.vector) at +\(elapsed())\(n > 1 ? " (eventfd counter \(n))" : "")\n")
            }
        }
        let what = "\(name): MSI-X vector \(options.vector)"
        if received == options.count {
            write("\(what): \(received) of \(options.count) interrupts arrived in \(elapsed())\n")
            return IRQWaitResult(received: received, exitCode: 0)
        }
        write("\(what): timeout: \(received) of \(options.count) interrupts arrived within \(options.timeoutMilliseconds) ms (is the device signalling the vector? e.g. cxlkit serve --irq-interval MS)\n")
        return IRQWaitResult(received: received, exitCode: 1)
    }
}
