// swift-tools-version:6.0
// DiTKit: Diffusion Transformer and SD-VAE checkpoints out of PyTorch into a
// memory-mapped native format, with verification. See README.md.
import PackageDescription

/// Every module keeps Swift's bounds and overflow checks in release builds, and no target uses
/// unsafe flags, so a package can depend on DiTKit by version. The dense inner loops in
/// DiTKitNumerics use wrapping arithmetic (`&+`, `&*`) on validated shapes instead of
/// -Ounchecked; the C kernels get their vector code from intrinsics and `target` attributes and
/// their exact IEEE semantics from `#pragma clang fp contract(off)`, not from -O3 and
/// -ffp-contract=off (see CONTRIBUTING.md).
let common: [SwiftSetting] = []

let package = Package(
    name: "DiTKit",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ditkit", targets: ["ditkit"]),
        .library(name: "DiTKitCore", targets: ["DiTKitCore"]),
        .library(name: "DiTKitFormats", targets: ["DiTKitFormats"]),
        .library(name: "DiTKitModels", targets: ["DiTKitModels"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // System libraries, found through pkg-config (`make deps` installs the apt providers).
        .systemLibrary(name: "CZip", pkgConfig: "libzip", providers: [.apt(["libzip-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),

        // System calls Swift cannot import directly (renameat2).
        .target(name: "CDiTKitSupport"),
        // Vectorised dtype conversions with runtime CPU dispatch (AVX2 + F16C, portable fallback).
        .target(name: "CDiTKitKernels"),

        .target(
            name: "DiTKitCore",
            dependencies: ["CDiTKitSupport", "CDiTKitKernels", "CXXHash", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: common),
        .target(
            name: "DiTKitFormats",
            dependencies: ["DiTKitCore", "CDiTKitSupport", "CZip", "CHDF5", "CZstd", "CPNG"],
            swiftSettings: common),
        .target(
            name: "DiTKitNumerics",
            dependencies: ["COpenBLAS", "CDiTKitKernels", "CDiTKitSupport"],
            swiftSettings: common),
        .target(
            name: "DiTKitModels",
            dependencies: ["DiTKitCore", "DiTKitFormats", "DiTKitNumerics"],
            swiftSettings: common),
        .target(
            name: "DiTKitConvert",
            dependencies: ["DiTKitCore", "DiTKitFormats", "DiTKitModels", "DiTKitVerify"],
            swiftSettings: common),
        .target(
            name: "DiTKitVerify",
            dependencies: ["DiTKitCore", "DiTKitFormats", "DiTKitModels", "DiTKitNumerics"],
            swiftSettings: common),
        .target(
            name: "DiTKitZoo",
            dependencies: ["DiTKitCore", "DiTKitFormats", "DiTKitModels", "DiTKitConvert", "DiTKitVerify"],
            swiftSettings: common),
        .target(
            name: "DiTKitExport",
            dependencies: ["DiTKitCore", "DiTKitFormats", "DiTKitModels"],
            swiftSettings: common),
        .executableTarget(
            name: "ditkit",
            dependencies: [
                "DiTKitCore", "DiTKitFormats", "DiTKitModels", "DiTKitNumerics", "DiTKitConvert", "DiTKitExport", "DiTKitVerify", "DiTKitZoo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: common),

        .executableTarget(
            name: "ditkit-bench",
            dependencies: ["DiTKitCore", "DiTKitFormats", "DiTKitModels", "DiTKitNumerics", "DiTKitVerify"],
            path: "Benchmarks/DiTKitBench",
            swiftSettings: common),

        // Fuzz harnesses: libFuzzer entry with -DFUZZING (make fuzz), a reproducer runner otherwise.
        .executableTarget(
            name: "ditkit-fuzz",
            dependencies: ["DiTKitCore", "DiTKitFormats"],
            path: "Fuzz/DiTKitFuzz"),
        .executableTarget(
            name: "ditkit-example",
            dependencies: ["DiTKitCore", "DiTKitFormats", "DiTKitModels"],
            path: "examples/ReadBundle"),

        .testTarget(name: "DiTKitCoreTests", dependencies: ["DiTKitCore"]),
        .testTarget(name: "DiTKitFormatsTests", dependencies: ["DiTKitFormats"]),
        .testTarget(name: "DiTKitNumericsTests", dependencies: ["DiTKitNumerics"]),
        .testTarget(name: "DiTKitZooTests", dependencies: ["DiTKitZoo"]),
        .testTarget(name: "DiTKitVerifyTests", dependencies: ["DiTKitVerify", "DiTKitConvert"]),
        .testTarget(name: "DiTKitConvertTests", dependencies: ["DiTKitConvert", "DiTKitExport", "DiTKitVerify"]),
        .testTarget(name: "EndToEndTests", dependencies: ["ditkit", "ditkit-example", "ditkit-fuzz", "DiTKitCore"], exclude: ["python"]),
    ],
    swiftLanguageModes: [.v5]
)
