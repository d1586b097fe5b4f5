// swift-tools-version:5.9
import PackageDescription

let optimise: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

// The Runtime kernels are written over SIMD8<Float>. Without a CPU target, Swift compiles for
// baseline x86-64 (SSE2): each SIMD8 operation becomes two 4-lane instructions and depthwise
// convolution and the activations run 1.5-2.5x slower. Haswell = AVX2 + FMA, which every
// x86-64 server of the last decade has. (The manifest is compiled for the host, so this follows
// the machine that builds.) KERNEL_FMA lets VectorMath use the FMA instruction Haswell brings.
#if arch(x86_64)
let kernelCPU: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"]), .define("KERNEL_FMA")]
#else
let kernelCPU: [SwiftSetting] = []
#endif

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
        .package(url: "https://github.com/swiftcsv/SwiftCSV", from: "0.10.0"),
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
        .target(name: "CJPEGShim", dependencies: ["CJPEG"], path: "Sources/CJPEGShim",
                cSettings: [.unsafeFlags(["-O2"])]),

        // The AVX-512 kernels (C has per-function target attributes; Swift does not), chosen at
        // run time by Runtime/Kernels/ISA.swift.
        .target(name: "CKernels", path: "Sources/CKernels", cSettings: [.unsafeFlags(["-O3"])]),

        .target(name: "H5Model", dependencies: [
            "CHDF5", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        ], swiftSettings: optimise),
        .target(name: "Graph", dependencies: ["H5Model"], swiftSettings: optimise),
        .target(name: "Runtime", dependencies: ["Graph", "CBLAS", "CKernels", "CJPEGShim", "CPNG", "SwiftCSV"],
                swiftSettings: optimise + kernelCPU),
        // The fuzzing harness (scripts/fuzz.sh builds it with libFuzzer in .build-fuzz); the C part
        // reaches libFuzzer's driver only when it is linked in.
        .target(name: "CFuzzDriver", path: "Sources/CFuzzDriver"),
        .executableTarget(name: "FuzzH5", dependencies: ["CFuzzDriver", "H5Model", "Graph"]),
        .executableTarget(name: "distillctl", dependencies: [
            "H5Model", "Graph", "Runtime",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: optimise),

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
