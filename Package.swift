// swift-tools-version:6.0
// Cairn: replicated volumes exported as block devices and a shared FUSE filesystem.
//
// Module layering (dependencies point downwards only):
//   cairn (executable) -> CairnCLI -> CairnManager, CairnStorage, CairnClient
//   CairnClient, CairnManager, CairnStorage -> CairnNet -> CairnWire -> CairnCore
//   CairnManager -> CairnMeta -> CairnCore
import PackageDescription

// Swift 5 language mode: the daemons share state across NIO event loops and
// blocking I/O threads behind locks; the Swift 6 checker would force annotations
// on every such type without making the locking any more correct. Each such type
// documents its locking in a comment.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v5),
]

let package = Package(
    name: "cairn",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "cairn", targets: ["cairn"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/grpc/grpc-swift-2", exact: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", exact: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", exact: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    ],
    targets: [
        .target(name: "CCairnShims"),
        .target(name: "CairnCore", dependencies: ["CCairnShims"], swiftSettings: swiftSettings),
        .target(
            name: "CairnWire",
            dependencies: ["CairnCore", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings),
        .target(
            name: "CairnNet",
            dependencies: [
                "CairnCore", "CairnWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "CairnMetrics",
            dependencies: [
                "CairnCore", "CairnNet",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "CairnMeta",
            dependencies: ["CairnCore", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings),
        .target(
            name: "CairnEtcd",
            dependencies: [
                "CairnCore", "CairnMeta", "CairnNet",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "CairnChunkStore",
            dependencies: ["CairnCore", "CCairnShims"],
            swiftSettings: swiftSettings),
        .target(
            name: "CairnStorage",
            dependencies: [
                "CairnCore", "CairnChunkStore", "CairnWire", "CairnNet", "CairnClient", "CairnMetrics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "CairnClient",
            dependencies: [
                "CairnCore", "CairnWire", "CairnNet", "CairnMetrics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "CairnManager",
            dependencies: [
                "CairnCore", "CairnWire", "CairnNet", "CairnMeta", "CairnClient", "CairnMetrics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "CairnNBD",
            dependencies: [
                "CairnCore", "CairnClient", "CairnMetrics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "CairnISCSI",
            dependencies: [
                "CairnCore", "CairnClient", "CairnNBD",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .target(
            name: "CairnFS",
            dependencies: ["CairnCore", "CairnMeta", "CairnClient", "CairnNet", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings),
        .target(name: "CairnFuse", dependencies: ["CFuse3", "CairnFS", "CairnCore", .product(name: "NIOCore", package: "swift-nio")], swiftSettings: swiftSettings),
        .target(
            name: "CairnAttach",
            dependencies: [
                "CairnCore", "CairnClient", "CairnNet", "CairnFuse", "CCairnShims",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        // CSI: generated protobuf/gRPC code (tools/gen-csi.sh) and the plugin's services.
        .target(
            name: "CairnCSIProto",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        .target(
            name: "CairnCSI",
            dependencies: [
                "CairnCore", "CairnClient", "CairnMeta", "CairnFS", "CairnAttach", "CairnCSIProto",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "CairnCLI",
            dependencies: [
                "CairnCore", "CairnNet", "CairnMeta", "CairnEtcd", "CairnStorage", "CairnManager", "CairnClient", "CairnNBD", "CairnMetrics", "CairnISCSI", "CairnFS", "CairnFuse", "CairnAttach", "CairnCSI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        .executableTarget(name: "cairn", dependencies: ["CairnCLI"], swiftSettings: swiftSettings),
        .testTarget(name: "CairnCoreTests", dependencies: ["CairnCore", "CCairnShims"], swiftSettings: swiftSettings),
        .testTarget(name: "CairnWireTests", dependencies: ["CairnWire", "CairnCore", .product(name: "NIOCore", package: "swift-nio")], swiftSettings: swiftSettings),
        .testTarget(
            name: "CairnNBDTests",
            dependencies: ["CairnNBD", "CairnCore", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "CairnISCSITests",
            dependencies: ["CairnISCSI", "CairnNBD", "CairnCore", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "CairnMetricsTests",
            dependencies: ["CairnMetrics", "CairnNet", "CairnCore", .product(name: "Prometheus", package: "swift-prometheus")],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "CairnMetaTests",
            dependencies: ["CairnMeta", "CairnEtcd", "CairnCore", .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: swiftSettings),
        .testTarget(name: "CairnCSITests", dependencies: ["CairnCSI", "CairnCSIProto", "CairnCore", "CairnMeta"], swiftSettings: swiftSettings),
        .testTarget(name: "CairnFSTests", dependencies: ["CairnFS", "CairnMeta", "CairnCore"], swiftSettings: swiftSettings),
        .testTarget(name: "CairnAttachTests", dependencies: ["CairnAttach", "CairnCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "CairnNetTests",
            dependencies: ["CairnNet", "CairnWire", "CairnCore", .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .testTarget(name: "CairnChunkStoreTests", dependencies: ["CairnChunkStore", "CairnCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "CairnManagerTests",
            dependencies: ["CairnManager", "CairnMeta", "CairnCore", "CairnWire", .product(name: "Logging", package: "swift-log")], swiftSettings: swiftSettings),
        .testTarget(
            name: "CairnSimulationTests",
            dependencies: [
                "CairnCore", "CairnManager", "CairnMeta", "CairnChunkStore", "CairnClient", "CairnStorage", "CairnWire",
                .product(name: "Logging", package: "swift-log"), .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
    ]
)
