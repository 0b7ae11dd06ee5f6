// swift-tools-version:6.0
// attnres: a multi-process simulator of pipeline-parallel training with Attention Residuals.
// Dependencies point one way: Cluster -> Pipeline -> {Model, Wire} -> Numerics (see ../shared/DESIGN.md §2).
import PackageDescription

let package = Package(
    name: "attnres",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "attnres", targets: ["attnres"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // libzmq's pkg-config file adds -isystem flags SwiftPM rejects; linking "zmq" directly is clean (DESIGN §6).
        .systemLibrary(name: "CZeroMQ", path: "Sources/CZeroMQ",
                       providers: [.apt(["libzmq3-dev"])]),
        .target(name: "CSys"),
        // OpenBLAS has no cblas.pc; `pkg-config openblas` supplies the include directory holding cblas.h (DESIGN §6).
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // AVX2 + FMA depth-attention kernels, chosen at run time by Numerics' DepthKernel (the package stays baseline x86-64).
        .target(name: "CKernels"),
        .target(name: "Numerics", dependencies: ["COpenBLAS", "CKernels"]),
        .target(name: "Model", dependencies: ["Numerics"]),
        .target(name: "Wire", dependencies: ["CZeroMQ", "CSys"]),
        .target(name: "Pipeline", dependencies: ["Wire", "Model", "Numerics"]),
        .target(name: "Cluster", dependencies: [
            "Pipeline", "Wire", "Model", "Numerics", "CSys",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "attnres", dependencies: [
            "Cluster", "Pipeline", "Wire", "Model", "Numerics",
            .product(name: "Yams", package: "Yams"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "NumericsTests", dependencies: ["Numerics", "CKernels"]),
        .testTarget(name: "ModelTests", dependencies: ["Model", "Numerics"]),
        .testTarget(name: "WireTests", dependencies: ["Wire"]),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Model"]),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "Pipeline", "Wire", "CSys", "Model", "Numerics"]),
    ],
    swiftLanguageModes: [.v5]
)
