// swift-tools-version: 6.0
import PackageDescription

// Layers point one way, downward:
// CMoEBLAS -> MoETensor -> MoEAutograd -> MoENN -> MoE -> MoETraining -> MoEAnalysis -> moe (CLI)
// (MoEInference, weights as stored, sits beside MoETraining; MoEAnalysis reads models through both)
// (MoEIO and MoETokenizers are file formats and text, beside the stack: MoEModels and MoETraining use them)
let blas: [Target.Dependency] = [
    .target(name: "CMoEBLAS", condition: .when(platforms: [.linux])),
]
let fast: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked", "-target-cpu", "native"], .when(configuration: .release)),
]

let package = Package(
    name: "swift-moe",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "MoETensor", targets: ["MoETensor"]),
        .library(name: "MoEAutograd", targets: ["MoEAutograd"]),
        .library(name: "MoENN", targets: ["MoENN"]),
        .library(name: "MoE", targets: ["MoE"]),
        .library(name: "MoEIO", targets: ["MoEIO"]),
        .library(name: "MoEModels", targets: ["MoEModels"]),
        .library(name: "MoEInference", targets: ["MoEInference"]),
        .library(name: "MoETokenizers", targets: ["MoETokenizers"]),
        .library(name: "MoETraining", targets: ["MoETraining"]),
        .library(name: "MoEAnalysis", targets: ["MoEAnalysis"]),
        .executable(name: "moe", targets: ["moe"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
    ],
    targets: [
        // CPUID, and OpenBLAS opened at run time with the kernels chosen from the CPU's features (see moe_blas.h).
        .target(
            name: "CMoEBLAS",
            cSettings: [.unsafeFlags(["-O2", "-ffp-contract=off"])],
            linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]),
        .target(
            name: "MoETensor",
            dependencies: blas + [.product(name: "Numerics", package: "swift-numerics")],
            swiftSettings: fast),
        .target(name: "MoEAutograd", dependencies: ["MoETensor"], swiftSettings: fast),
        .target(name: "MoEIO", dependencies: ["MoETensor"] + blas, swiftSettings: fast),
        .target(name: "MoENN", dependencies: ["MoEAutograd"], swiftSettings: fast),
        .target(name: "MoE", dependencies: ["MoENN"], swiftSettings: fast),
        .target(name: "MoEModels", dependencies: ["MoE", "MoEIO"], swiftSettings: fast),
        .target(name: "MoETokenizers", swiftSettings: fast),
        // Inference on weights as stored (mapped f32, 16-bit, block-quantized): decode, prefill, quantize.
        .target(name: "MoEInference", dependencies: ["MoEModels"] + blas, swiftSettings: fast),
        .target(name: "MoETraining", dependencies: ["MoEModels", "MoETokenizers"] + blas, swiftSettings: fast),
        .target(name: "MoEAnalysis", dependencies: ["MoETraining", "MoEInference"] + blas, swiftSettings: fast),
        .target(name: "MoEBenchmarks", dependencies: ["MoEAnalysis", "MoEInference"] + blas, swiftSettings: fast),
        .executableTarget(
            name: "moe",
            dependencies: [
                "MoEAnalysis", "MoEBenchmarks", "MoEInference",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // libFuzzer targets (scripts/fuzz.sh builds this with -sanitize=fuzzer,address); a plain build replays inputs.
        .executableTarget(name: "moe-fuzz", dependencies: ["MoEModels", "MoETokenizers"], swiftSettings: fast),
        .target(
            name: "MoETestSupport",
            dependencies: ["MoEAnalysis", .product(name: "Numerics", package: "swift-numerics")]),
        .testTarget(name: "MoETensorTests", dependencies: ["MoETestSupport"] + blas),
        .testTarget(name: "MoEAutogradTests", dependencies: ["MoETestSupport"]),
        .testTarget(name: "MoENNTests", dependencies: ["MoETestSupport"]),
        .testTarget(name: "MoETrainingTests", dependencies: ["MoETestSupport"]),
        .testTarget(name: "MoETests", dependencies: ["MoETestSupport"]),
        .testTarget(name: "MoEModelsTests", dependencies: ["MoETestSupport"]),
        .testTarget(name: "MoEInferenceTests", dependencies: ["MoETestSupport", "MoEInference"] + blas),
        .testTarget(name: "MoETokenizersTests", dependencies: ["MoETestSupport"]),
        .testTarget(name: "MoEAnalysisTests", dependencies: ["MoETestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["MoETestSupport", "MoEBenchmarks", "moe"]),
    ],
    swiftLanguageModes: [.v6]
)
