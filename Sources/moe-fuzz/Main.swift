import Foundation

// libFuzzer's entry: MOE_FUZZ_TARGET names the target (scripts/fuzz.sh sets it).
nonisolated(unsafe) let fuzzTarget = ProcessInfo.processInfo.environment["MOE_FUZZ_TARGET"] ?? ""

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    FuzzTargets.run(fuzzTarget, Data(bytes: bytes, count: count))
    return 0
}

#if !FUZZING
/// Without the fuzzer: `moe-fuzz TARGET FILE...` runs each file through the target once (the regression tests
/// replay the corpus and every input a fuzzer ever found this way).
@main
struct Replay {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        guard let target = args.first, FuzzTargets.names.contains(target) else {
            FileHandle.standardError.write(Data("usage: moe-fuzz TARGET FILE...; targets: \(FuzzTargets.names.joined(separator: ", "))\n".utf8))
            exit(2)
        }
        var count = 0
        for path in args.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("moe-fuzz: \(path): cannot be read\n".utf8))
                exit(1)
            }
            FuzzTargets.run(target, data)
            count += 1
        }
        try? FileManager.default.removeItem(atPath: FuzzTargets.scratch)
        print("\(target): \(count) inputs, no crash")
    }
}
#endif
