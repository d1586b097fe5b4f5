// swift-tools-version:5.9
import PackageDescription

// No unsafe flags: a package that declares them cannot be depended on by version. The speed
// flags (a CPU target for the SIMD8 Swift kernels, -O3 for C, and for the benchmarked binary only
// the unchecked optimisation level) are passed on the command line by the scripts that build:
// scripts/build-flags.sh.

let package = Package(
    name: "distillctl",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "distillctl", targets: ["distillctl"]),
        .library(name: "H5Model", targets: ["H5Model"]),
        .library(name: "Graph", targets: ["Graph"]),
        .library(name: "Runtime", targets: ["Runtime"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Keras 3's .keras archives are zip files (zlib through pkg-config on Linux).
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
    ],
    targets: [
        // System libraries, found through pkg-config (Debian: libhdf5-dev, libopenblas-dev,
        // libjpeg62-turbo-dev, libpng-dev).
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg62-turbo-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        // libjpeg reports errors by longjmp; that recovery has to be written in C.
        .target(name: "CJPEGShim", dependencies: ["CJPEG"], path: "Sources/CJPEGShim"),

        // The AVX-512 kernels, each function compiled for AVX-512 by its own target attribute (so
        // the file builds for the baseline CPU), called only after Runtime/Kernels/ISA.swift has
        // seen the CPU and OS support them.
        .target(name: "CKernels", path: "Sources/CKernels"),

        .target(name: "H5Model", dependencies: [
            "CHDF5", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        ]),
        .target(name: "Graph", dependencies: ["H5Model"]),
        .target(name: "Runtime", dependencies: [
            "Graph", "CBLAS", "CKernels", "CJPEGShim", "CPNG", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        ]),
        // The fuzzing harness (scripts/fuzz.sh builds it with libFuzzer in .build-fuzz); the C part
        // reaches libFuzzer's driver only when it is linked in.
        .target(name: "CFuzzDriver", path: "Sources/CFuzzDriver"),
        .executableTarget(name: "FuzzH5", dependencies: ["CFuzzDriver", "H5Model", "Graph"]),
        .executableTarget(name: "distillctl", dependencies: [
            "H5Model", "Graph", "Runtime",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Shared by the test targets: assertClose and the fixtures folder.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "H5ModelTests", dependencies: [
            "H5Model", "TestSupport", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        ]),
        .testTarget(name: "GraphTests", dependencies: ["Graph", "TestSupport"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "TestSupport"]),
        .testTarget(name: "distillctlTests", dependencies: ["distillctl", "Runtime", "TestSupport"]),
    ]
)
