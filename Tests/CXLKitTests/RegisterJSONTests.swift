import Foundation
import Testing
import TestSupport
import CXLKitCommands
@testable import PCI

/// `decode --json` writes each register's fields straight from its raw value (`JSONValue.register`) instead of
/// building an object per register; the bytes must be exactly those of the object it stands for.
@Suite("decode --json: registers written directly")
struct RegisterJSONTests {
    /// Every register of every fixture function (and the emulated devices), with the value it holds and with
    /// random values: the direct writer and the built object serialize alike, pretty and compact, with
    /// snake_case keys and with keys as they are.
    @Test func directlyWrittenRegistersAreTheirObjectsByteForByte() throws {
        var targets: [DecodeSubject] = []
        for f in ["every-dvsec", "root-port", "type2-and-port", "type2-device"] {
            targets += try TargetResolver().resolve(fixtureURL("decode/\(f).txt").path)
        }
        targets += try TargetResolver().resolve("emulated:type2") + (try TargetResolver().resolve("emulated:gpu-fw-committed"))
        let d = CXLKit.decoder()
        var registers: [RegisterJSON] = []
        func collect(_ v: JSONValue) {
            switch v {
            case .register(let r): registers.append(r)
            case .array(let a): a.forEach(collect)
            case .object(let kv): kv.forEach { collect($0.1) }
            default: break
            }
        }
        for t in targets {
            let json = d.json(t, verbosity: 3)
            collect(json)
            for pretty in [true, false] {
                var snake = KeyRewriter.snakeCase, snakeTree = KeyRewriter.snakeCase
                #expect(json.serialized(pretty: pretty, keys: &snake) == json.materialized.serialized(pretty: pretty, keys: &snakeTree))
                #expect(json.serialized(pretty: pretty) == json.materialized.serialized(pretty: pretty))
            }
        }
        #expect(registers.count > 300, "the fixtures decode \(registers.count) registers")
        let seed = UInt64.random(in: 0...UInt64.max)
        print("RegisterJSONTests seed \(seed)")
        var rng = SplitMix64(seed: seed)
        for r in registers {
            for raw in [0, ~0, rng.next(), rng.next() & 0xFFFF_FFFF] as [UInt64] {
                let direct = RegisterJSON(layout: r.layout, raw: raw, offset: r.offset)
                for pretty in [true, false] {
                    var a = KeyRewriter.snakeCase, b = KeyRewriter.snakeCase
                    #expect(JSONValue.register(direct).serialized(pretty: pretty, indent: 2, keys: &a)
                            == direct.tree.serialized(pretty: pretty, indent: 2, keys: &b), "\(r.layout.name) raw 0x\(String(raw, radix: 16)) seed \(seed)")
                }
            }
        }
    }

    /// Fields declared out of bit order, a named value, a 64-bit register, a register with no fields: each
    /// in the tree's own order and spelling.
    @Test func unusualRegistersToo() {
        let registers = [
            RegisterLayout("Out Of Order", offset: 0x10, width: 4, [
                .init("High Part", 31, 16, .ro), .init("Mode", 3, 1, .rw, values: [2: "two", 5: "five"]),
                .init("Enable", bit: 0, .rw), .init("Gap", 15, 8, .rsvdP)]),
            RegisterLayout("Wide", offset: 0x18, width: 8, [.init("All", 63, 0, .ro)]),
            RegisterLayout("Empty", offset: 0x20, width: 2),
        ]
        for layout in registers {
            for raw in [0, 0x5, 0xFFFF_0004, ~0] as [UInt64] {
                let r = RegisterJSON(layout: layout, raw: raw, offset: layout.offset)
                for pretty in [true, false] {
                    var a = KeyRewriter.snakeCase, b = KeyRewriter.snakeCase
                    #expect(JSONValue.register(r).serialized(pretty: pretty, keys: &a) == r.tree.serialized(pretty: pretty, keys: &b))
                    #expect(JSONValue.register(r).serialized(pretty: pretty) == r.tree.serialized(pretty: pretty))
                }
                // Reading into it sees the object.
                #expect(JSONValue.register(r)["value"] == r.tree["value"])
            }
        }
    }
}

@Suite("decode --json: detail follows -v, as cxl-cli's levels")
struct DecodeJSONLevelTests {
    /// Without `-vv`: identity, capabilities, CXL summaries (ranges, HDM decoders), no register objects; with
    /// `-vv`: every register too.
    @Test func registersOnlyFromVV() throws {
        let t = try #require(try TargetResolver().resolve("emulated:gpu-fw-committed").first)
        let d = CXLKit.decoder()
        func registerCount(_ v: JSONValue) -> Int {
            switch v {
            case .register: return 1
            case .array(let a): return a.reduce(0) { $0 + registerCount($1) }
            case .object(let kv): return kv.reduce(0) { $0 + registerCount($1.1) }
            default: return 0
            }
        }
        for level in [0, 1] {
            let lean = d.json(t, verbosity: level)
            #expect(registerCount(lean) == 0, "level \(level)")
            #expect(lean["header"] == nil)
            let caps = try #require(lean["capabilities"]?.arrayValue)
            #expect(caps.count > 5 && caps.allSatisfy { $0["registers"] == nil })
            let device = try #require(caps.first { $0["dvsec"]?["decoded"]?["name"]?.stringValue == "PCIe DVSEC for CXL Devices" })
            #expect(device["dvsec"]?["decoded"]?["ranges"]?.arrayValue?.count == 2)
            let hdm = try #require(lean["cxl_component_registers"]?[0]?["capabilities"]?.arrayValue?.first { $0["decoders"] != nil })
            #expect(hdm["decoders"]?[0]?["Committed"]?.boolValue == true, "the firmware-committed decoder is in the summary")
        }
        let full = d.json(t, verbosity: 2)
        #expect(registerCount(full) > 100)
        #expect(full["header"]?["Command"] != nil)
        #expect(full["cxl_component_registers"]?[0]?["capabilities"]?.arrayValue?.contains { $0["HDM Decoder Capability"] != nil } == true)
    }
}

@Suite("JSON keys: the snake_case check the writer uses")
struct SnakeCaseCheckTests {
    /// `isSnakeCase(k)` lets the writer skip rewriting `k`: it must hold exactly when rewriting changes nothing.
    @Test(arguments: ["vendor_id", "a", "x1", "dvsec_cxl_range_1_size", "", "_x", "x_", "a__b", "Vendor", "a b", "a-b",
                      "savedAt", "3_6_12_way", "µ", "ok_2"])
    func snakeCaseCheckAgreesWithTheRewrite(_ key: String) {
        #expect(JSONKey.isSnakeCase(key) == (JSONKey.snakeCase(key) == key), "\(key)")
    }
}
