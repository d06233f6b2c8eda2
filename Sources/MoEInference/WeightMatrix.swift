import Foundation
import MoEIO
import MoETensor

#if !canImport(Accelerate)
import CMoEBLAS
#endif

/// A weight matrix [rows, cols] used where it is stored: inside a memory-mapped safetensors file, as f32,
/// bf16, f16 or one of swift-moe's block formats. Nothing is copied or widened at load; products widen or
/// dequantize on the fly (decode) or a block of rows at a time (prefill).
public struct WeightMatrix: @unchecked Sendable {
    public enum Format: String, Sendable {
        case f32, bf16, f16, q8, q4, q4x8, mxfp4

        /// The block format of a quantized matrix (nil for the float formats and MXFP4).
        var block: BlockFormat? { BlockFormat(rawValue: rawValue) }
    }

    public let rows: Int
    public let cols: Int
    public let format: Format
    /// The rows (for mxfp4, the code bytes: cols / 2 a row).
    let base: UnsafeRawPointer
    /// mxfp4's scale bytes, cols / 32 a row (nil for the other formats).
    let scales: UnsafeRawPointer?
    /// Keeps a copied matrix alive (only when the stored bytes were not aligned for their type, or were transposed).
    let owner: AnyObject?

    init(rows: Int, cols: Int, format: Format, base: UnsafeRawPointer, scales: UnsafeRawPointer? = nil, owner: AnyObject? = nil) {
        self.rows = rows
        self.cols = cols
        self.format = format
        self.base = base
        self.scales = scales
        self.owner = owner
    }

    /// MOE_F32_MATVEC=blas sends f32 decode products to the BLAS's sgemv instead of the AVX-512 kernel (for
    /// comparison: OpenBLAS 0.3.21's sgemv read about 24 GB/s here, the four-row kernel about 28).
    static let useBLASForF32 = ProcessInfo.processInfo.environment["MOE_F32_MATVEC"] == "blas"

    public var rowBytes: Int {
        switch format {
        case .f32: return 4 * cols
        case .bf16, .f16: return 2 * cols
        case .q8, .q4, .q4x8: return format.block!.rowBytes(cols)
        case .mxfp4: return cols / 2 + cols / 32
        }
    }

    public var bytes: Int { rows * rowBytes }
    /// The alignment the stored elements need: 4 for f32, 2 for 16-bit, 1 for the block formats.
    var alignment: Int { format == .f32 ? 4 : format == .bf16 || format == .f16 ? 2 : 1 }

    /// The matrix at `p` in place, or copied once when its bytes are not aligned for its type (a header whose
    /// length is not a multiple of 8 leaves the data unaligned).
    static func inPlace(_ p: UnsafeRawPointer, rows: Int, cols: Int, format: Format) -> WeightMatrix {
        let m = WeightMatrix(rows: rows, cols: cols, format: format, base: p)
        if Int(bitPattern: p) % m.alignment == 0 { return m }
        let copy = AlignedBuffer(bytes: m.bytes)
        copy.pointer.copyMemory(from: p, byteCount: m.bytes)
        return WeightMatrix(rows: rows, cols: cols, format: format, base: UnsafeRawPointer(copy.pointer), owner: copy)
    }

    /// The format of a floating-point tensor the engine uses as stored; F64 and integer tensors are refused.
    static func floatFormat(_ info: TensorInfo, _ file: SafetensorsFile, _ name: String) throws -> Format {
        switch info.dtype {
        case .F32: return .f32
        case .BF16: return .bf16
        case .F16: return .f16
        default:
            throw SafetensorsError(file.path, tensor: name, "has dtype \(info.dtype.rawValue)", hint: "the inference engine reads F32, BF16, F16, MXFP4 and swift-moe's q8/q4; convert the file")
        }
    }

