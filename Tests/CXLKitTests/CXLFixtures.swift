import PCI
import CXL

/// The CXL config spaces the lspci parity test feeds to `lspci -F`: a Type-2
/// device with DVSECs 0/5/7/8, a root port with 3/4/7/8, and functions that carry
/// every DVSEC ID and the encodings lspci 3.9.0 decodes (within its limits,
/// reference §9: Media_Type/Memory_Class <= 2, Desired_Interleave <= 7).
enum CXLFixtures {
    static var type2Device: ConfigSpace {
        var b = ConfigBuilder(vendor: 0x8086, device: 0x0d93, classCode: 0x0502_10)
        b.addDeviceDVSEC(revision: 2,
            cap: ["Cache_Capable": 1, "IO_Capable": 1, "Mem_Capable": 1, "HDM_Count": 2, "Viral_Capable": 1,
                  "Cache Writeback and Invalidate Capable": 1, "CXL Reset Capable": 1, "CXL Reset Timeout": 2,
                  "PM Init Completion Reporting Capable": 1],
            ctl: ["Cache_Enable": 1, "Mem_Enable": 1, "Cache_SF_Coverage": 3, "Cache_SF_Granularity": 2, "Cache_Clean_Eviction": 1, "Viral_Enable": 1],
            ctl2: ["Disable Caching": 1, "CXL Reset Mem Clr Enable": 1],
            sta2: ["CXL Reset Complete": 1, "Power Management Initialization Complete": 1],
            lock: 1, cap2: ["Cache Size Unit": 2, "Cache Size": 4],
            cap3: ["Default Volatile HDM State after Cold Reset": 1, "Volatile HDM State after Hot Reset - Configurability": 1],
            ranges: [(size: 4 << 30, base: 0x4_0000_0000, low: ["Memory_Info_Valid": 1, "Memory_Active": 1, "Desired_Interleave": 1, "Memory_Active_Timeout": 1]),
                     (size: 256 << 20, base: 0x5_0000_0000, low: ["Memory_Info_Valid": 1, "Media_Type": 1, "Memory_Class": 1, "Desired_Interleave": 7, "Memory_Active_Timeout": 4])])
        b.addGPFDevice(base: 3, scale: 6, power: 51)
        b.addFlexBus(revision: 2, cap: ["Cache": 1, "IO": 1, "Mem": 1, "CXL 68B Flit and VH": 1, "Latency Optimized 256B Flit": 1],
                     ctl: ["Cache": 1, "IO": 1, "Mem": 1, "Retimer1 Present": 1, "Latency Optimized 256B Flit": 1],
                     sta: ["Cache": 1, "IO": 1, "Mem": 1, "CXL 68B Flit and VH": 1, "Drift Buffer": 1], ts: 0xEF, nop: (1, 0, 2))
        b.addRegisterLocator([(bir: 0, id: 1, offset: 0x10000), (bir: 2, id: 3, offset: 0), (bir: 0, id: 0, offset: 0)])
        return b.config
    }

    static var rootPort: ConfigSpace {
        var b = ConfigBuilder(vendor: 0x8086, device: 0x7075, classCode: 0x0604_00, portType: 4, headerType: 1)
        b.addPortExtensions(status: ["Port Power Management Initialization Complete": 1], control: ["Unmask SBR": 1, "Alt BME": 1, "Viral Enable": 1],
                            bus: (0x10, 0x1F), mem: (0xFE8, 0xFEF))
        b.addGPFPort(phase1: (1, 3), phase2: (5, 4))
        b.addFlexBus(revision: 1, cap: ["IO": 1, "Mem": 1, "CXL 68B Flit and VH": 1], ctl: ["IO": 1], sta: ["IO": 1, "Mem": 1, "CXL 68B Flit and VH": 1], ts: 0xEF)
        b.addRegisterLocator([(bir: 0, id: 1, offset: 0)])
        return b.config
    }

