import Testing
import Foundation
@testable import PCI

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
func fixture(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: repoRoot.appendingPathComponent("Tests/Fixtures/" + path)))
}

@Suite("PCI addresses")
struct PCIAddressTests {
    @Test(arguments: ["0000:3b:00.0", "3b:00.0", "ffff:ff:1f.7", "0:0:0.0"])
    func parses(_ s: String) { #expect(PCIAddress(s) != nil) }

    @Test(arguments: ["", "3b:00", "3b:20.0", "3b:00.8", "g0:00.0", "00000:00:00.0:1", "0000:3b:00.0 ", "./file", "3b:00.00"])
    func rejects(_ s: String) { #expect(PCIAddress(s) == nil) }

    @Test func spellings() {
        let a = PCIAddress("3b:1f.7")!
        #expect(a.description == "0000:3b:1f.7")
        #expect(a.lspciDescription == "3b:1f.7")
        #expect(PCIAddress("0001:00:02.0")!.lspciDescription == "0001:00:02.0")
    }
}

@Suite("lspci hex dumps")
struct LspciDumpTests {
    @Test func qemuFixtureDumpMatchesBinary() throws {
        for state in ["pristine", "bound", "region", "reset"] {
            for fn in ["endpoint", "rootport"] {
                let text = String(decoding: try fixture("qemu-cxl/\(state)/\(fn)/lspci-xxxx.txt"), as: UTF8.self)
                let bin = try fixture("qemu-cxl/\(state)/\(fn)/config.bin")
                let parsed = try LspciDump.parse(text)
                #expect(parsed.count == 1)
                #expect(parsed[0].config.bytes == bin, "\(state)/\(fn)")
                // Our writer reproduces lspci's hex lines exactly.
                let ours = LspciDump.format(address: parsed[0].addressText, description: parsed[0].description, config: parsed[0].config)
                #expect(ours == text, "\(state)/\(fn)")
            }
        }
    }

    @Test func roundTripSizes() throws {
        for size in [64, 256, 4096] {
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }
            let text = LspciDump.format(address: "0000:3b:00.0", description: "Class 0000: Device 1234:5678", config: ConfigSpace(bytes: bytes))
                + LspciDump.format(address: "3b:00.1", description: "x", config: ConfigSpace(bytes: bytes))
            let parsed = try LspciDump.parse(text)
            #expect(parsed.count == 2)
            #expect(parsed.allSatisfy { $0.config.bytes == bytes })
            #expect(parsed[0].address == PCIAddress("0000:3b:00.0"))
        }
    }

    @Test func skipsDecodedLines() throws {
        let text = String(decoding: try fixture("qemu-cxl/bound/endpoint/lspci-vvv.txt"), as: UTF8.self)
        // -vvv without -x has no hex: a header with no data is "too short".
        #expect(throws: DumpError.self) { try LspciDump.parse(text) }
        let both = text.replacingOccurrences(of: "\n\n", with: "\n") + String(decoding: try fixture("qemu-cxl/bound/endpoint/lspci-xxxx.txt"), as: UTF8.self).split(separator: "\n", maxSplits: 1)[1]
        let parsed = try LspciDump.parse(both)
        #expect(parsed.count == 1)
        #expect(parsed[0].config.count == 4096)
    }

    @Test(arguments: [
        ("", "no functions"),
        ("hello world\n", "not an lspci hex dump line"),
        ("00: 86 80\n", "before any function header"),
        ("00:00.0 x\n00: 86 80 93 0d\n", "at least 64"),
        ("00:00.0 x\n00: 86 8g\n", "bad hex byte"),
        ("00:00.0 x\nff0: " + Array(repeating: "00", count: 17).joined(separator: " ") + "\n", "1 to 16"),
        ("00:00.0 x\n1000: 00\n", "past the 4096-byte"),
    ])
    func rejectsGarbage(text: String, message: String) {
        do {
            _ = try LspciDump.parse(text)
            Issue.record("accepted \(text.debugDescription)")
        } catch {
            #expect(error.message.contains(message), "\(error.message)")
        }
    }

    @Test func configFileDetection() throws {
        let bin = try fixture("qemu-cxl/bound/endpoint/config.bin")
        let f = try ConfigFile.load(bytes: bin, name: "config.bin")
        #expect(f.count == 1 && f[0].config.bytes == bin)
        #expect(throws: DumpError.self) { try ConfigFile.load(bytes: [], name: "empty") }
        #expect(throws: DumpError.self) { try ConfigFile.load(bytes: [0, 1, 2, 0xFF], name: "short") }
        #expect(throws: DumpError.self) { try ConfigFile.load(bytes: [UInt8](repeating: 0, count: 4097), name: "long") }
        // 256-byte binary (what unprivileged readers and conventional devices give).
        #expect(try ConfigFile.load(bytes: Array(bin.prefix(256)), name: "c").first?.config.count == 256)
    }
    /// `parse` reads plain-ASCII dumps from the bytes (a performance path): it must
    /// agree with the general Character path on every input, results and errors alike.
    @Test func byteParserAgreesWithTheGeneralParser() throws {
        var inputs: [String] = []
        for state in ["bound", "pristine", "region", "reset"] {
            for fn in ["endpoint", "rootport"] {
                inputs.append(String(decoding: try fixture("qemu-cxl/\(state)/\(fn)/lspci-xxxx.txt"), as: UTF8.self))
            }
        }
        inputs.append(String(decoding: try fixture("qemu-cxl/bound/endpoint/lspci-vvv.txt"), as: UTF8.self))
        for name in ["every-dvsec", "root-port", "type2-and-port", "type2-device"] {
            inputs.append(String(decoding: try fixture("decode/\(name).txt"), as: UTF8.self))
        }
        let header = "0000:0d:00.0 Class 0502: Device 8086:0d93\n"
        let line0 = "00: 86 80 93 0d 06 04 10 00 01 00 02 05 10 00 00 00\n"
        let rest = (1..<4).map { "\(String($0 * 16, radix: 16)): " + Array(repeating: "00", count: 16).joined(separator: " ") + "\n" }.joined()
        inputs += [
            header + line0 + rest,
            header + line0.replacingOccurrences(of: "86", with: "+6") + rest,      // UInt8("+6", radix: 16) parses
            header + line0.replacingOccurrences(of: "86", with: "-0") + rest,
            header + line0.replacingOccurrences(of: "86", with: "8") + rest,
            header + line0.replacingOccurrences(of: "86", with: "86\t") + rest,
            header + line0.replacingOccurrences(of: " 86", with: "\t86") + rest,
            header + line0.replacingOccurrences(of: "00: ", with: "00:") + rest,
            header + line0.replacingOccurrences(of: "00: ", with: "0000: ") + rest,
            header + line0.replacingOccurrences(of: "00: ", with: "00000: ") + rest,
            header + line0.replacingOccurrences(of: "00: ", with: "0g: ") + rest,
            header + "ff0: " + Array(repeating: "zz", count: 17).joined(separator: " ") + "\n",
            header + "ff8: " + Array(repeating: "00", count: 9).joined(separator: " ") + "\n",
            header + line0 + "   \n\t\n" + rest + "\n\n" + header + line0 + rest,
            "\n\n" + header + line0 + rest,
            header + line0 + ":: x\n" + rest,
            header + line0 + "10\n",
            header + line0 + "10:\n",
            "0d:00.0\n" + line0 + rest,
            "0d:00.0  two spaces\n" + line0 + rest,
            "not a header\n",
            "",
            "\n",
        ]
        for text in inputs {
            let a = Result { () throws(DumpError) in try LspciDump.parse(text) }
            let b = Result { () throws(DumpError) in try LspciDump.parseCharacters(text) }
            #expect(a == b, "\(text.prefix(120).debugDescription)")
        }
    }
}