    /// Expert `e` of a stacked tensor `name` [E, rows, cols] (or, `transposed`, stored [E, cols, rows] as gpt-oss's
    /// f32/bf16 files store x W): MXFP4 and row-major slices are views; a transposed slice is transposed once
    /// into memory of its own, in its stored precision.
    static func expert(_ file: SafetensorsFile, _ name: String, _ e: Int, of count: Int, rows: Int, cols: Int, transposed: Bool) throws -> WeightMatrix {
        if let m = file.mxfp4[name] {
            guard m.shape == [count, rows, cols] else {
                throw SafetensorsError(file.path, tensor: name, "is MXFP4 \(Shape.describe(m.shape)) but config.json needs [\(count), \(rows), \(cols)]", hint: "the weights and the config disagree")
            }
            let b = file.bytes(of: m.blocks) + e * rows * cols / 2, sc = file.bytes(of: m.scales) + e * rows * cols / 32
            return WeightMatrix(rows: rows, cols: cols, format: .mxfp4, base: b, scales: sc)
        }
        guard let info = file.info(name) else {
            throw SafetensorsError(file.path, tensor: name, "is missing", hint: "the checkpoint does not match its config.json")
        }
        let stored = transposed ? [count, cols, rows] : [count, rows, cols]
        guard info.shape == stored else {
            throw SafetensorsError(file.path, tensor: name, "has shape \(Shape.describe(info.shape)) but config.json needs \(Shape.describe(stored))", hint: "the weights and the config disagree")
        }
        let format = try floatFormat(info, file, name)
        let size = format == .f32 ? 4 : 2
        let src = file.bytes(of: info) + e * rows * cols * size
        if !transposed { return inPlace(src, rows: rows, cols: cols, format: format) }
        let copy = AlignedBuffer(bytes: rows * cols * size)
        let dst = copy.pointer
        // dst[r, c] = src[c, r], in tiles of 32 x 32 so both sides stay in cache.
        for r0 in stride(from: 0, to: rows, by: 32) {
            for c0 in stride(from: 0, to: cols, by: 32) {
                for r in r0..<Swift.min(rows, r0 + 32) {
                    for c in c0..<Swift.min(cols, c0 + 32) {
                        (dst + (r * cols + c) * size).copyMemory(from: src + (c * rows + r) * size, byteCount: size)
                    }
                }
            }
        }
        return WeightMatrix(rows: rows, cols: cols, format: format, base: UnsafeRawPointer(dst), owner: copy)
    }

    /// The matrix `name` of `file` in place. F32, BF16, F16 and q8/q4 are used as stored; F64 is refused.
    static func mapped(_ file: SafetensorsFile, _ name: String, rows: Int, cols: Int) throws -> WeightMatrix {
        guard let info = file.info(name) else {
            throw SafetensorsError(file.path, tensor: name, "is missing", hint: "the checkpoint does not match its config.json")
        }
        let format: Format
        if let q = file.quantized[name] {
            guard q.shape.dropLast().reduce(1, *) == rows && q.shape.last == cols else {
                throw SafetensorsError(file.path, tensor: name, "is quantized as \(q.shape) but config.json needs [\(rows), \(cols)]", hint: "the weights and the config disagree")
            }
            format = Format(rawValue: q.format.rawValue)!
        } else {
            guard info.shape == [rows, cols] || (info.shape.count == 1 && rows == 1 && info.shape[0] == cols) else {
                throw SafetensorsError(file.path, tensor: name, "has shape \(Shape.describe(info.shape)) but config.json needs [\(rows), \(cols)]", hint: "the weights and the config disagree")
            }
            format = try floatFormat(info, file, name)
        }
        return inPlace(file.bytes(of: info), rows: rows, cols: cols, format: format)
    }

    /// Rows `r` widened to f32 into `dst` [r.count, cols] (row-major).
    func widen(rows r: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        let rb = rowBytes
        switch format {
        case .f32:
            UnsafeMutableRawPointer(dst).copyMemory(from: base + r.lowerBound * rb, byteCount: r.count * rb)
        case .bf16:
            moe_widen_bf16((base + r.lowerBound * rb).assumingMemoryBound(to: UInt16.self), dst, r.count * cols)
        case .f16:
            moe_widen_f16((base + r.lowerBound * rb).assumingMemoryBound(to: UInt16.self), dst, r.count * cols)
        case .q8, .q4, .q4x8:
            let f = format.block!
            for (i, row) in r.enumerated() { f.dequantize(base, row: row, into: dst + i * cols, cols: cols) }
        case .mxfp4:
            let codes = base.assumingMemoryBound(to: UInt8.self), sc = scales!.assumingMemoryBound(to: UInt8.self)
            for (i, row) in r.enumerated() { moe_dequantize_row_mxfp4(codes + row * cols / 2, sc + row * cols / 32, dst + i * cols, cols) }
        }
    }

    /// Rows `r` rounded to BF16 (to nearest even) into `dst` [r.count, cols]: the values of `widen` then
    /// `moe_narrow_bf16`, but a row at a time through `row` (cols floats), so the f32 values stay in cache
    /// instead of making a full-width pass through memory. BF16 rows are copied as stored.
    func narrowBF16(rows r: Range<Int>, into dst: UnsafeMutablePointer<UInt16>, row: UnsafeMutablePointer<Float>) {
        let rb = rowBytes
        switch format {
        case .bf16:
            UnsafeMutableRawPointer(dst).copyMemory(from: base + r.lowerBound * rb, byteCount: r.count * rb)
        case .f32:
            moe_narrow_bf16((base + r.lowerBound * rb).assumingMemoryBound(to: Float.self), dst, r.count * cols)
        default:
            for (i, k) in r.enumerated() {
                widen(rows: k..<(k + 1), into: row)
                moe_narrow_bf16(row, dst + i * cols, cols)
            }
        }
    }

