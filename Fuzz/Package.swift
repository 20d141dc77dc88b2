// swift-tools-version:6.0
// libFuzzer targets for ELBOLab's input readers, kept out of the main package so that its build
// never needs -sanitize=fuzzer. Built and run by `make fuzz` (see README.md here).
import PackageDescription

let package = Package(
    name: "ELBOLabFuzz",
    dependencies: [.package(name: "ELBOLab", path: "..")],
    targets: [
        .target(name: "FuzzDriver", dependencies: [.product(name: "ELBOLab", package: "ELBOLab")]),
        .executableTarget(name: "fuzz-csv", dependencies: ["FuzzDriver"]),
        .executableTarget(name: "fuzz-spec", dependencies: ["FuzzDriver"]),
        .executableTarget(name: "fuzz-params", dependencies: ["FuzzDriver"]),
    ],
    swiftLanguageModes: [.v6]
)
