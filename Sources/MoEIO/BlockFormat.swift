#if !canImport(Accelerate)
import CMoEBLAS
#endif

/// swift-moe's block-quantized weight formats (CMoEBLAS/matvec.c has the layouts), chosen against ggml's and
/// MLX's (README, "Quantized experts"):
/// - `q8`: ggml's Q8_0 (32 signed codes and an f16 scale per block, 8.5 bits per weight);
/// - `q4`: MLX's affine 4-bit with group 64 (codes 0...15 with an f16 scale and minimum per group, 4.5 bits per
///   weight, the size of ggml's Q4_0);
/// - `q4x8`: the same codes and scales with eight rows interleaved group by group, for the decode kernel. It is
///   what `moe quantize --to q4` writes for matrices whose rows come in eights (`storage(rows:)`).
/// q8 and q4 rows are stored row-planar: a row's codes, then its scales. Every format takes `rowBytes` a row, so
/// rows r0..<r1 of a q4x8 matrix whose r0 and r1 are multiples of 8 are bytes r0 rowBytes..<r1 rowBytes.
public enum BlockFormat: String, CaseIterable, Sendable {
    case q8, q4, q4x8

    /// The formats `moe quantize --to` offers (q4 is written as q4x8 where the rows allow).
    public static let choices: [BlockFormat] = [.q8, .q4]

    /// Columns per block (q4's scale and minimum cover a group of 64).
    public var blockSize: Int { self == .q8 ? 32 : 64 }

    /// Rows stored together: a matrix's rows (all axes but the last, per matrix) must be a multiple of it.
    public var rowBlock: Int { self == .q4x8 ? 8 : 1 }

    /// The format a matrix of `rows` rows is written in when `self` is asked for.
    public func storage(rows: Int) -> BlockFormat { self == .q4 && rows % 8 == 0 ? .q4x8 : self }

    public func rowBytes(_ cols: Int) -> Int {
        #if canImport(Accelerate)
        return self == .q8 ? cols + cols / 16 : cols / 2 + cols / 16
        #else
        return self == .q8 ? moe_q8_row_bytes(cols) : moe_q4_row_bytes(cols)
        #endif
    }

    /// Bits per weight, scales included.
    public var bitsPerWeight: Double { self == .q8 ? 8.5 : 4.5 }

    /// Quantizes `rows` rows of x [rows, cols] into `out` (rows rowBytes bytes); q4x8 needs rows % 8 == 0.
    public func quantize(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutableRawPointer, cols: Int) {
        let o = out.assumingMemoryBound(to: UInt8.self), rb = rowBytes(cols)
        switch self {
        case .q8: for r in 0..<rows { moe_quantize_row_q8(x + r * cols, o + r * rb, cols) }
        case .q4: for r in 0..<rows { moe_quantize_row_q4(x + r * cols, o + r * rb, cols) }
        case .q4x8:
            precondition(rows % 8 == 0, "[quantize] q4x8 takes rows in eights, got \(rows)")
            let planar = UnsafeMutablePointer<UInt8>.allocate(capacity: 8 * rb)
            defer { planar.deallocate() }
            for b in 0..<(rows / 8) {
                for k in 0..<8 { moe_quantize_row_q4(x + (8 * b + k) * cols, planar + k * rb, cols) }
                moe_interleave_q4x8(planar, o + 8 * b * rb, cols)
            }
        }
    }

    /// Row `row` of the matrix at `matrix` (its first row), dequantized into y [cols].
    public func dequantize(_ matrix: UnsafeRawPointer, row: Int, into y: UnsafeMutablePointer<Float>, cols: Int) {
        let m = matrix.assumingMemoryBound(to: UInt8.self)
        switch self {
        case .q8: moe_dequantize_row_q8(m + row * rowBytes(cols), y, cols)
        case .q4: moe_dequantize_row_q4(m + row * rowBytes(cols), y, cols)
        case .q4x8: moe_dequantize_row_q4x8(m, row, y, cols)
        }
    }
}