    /// y[i] = W[r.lowerBound + i, :] . x for the rows `r`, on the calling thread.
    func matvec(rows r: Range<Int>, _ x: Activation, _ y: UnsafeMutablePointer<Float>) {
        guard !r.isEmpty else { return }
        let p = base + r.lowerBound * (format == .mxfp4 ? cols / 2 : rowBytes), n = r.count
        switch format {
        case .f32:
            let w = p.assumingMemoryBound(to: Float.self)
            if WeightMatrix.useBLASForF32 || moe_matvec_f32(w, x.values, y, n, cols) == 0 {
                moe_sgemv(0, Int32(n), Int32(cols), 1, w, Int32(cols), x.values, 1, 0, y, 1)
            }
        case .bf16: moe_matvec_bf16(p.assumingMemoryBound(to: UInt16.self), x.values, y, n, cols)
        case .f16: moe_matvec_f16(p.assumingMemoryBound(to: UInt16.self), x.values, y, n, cols)
        case .q8:
            precondition(x.block == 32, "[matvec] q8 weights need activations quantized in blocks of 32, got \(x.block)")
            moe_matvec_q8(p.assumingMemoryBound(to: UInt8.self), x.codes, x.scales, x.sums, y, n, cols)
        case .q4:
            precondition(x.block == 64, "[matvec] q4 weights need activations quantized in blocks of 64, got \(x.block)")
            moe_matvec_q4(p.assumingMemoryBound(to: UInt8.self), x.codes, x.scales, x.sums, x.packed, y, n, cols)
        case .q4x8:
            precondition(x.block == 64, "[matvec] q4x8 weights need activations quantized in blocks of 64, got \(x.block)")
            moe_matvec_q4x8(base.assumingMemoryBound(to: UInt8.self), r.lowerBound, x.codes, x.scales, x.sums, y, n, cols)
        case .mxfp4:
            precondition(x.block == 32, "[matvec] mxfp4 weights need activations quantized in blocks of 32, got \(x.block)")
            let sc = scales!.assumingMemoryBound(to: UInt8.self) + r.lowerBound * cols / 32
            moe_matvec_mxfp4(p.assumingMemoryBound(to: UInt8.self), sc, x.codes, x.scales, x.sums, x.packed, y, n, cols)
        }
    }
}

/// 64-byte aligned raw memory, freed with its owner.
final class AlignedBuffer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let bytes: Int
    init(bytes: Int) {
        self.bytes = bytes
        pointer = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(bytes, 1), alignment: 64)
    }
    deinit { pointer.deallocate() }
    func floats(_ offset: Int = 0) -> UnsafeMutablePointer<Float> {
        (pointer + 4 * offset).assumingMemoryBound(to: Float.self)
    }
}

/// One input vector of a matrix-vector product: its f32 values and, for block-quantized weights, its codes
/// per block of the weights' block size (scale and scaled code sum per block).
struct Activation {
    /// Elements per quantization block: 32 for q8 and mxfp4 weights, 64 for q4 and q4x8, 0 when not quantized.
    let block: Int
    let values: UnsafePointer<Float>
    let codes: UnsafePointer<Int8>
    let scales: UnsafePointer<Float>
    let sums: UnsafePointer<Float>
    /// q4's activation packed for the 512-bit kernel.
    let packed: UnsafeRawPointer
}

/// Scratch for one vector's quantized form, reused token after token.
final class ActivationBuffer {
    let capacity: Int
    let codes: UnsafeMutablePointer<Int8>
    let scales: UnsafeMutablePointer<Float>
    let sums: UnsafeMutablePointer<Float>
    let packed: UnsafeMutableRawPointer

    init(capacity: Int) {
        self.capacity = capacity
        packed = .allocate(byteCount: Swift.max(moe_q4_packed_bytes(capacity), capacity), alignment: 64)
        codes = .allocate(capacity: Swift.max(capacity, 32))
        scales = .allocate(capacity: Swift.max(capacity / 32, 1))
        sums = .allocate(capacity: Swift.max(capacity / 32, 1))
    }

    deinit {
        codes.deallocate()
        scales.deallocate()
        sums.deallocate()
        packed.deallocate()
    }

    /// x [n] as the input of products with weights of `format`: quantized in the block the format needs.
    func activation(_ x: UnsafePointer<Float>, count n: Int, for format: WeightMatrix.Format) -> Activation {
        let block = format == .q8 || format == .mxfp4 ? 32 : format == .q4 || format == .q4x8 ? 64 : 0
        if block > 0 {
            precondition(n <= capacity && n % block == 0, "[matvec] \(n) activations for a \(format) product (capacity \(capacity), blocks of \(block))")
            moe_quantize_activation(x, codes, scales, sums, n, block)
            // Packed for q4x8 too: one activation serves a pass's jobs, and a matrix whose rows do not come in
            // eights is stored as q4 beside q4x8 ones.
            if format == .q4 || format == .q4x8 { moe_pack_activation_q4(codes, n, packed) }
            if format == .mxfp4 { moe_pack_activation_mxfp4(codes, n, packed) }
        }
        return Activation(block: block, values: x, codes: codes, scales: scales, sums: sums, packed: packed)
    }
}
