// swift-tools-version:5.9
// A package that depends on distillctl's libraries by version, as anyone else's would.
// scripts/check_consumer.sh replaces DISTILLCTL_URL with a tagged clone of this repository.
import PackageDescription

let package = Package(
    name: "consumer",
    dependencies: [
        .package(url: "DISTILLCTL_URL", from: "0.0.1"),
    ],
    targets: [
        .executableTarget(name: "consumer", dependencies: [
            .product(name: "H5Model", package: "distillctl"),
            .product(name: "Graph", package: "distillctl"),
            .product(name: "Runtime", package: "distillctl"),
        ]),
    ]
)
