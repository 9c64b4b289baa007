// swift-tools-version:6.1
//
// swift-cxl: user-space CXL Type-2 device passthrough toolkit.
//
// Layers, dependencies pointing one way (top depends on bottom):
//
//   cxlkit, cxlbench            executables
//   CXLMetrics                  fleet health: Prometheus exposition + exporter HTTP listener (swift-prometheus,
//                               swift-nio); the only module that sees those packages
//   CXLKitCommands              thin command layer (argument parsing lives in cxlkit)
//   VFIOCXL                     vfio-cxl: VFIO device layer + CXL library, composed
//   VFIOUser                    vfio-user wire protocol, server, client (knows no CXL)
//   VFIO                        vfio-pci-core equivalent: regions, IRQs, config virtualisation
//   CXLEmulator                 the emulated CXL Type-2 device
//   CXL                         DVSECs, component registers, HDM decoders, save/restore
//   PCI                         config space, register catalog, capability walker (knows no CXL)
//   CSwiftCXLSystem             what Glibc does not import (SCM_RIGHTS, eventfd, memfd, SIGBUS-guarded copy)
import PackageDescription

let swiftSettings: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "swift-cxl",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "PCI", targets: ["PCI"]),
        .library(name: "CXL", targets: ["CXL"]),
        .library(name: "CXLEmulator", targets: ["CXLEmulator"]),
        .library(name: "VFIO", targets: ["VFIO"]),
        .library(name: "VFIOUser", targets: ["VFIOUser"]),
        .library(name: "VFIOCXL", targets: ["VFIOCXL"]),
        .executable(name: "cxlkit", targets: ["cxlkit"]),
        .executable(name: "cxlbench", targets: ["cxlbench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // File descriptors and EINTR-retrying system calls (`FileDescriptor`, `retryOnInterrupt`); swift-nio
        // depends on it too, so it adds nothing to a build.
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        // Fleet health (issue 18): the Prometheus exposition and the exporter's HTTP listener, used only by the
        // CXLMetrics module (the low layers never see them).
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", "2.101.2"..<"2.102.0"),
    ],
    targets: [
        .target(name: "CSwiftCXLSystem"),
        .target(name: "PCI", dependencies: [.product(name: "SystemPackage", package: "swift-system")], swiftSettings: swiftSettings),
        .target(name: "CXL", dependencies: ["PCI", .product(name: "SystemPackage", package: "swift-system")], swiftSettings: swiftSettings),
        .target(name: "CXLEmulator", dependencies: ["PCI", "CXL", "CSwiftCXLSystem"], swiftSettings: swiftSettings),
        .target(name: "VFIO", dependencies: ["PCI", "CSwiftCXLSystem", .product(name: "SystemPackage", package: "swift-system")],
                swiftSettings: swiftSettings),
        .target(
            name: "VFIOUser",
            dependencies: ["VFIO", "PCI", "CSwiftCXLSystem", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .target(
            name: "VFIOCXL",
            dependencies: ["VFIO", "CXL", "PCI", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        // Prometheus exposition of CXL health readings and the exporter's HTTP listener (issue 18).
        .target(
            name: "CXLMetrics",
            dependencies: ["CXLKitCommands", "CXL", "PCI", .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio")],
            swiftSettings: swiftSettings),
        .target(
            name: "CXLKitCommands",
            dependencies: ["PCI", "CXL", "CXLEmulator", "VFIO", "VFIOUser", "VFIOCXL",
                           .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "cxlkit",
            dependencies: ["CXLKitCommands", "CXLMetrics", .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log"),
                           .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "cxlbench",
            dependencies: ["PCI", "CXL", "CXLEmulator", "VFIO", "VFIOUser", "VFIOCXL", "CXLKitCommands", "CSwiftCXLSystem",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        // Test-only helpers every suite shares (scratch directory removed at exit, running a process).
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "PCITests", dependencies: ["PCI", "TestSupport", .product(name: "SystemPackage", package: "swift-system")],
                    swiftSettings: swiftSettings),
        .testTarget(name: "CXLTests", dependencies: ["CXL", "PCI", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "CXLEmulatorTests", dependencies: ["CXLEmulator", "CXL", "PCI", "TestSupport"], swiftSettings: swiftSettings),
        // A test-only PCIe endpoint shared by the VFIO and vfio-user suites (not a product).
        .target(name: "VFIOTestSupport", dependencies: ["VFIO", "PCI"], path: "Tests/VFIOTestSupport",
                swiftSettings: swiftSettings),
        .testTarget(name: "VFIOTests", dependencies: ["VFIO", "PCI", "VFIOTestSupport"], swiftSettings: swiftSettings),
        // Test-only: counts the allocations of chosen threads (it interposes malloc, so it is linked into the test
        // executable and nothing else); the vfio-user suite proves REGION_READ/WRITE allocate nothing (issue 14).
        .target(name: "CMallocCounter", path: "Tests/CMallocCounter"),
        .testTarget(name: "VFIOUserTests", dependencies: ["VFIOUser", "VFIO", "PCI", "VFIOTestSupport", "CMallocCounter", "TestSupport"],
                    exclude: ["python"], resources: [], swiftSettings: swiftSettings),
        .testTarget(name: "VFIOCXLTests", dependencies: ["VFIOCXL", "VFIOUser", "VFIO", "CXL", "CXLEmulator", "PCI", "CMallocCounter"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "CXLMetricsTests", dependencies: ["CXLMetrics", "CXLKitCommands", "CXLEmulator", "CXL", "PCI", "TestSupport",
                                                            .product(name: "NIOCore", package: "swift-nio"),
                                                            .product(name: "NIOPosix", package: "swift-nio")],
                    swiftSettings: swiftSettings),
        .testTarget(name: "CXLKitTests", dependencies: ["CXLKitCommands", "CXLEmulator", "CXL", "PCI", "VFIO", "VFIOUser", "VFIOTestSupport", "VFIOCXL", "CXLMetrics", "TestSupport"],
                    swiftSettings: swiftSettings),
    ]
)
