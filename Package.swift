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
        // The layers, each importing only those below it (LayeringTests checks the import lines):
        // numerics (the only one that sees GSL), the model, variational inference, engines and
        // experiments. Each upper layer's folder is inside Sources/ELBOLab; ELBOLab itself only
        // re-exports them, so a user imports one module. Each layer lists every layer below it,
        // although the one under it re-exports the rest: `make docs` hands DocC only the archives
        // of direct dependencies, so only those can be linked from doc comments.
        .target(name: "ELBOLabNumerics", dependencies: ["CGSL", "ELBOLabKernels"]),
        .target(name: "ELBOLabModel", dependencies: ["ELBOLabNumerics"], path: "Sources/ELBOLab/Model"),
        .target(name: "ELBOLabVariational", dependencies: ["ELBOLabModel", "ELBOLabNumerics", "ELBOLabKernels"],
                path: "Sources/ELBOLab/Variational"),
        .target(name: "ELBOLabEngines", dependencies: ["ELBOLabVariational", "ELBOLabModel", "ELBOLabNumerics"],
                path: "Sources/ELBOLab/Engines"),
        .target(name: "ELBOLabExperiments", dependencies: ["ELBOLabEngines", "ELBOLabVariational", "ELBOLabModel",
                                                           "ELBOLabNumerics", .product(name: "Plot", package: "Plot"),
                                                           .product(name: "Ink", package: "Ink")],
                path: "Sources/ELBOLab/Experiments"),
        .target(name: "ELBOLab", dependencies: ["ELBOLabNumerics", "ELBOLabModel", "ELBOLabVariational",
                                                "ELBOLabEngines", "ELBOLabExperiments"],
                exclude: ["Model", "Variational", "Engines", "Experiments"]),
        .executableTarget(
            name: "elbolab",
            dependencies: ["ELBOLab", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // `make bench`: throughput, time-to-tolerance, BLAS roofline, thread scaling, memory.
        .executableTarget(name: "elbolab-bench", dependencies: ["ELBOLab", "CGSL"], path: "Benchmarks/ELBOLabBench"),
        .testTarget(
            name: "ELBOLabTests",
            dependencies: ["ELBOLab", "ELBOLabNumerics", "ELBOLabKernels", "ELBOLabModel", "ELBOLabVariational",
                           "ELBOLabEngines", "ELBOLabExperiments", .product(name: "PropertyBased", package: "swift-property-based")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