    /// Every DVSEC ID, every revision lspci treats differently, lengths at its cut-offs.
    static var everyDVSEC: [ConfigSpace] {
        var out: [ConfigSpace] = []
        var a = ConfigBuilder(classCode: 0x0502_10)
        a.addDeviceDVSEC(revision: 1, cap: ["IO_Capable": 1, "Mem_Capable": 1, "Mem_HwInit_Mode": 1, "HDM_Count": 1],
                         sta2: ["CXL Reset Error": 1], cap2: ["Cache Size Unit": 1, "Cache Size": 8],
                         ranges: [(size: 0x1_3000_0000, base: 0x2_1000_0000, low: ["Memory_Info_Valid": 1, "Media_Type": 2, "Memory_Class": 2, "Desired_Interleave": 2, "Memory_Active_Timeout": 2])])
        a.addFunctionMap([0x1234_5678, 0xFFFF, 0, 0x8000_0001, 0, 0, 0, 0xFFFF_FFFF])
        a.addMLD(lds: 4)
        a.addDVSEC(id: CXLDVSECID.testCapability.rawValue, revision: 0, length: 0x10)
        a.addDVSEC(id: 1, revision: 0, length: 0x10)
        a.addDVSEC(id: 6, revision: 0, length: 0x10)
        a.addFlexBus(revision: 0, cap: ["IO": 1], ctl: [:], sta: [:])
        a.addRegisterLocator([(bir: 5, id: 0xFF, offset: 0x2_0000_0000), (bir: 1, id: 2, offset: 0x30000), (bir: 3, id: 4, offset: 0x40000), (bir: 4, id: 6, offset: 0)])
        out.append(a.config)

        // GPF time scales 0-7 and cache size units 0 and 3, timeouts 0-4, media types/classes.
        var g = ConfigBuilder(classCode: 0x0502_10)
        for s in UInt64(0)...7 { g.addGPFDevice(base: s + 1, scale: s, power: s * 100) }
        for s in UInt64(0)...7 { g.addGPFPort(phase1: (15 - s, s), phase2: (s, 7 - s)) }
        g.addDeviceDVSEC(revision: 1, cap: ["Cache_Capable": 1, "IO_Capable": 1, "HDM_Count": 0], cap2: ["Cache Size Unit": 3, "Cache Size": 2])
        g.addDeviceDVSEC(revision: 1, cap: ["IO_Capable": 1, "Mem_Capable": 1, "HDM_Count": 2], cap2: ["Cache Size Unit": 0],
                         ranges: [(size: 1 << 28, base: 0, low: ["Memory_Active": 1, "Memory_Class": 1, "Desired_Interleave": 3, "Memory_Active_Timeout": 3]),
                                  (size: 0x7_F000_0000, base: 0xFFFF_FFF0_0000_0000, low: ["Memory_Info_Valid": 1, "Media_Type": 2, "Desired_Interleave": 6])])
        out.append(g.config)

        // What lspci leaves undecoded: CXL 1.1 (rev 0) and short Device DVSECs, Len < 16,
        // a foreign vendor, MLD counts outside 1-16, a short Port Extensions DVSEC.
        var q = ConfigBuilder(classCode: 0x0502_10)
        q.addDeviceDVSEC(revision: 0, cap: ["IO_Capable": 1, "Mem_Capable": 1], length: 0x38)
        q.addDeviceDVSEC(revision: 1, cap: ["IO_Capable": 1, "Mem_Capable": 1], length: 0x34)
        q.addDVSEC(id: 0, revision: 1, length: 0x0F, allocate: 0x10)
        q.addDVSEC(vendor: 0x8086, id: 0, revision: 1, length: 0x38)
        q.addMLD(lds: 0)
        q.addMLD(lds: 17)
        q.addMLD(lds: 16)
        q.addDVSEC(id: CXLDVSECID.portExtensions.rawValue, revision: 0, length: 0x27, allocate: 0x28)
        q.addDeviceDVSEC(revision: 3, cap: ["IO_Capable": 1, "Mem_Capable": 1, "HDM_Count": 1, "TSP Capable": 1, "Multiple Logical Device": 1],
                         ctl: ["Direct P2P Mem Enable": 1], cap2: ["Fallback Capability": 2, "Modified Completion Capable": 1], cap3: ["Direct P2P Mem Capable": 1],
                         ranges: [(size: 0x10_0000_0000, base: 0x100_0000_0000, low: ["Memory_Info_Valid": 1, "Memory_Active": 1, "Desired_Interleave": 5, "Memory_Active_Degraded": 1])])
        out.append(q.config)
        return out
    }

    /// All synthetic dumps: (file name, functions).
    static var all: [(name: String, functions: [ConfigSpace])] {
        [("type2-device", [type2Device]), ("root-port", [rootPort]), ("every-dvsec", everyDVSEC),
         ("type2-and-port", [rootPort, type2Device])]
    }

    /// `lspci -xxxx`-style text for functions at 00:00.0, 00:00.1, ...
    static func dumpText(_ functions: [ConfigSpace]) -> String {
        functions.enumerated().map { i, c in
            LspciDump.format(address: "00:\(hex(i / 8, digits: 2)).\(i % 8)", description: LspciDump.defaultDescription(c), config: c)
        }.joined()
    }
}
