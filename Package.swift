// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "ELBOLab",
    products: [
        .library(name: "ELBOLab", targets: ["ELBOLab"]),
        .executable(name: "elbolab", targets: ["elbolab"]),
        .executable(name: "elbolab-bench", targets: ["elbolab-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Property-based tests (random models, q and data; seeded, shrinking on failure).
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        // `make docs`: the DocC site of the library (swift package generate-documentation).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        // results/index.html: typed HTML (Plot) and the summaries' Markdown as HTML (Ink).
        .package(url: "https://github.com/JohnSundell/Plot", from: "0.14.0"),
        .package(url: "https://github.com/JohnSundell/Ink", from: "0.6.0"),
    ],
    targets: [
        // GSL, with cblas_* resolved to OpenBLAS (see Sources/CGSL/module.modulemap).
        .systemLibrary(name: "CGSL", path: "Sources/CGSL"),
        // The hot per-point kernels: C functions compiled for AVX2 with FMA by attribute (no unsafe
        // flags), wrapped for Swift; ELBOLab checks the processor at run time (portable path else).
        .target(name: "CELBOLabKernels"),
        .target(name: "ELBOLabKernels", dependencies: ["CELBOLabKernels"]),
        // The layers, each importing only those below it: numerics (the only one that sees GSL and
        // the kernels), then the model, variational inference, engines and experiments in ELBOLab.
        .target(name: "ELBOLabNumerics", dependencies: ["CGSL", "ELBOLabKernels"]),
        .target(name: "ELBOLab", dependencies: ["ELBOLabNumerics", "ELBOLabKernels",
                                                .product(name: "Plot", package: "Plot"), .product(name: "Ink", package: "Ink")]),
        .executableTarget(
            name: "elbolab",
            dependencies: ["ELBOLab", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // `make bench`: throughput, time-to-tolerance, BLAS roofline, thread scaling, memory.
        .executableTarget(name: "elbolab-bench", dependencies: ["ELBOLab", "CGSL"], path: "Benchmarks/ELBOLabBench"),
        .testTarget(
            name: "ELBOLabTests",
            dependencies: ["ELBOLab", "ELBOLabNumerics", "ELBOLabKernels", .product(name: "PropertyBased", package: "swift-property-based")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
