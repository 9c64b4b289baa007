import PCI

// VFIOPCIDevice's interrupts: the emulated MSI-X table, the host side of MSI-X, delivery of what the function
// raises on the index SET_IRQS armed (MSI-X, MSI, else INTx with emulated Interrupt Status), and re-arming the
// forwarded indices after a reset the kernel did not run.
extension VFIOPCIDevice {
    func resetMSIXTable() {
        guard let m = msix else { return }
        msixTable = []
        for _ in 0..<m.count { msixTable += MSIXCapability.tableEntry.resetImage }
    }

    /// The host side of MSI-X, as kernel vfio-pci does it on real hardware (`pci_alloc_irq_vectors` when SET_IRQS
    /// assigns MSI-X eventfds): the function itself gets MSI-X Enable, Function Mask clear and every vector
    /// unmasked while any MSI-X eventfd is assigned, and MSI-X disabled otherwise. The guest's view (Message
    /// Control, the table) stays virtual; guest masks act through SET_IRQS. Without this a function that gates
    /// its own interrupts on its MSI-X state (the emulated CXL device) never raises one: QEMU's MSI-X enable
    /// reaches only the virtual Message Control.
    func syncFunctionMSIX() {
        guard !(function is any VFIOIRQForwardingFunction), let x = msixOffset, let m = msix else { return }
        let on = irqs.isEnabled(VFIOPCIIRQ.msix.rawValue)
        let reg = MSIXCapability.messageControl
        guard let cur = try? function.configRead(x + reg.offset, width: reg.width) else { return }
        var v = MSIXCapability.Control.enable.insert(on ? 1 : 0, into: UInt64(cur))
        v = MSIXCapability.Control.functionMask.insert(0, into: v)
        if on {
            let vc = MSIXCapability.vectorControl
            for i in 0..<m.count {
                let off = m.tableOffset + UInt64(i * MSIXCapability.tableEntrySize + vc.offset)
                try? function.barWrite(m.bar, offset: off, width: vc.width, value: 0)
            }
        }
        try? function.configWrite(x + reg.offset, width: reg.width, value: UInt32(truncatingIfNeeded: v))
    }

    /// After a reset the kernel did not run itself (a CXL Reset through the DVSEC, CXL 3.1 §9.7, which resets
    /// CXL.io as an FLR does), a kernel-owned function has lost its MSI/MSI-X programming while vfio-pci still
    /// believes its vectors set up, and its own resets (which restore that state) were bypassed. Disables and re-arms
    /// every forwarded index that has eventfds, with the client's same eventfds, so the kernel programs the function
    /// again. Returns the indices re-armed; nothing for a function whose interrupts are not forwarded.
    @discardableResult
    public func rearmForwardedIRQs() throws(VFIOError) -> [UInt32] {
        guard let f = function as? any VFIOIRQForwardingFunction else { return [] }
        var done: [UInt32] = []
        for index in [VFIOPCIIRQ.intx, .msi, .msix].map(\.rawValue) {
            let all = irqs.eventfds(index: index)
            guard let last = all.lastIndex(where: { $0 != nil }) else { continue }
            let fds = Array(all[...last])
            try f.forwardIRQs(VFIOIRQSet(index: index, start: 0, count: 0, action: .trigger, data: .none))
            try f.forwardIRQs(VFIOIRQSet(index: index, start: 0, count: UInt32(fds.count), action: .trigger, data: .eventfds(fds)))
            done.append(index)
        }
        return done
    }

    var msixControl: UInt64 {
        guard let x = msixOffset else { return 0 }
        return readLE(x + MSIXCapability.messageControl.offset, 2)
    }
    /// The guest-visible MSI-X Enable bit (virtualised; delivery follows SET_IRQS, as in vfio-pci).
    public var msixEnableBit: Bool {
        lock.lock(); defer { lock.unlock() }
        return MSIXCapability.Control.enable.extract(msixControl) == 1
    }
    /// The guest-visible MSI Enable bit.
    public var msiEnableBit: Bool {
        lock.lock(); defer { lock.unlock() }
        guard let m = msiOffset else { return false }
        return MSICapability.Control.enable.extract(readLE(m + MSICapability.messageControl.offset, 2)) == 1
    }

    /// Which index interrupts are delivered on. As in kernel vfio-pci, the mode follows SET_IRQS (the index that has
    /// eventfds: MSI-X, then MSI, else INTx), not the guest's config writes: the VMM (QEMU) emulates the MSI/MSI-X
    /// capability and table itself and expresses enables and masks through SET_IRQS.
    public var activeInterruptMode: VFIOPCIIRQ {
        if irqs.isEnabled(VFIOPCIIRQ.msix.rawValue) { return .msix }
        if irqs.isEnabled(VFIOPCIIRQ.msi.rawValue) { return .msi }
        return .intx
    }

    /// Delivers an interrupt the function raised (MSI/MSI-X vector, or 0 for INTx). Masked vectors (SET_IRQS mask)
    /// become pending and are delivered on unmask; the MSI-X PBA reports them.
    public func raise(vector: Int) {
        switch activeInterruptMode {
        case .msix: irqs.trigger(index: VFIOPCIIRQ.msix.rawValue, vector: vector)
        case .msi: irqs.trigger(index: VFIOPCIIRQ.msi.rawValue, vector: vector)
        default:
            lock.lock()
            setINTxStatus(true)
            let disabled = intxDisabled
            lock.unlock()
            guard !disabled else { return }
            deliverINTx()
        }
    }

    /// Interrupt Status (Status bit 3) is emulated: set while INTx is asserted, so PCI 2.3 INTx masking drivers
    /// (uio_pci_generic, vfio-pci in a nested guest) see their interrupt. It is cleared when the VMM unmasks INTx
    /// (its EOI), i.e. INTx behaves as asserted until acknowledged.
    static let interruptStatus = PCIHeader.Status.interruptStatus

    var intxDisabled: Bool {
        PCIHeader.Command.interruptDisable.extract(readLE(PCIHeader.command.offset, 2)) == 1
    }

    func setINTxStatus(_ on: Bool) {
        let byte = PCIHeader.status.offset + Self.interruptStatus.lsb / 8
        let bit = UInt8(1) << UInt8(Self.interruptStatus.lsb % 8)
        if on { vconfig[byte] |= bit } else { vconfig[byte] &= ~bit }
    }

    var intxAsserted: Bool {
        let byte = PCIHeader.status.offset + Self.interruptStatus.lsb / 8
        return vconfig[byte] & (UInt8(1) << UInt8(Self.interruptStatus.lsb % 8)) != 0
    }

    func deliverINTx() {
        // INTx is automasked (VFIO_IRQ_INFO_AUTOMASKED): the client unmasks after handling.
        if irqs.trigger(index: VFIOPCIIRQ.intx.rawValue, vector: 0) {
            try? irqs.apply(VFIOIRQSet(index: VFIOPCIIRQ.intx.rawValue, start: 0, count: 1, action: .mask, data: .none))
        }
    }
}
