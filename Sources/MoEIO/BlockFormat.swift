#if !canImport(Accelerate)
import CMoEBLAS
#endif

/// swift-moe's block-quantized weight formats (CMoEBLAS/matvec.c has the layouts), chosen against ggml's and
/// MLX's (README, "Quantized experts"):
/// - `q8`: ggml's Q8_0 (32 signed codes and an f16 scale per block, 8.5 bits per weight);
/// - `q4`: MLX's affine 4-bit with group 64 (codes 0...15 with an f16 scale and minimum per group, 4.5 bits per
///   weight, the size of ggml's Q4_0).
/// Rows are stored row-planar: a row's codes, then its scales.
public enum BlockFormat: String, CaseIterable, Sendable {
    case q8, q4

    /// Columns per block (q4's scale and minimum cover a group of 64).
    public var blockSize: Int { self == .q8 ? 32 : 64 }

    public func rowBytes(_ cols: Int) -> Int {
        #if canImport(Accelerate)
        return self == .q8 ? cols + cols / 16 : cols / 2 + cols / 16
        #else
        return self == .q8 ? moe_q8_row_bytes(cols) : moe_q4_row_bytes(cols)
        #endif
    }

    /// Bits per weight, scales included.
    public var bitsPerWeight: Double { self == .q8 ? 8.5 : 4.5 }

    public func quantize(_ x: UnsafePointer<Float>, into out: UnsafeMutableRawPointer, cols: Int) {
        let o = out.assumingMemoryBound(to: UInt8.self)
        switch self {
        case .q8: moe_quantize_row_q8(x, o, cols)
        case .q4: moe_quantize_row_q4(x, o, cols)
        }
    }

    public func dequantize(_ row: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>, cols: Int) {
        let r = row.assumingMemoryBound(to: UInt8.self)
        switch self {
        case .q8: moe_dequantize_row_q8(r, y, cols)
        case .q4: moe_dequantize_row_q4(r, y, cols)
        }
    }
}
