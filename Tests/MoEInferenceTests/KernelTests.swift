import CMoEBLAS
import Foundation
import MoEIO
import MoETensor
import Testing

/// The decode kernels on weights as stored (CMoEBLAS/matvec.c): each vector kernel against its portable
/// reference, and the formats against the f32 products they stand for.
@Suite struct KernelTests {
    static func randomFloats(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var rng = RandomGenerator(seed: seed)
        return (0..<n).map { _ in Float(rng.normal()) * scale }
    }

    static func dot(_ a: ArraySlice<Float>, _ b: [Float]) -> Double {
        zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    }

    @Test func halfConversionsRoundTripAndRoundToNearestEven() {
        for bits in stride(from: 0, through: 0xFFFF, by: 1) {
            let h = UInt16(bits)
            let f = moe_f16_to_f32(h)
            if f.isNaN { #expect(moe_f32_to_f16(f) & 0x7C00 == 0x7C00); continue }
            #expect(moe_f32_to_f16(f) == h, "f16 \(bits) -> \(f) -> \(moe_f32_to_f16(f))")
        }
        // Halfway cases round to the even neighbour; overflow gives infinity; tiny values become subnormals.
        #expect(moe_f32_to_f16(1 + 1.0 / 2048) == 0x3C00)
        #expect(moe_f32_to_f16(1 + 3.0 / 2048) == 0x3C02)
        #expect(moe_f32_to_f16(70000) == 0x7C00)
        #expect(moe_f32_to_f16(-70000) == 0xFC00)
        #expect(moe_f16_to_f32(moe_f32_to_f16(3e-6)) == Float(50) * 0x1p-24)
    }

    /// rows x cols with an odd row count and columns that are not a multiple of the vector width for 16-bit; 16416
    /// columns is past what the BF16 kernel splits on its stack (it then widens as it loads).
    @Test(arguments: [(7, 1024), (13, 96), (1, 2816), (5, 37), (3, 16416)])
    func sixteenBitProductsMatchTheWidenedReference(rows: Int, cols: Int) {
        let w = Self.randomFloats(rows * cols, seed: 1), x = Self.randomFloats(cols, seed: 2)
        for bf16 in [true, false] {
            let bits: [UInt16] = w.map { bf16 ? UInt16(($0.bitPattern &+ 0x8000) >> 16) : moe_f32_to_f16($0) }
            var fast = [Float](repeating: 0, count: rows), slow = fast, widened = [Float](repeating: 0, count: rows * cols)
            if bf16 {
                moe_matvec_bf16(bits, x, &fast, rows, cols)
                moe_matvec_bf16_portable(bits, x, &slow, rows, cols)
                moe_widen_bf16(bits, &widened, rows * cols)
            } else {
                moe_matvec_f16(bits, x, &fast, rows, cols)
                moe_matvec_f16_portable(bits, x, &slow, rows, cols)
                moe_widen_f16(bits, &widened, rows * cols)
            }
            for r in 0..<rows {
                let exact = Self.dot(widened[(r * cols)..<((r + 1) * cols)], x)
                let tol = 1e-5 * Double(cols).squareRoot() * 4
                #expect(abs(Double(fast[r]) - exact) < tol, "\(bf16 ? "bf16" : "f16") row \(r): \(fast[r]) vs \(exact)")
                #expect(abs(Double(slow[r]) - exact) < tol, "portable row \(r): \(slow[r]) vs \(exact)")
            }
        }
    }

    /// Both f32 kernels (a row at a time; four rows at once, with rows left over and columns past the last 32 and
    /// the last 16) and the one chosen for this CPU.
    @Test(arguments: [(9, 1024), (4, 128), (1, 2816), (11, 1000), (7, 37), (5, 15)])
    func f32KernelMatchesTheDoubleProduct(rows: Int, cols: Int) {
        let w = Self.randomFloats(rows * cols, seed: 3), x = Self.randomFloats(cols, seed: 4)
        for streams in [0, 1, 4] {
            var y = [Float](repeating: .nan, count: rows + 1)
            let ran = streams == 0 ? moe_matvec_f32(w, x, &y, rows, cols) : moe_matvec_f32_streams(Int32(streams), w, x, &y, rows, cols)
            if ran == 0 { return }  // no AVX-512 here: the BLAS's sgemv is used
            for r in 0..<rows {
                let exact = Self.dot(w[(r * cols)..<((r + 1) * cols)], x)
                #expect(abs(Double(y[r]) - exact) < 1e-4 * Double(cols).squareRoot(), "\(streams) streams, row \(r)")
            }
            #expect(y[rows].isNaN, "\(streams) streams wrote past the last row")
        }
    }

    /// Quantizing a row keeps every weight within half a step of its block's scale; the integer products match
    /// the portable ones and the product of the dequantized weights with the dequantized activations.
    /// Columns: 1088 (q4: one step of eight pairs and an odd group; q8: two blocks past the last sixteen), 2816 (M1's
    /// down rows: six leftover pairs; eight leftover blocks), 1856 (seven leftover pairs and an odd group) and 320
    /// (two leftover pairs and an odd group; ten leftover blocks: no full step of either).
    @Test(arguments: [BlockFormat.q8, .q4], [1088, 2816, 1856, 320])
    func blockProductsMatchTheirReferences(format: BlockFormat, cols: Int) {
        // An odd number of rows (a partial group of four).
        let rows = 11
        let w = Self.randomFloats(rows * cols, seed: 5, scale: 0.02) , x = Self.randomFloats(cols, seed: 6)
        let rb = format.rowBytes(cols)
        var codes = [UInt8](repeating: 0, count: rows * rb)
        var deq = [Float](repeating: 0, count: rows * cols)
        codes.withUnsafeMutableBytes { c in
            w.withUnsafeBufferPointer { pw in
                format.quantize(pw.baseAddress!, rows: rows, into: c.baseAddress!, cols: cols)
            }
        }
        codes.withUnsafeBytes { c in
            deq.withUnsafeMutableBufferPointer { pd in
                for r in 0..<rows { format.dequantize(c.baseAddress!, row: r, into: pd.baseAddress! + r * cols, cols: cols) }
            }
        }
        // q8: every weight within half a step (amax/127 per block of 32, the scale rounded to f16). q4: each group of
        // 64 codes no worse than MLX's plain affine coding of it (the quantizer picks the best of several codings).
        let block = format.blockSize
        for b in 0..<(rows * cols / block) {
            let seg = w[(b * block)..<((b + 1) * block)]
            if format == .q8 {
                let step = Double(seg.map { abs($0) }.max()!) / 127
                for i in seg.indices { #expect(abs(Double(deq[i] - w[i])) <= step * 0.5 * 1.01 + 1e-6) }
            } else {
                let lo = seg.min()!, hi = seg.max()!
                let sc = moe_f16_to_f32(moe_f32_to_f16((hi - lo) / 15)), mn = moe_f16_to_f32(moe_f32_to_f16(lo))
                var plain = 0.0, chosen = 0.0
                for i in seg.indices {
                    let q = Swift.min(15, Swift.max(0, ((w[i] - mn) * (sc > 0 ? 1 / sc : 0)).rounded(.toNearestOrEven)))
                    plain += pow(Double(w[i] - (sc * q + mn)), 2)
                    chosen += pow(Double(w[i] - deq[i]), 2)
                }
                #expect(chosen <= plain * 1.000001 + 1e-12, "group \(b): \(chosen) vs plain affine \(plain)")
            }
        }
        let ab = format == .q8 ? 32 : 64
        var xq = [Int8](repeating: 0, count: cols), xd = [Float](repeating: 0, count: cols / ab), xs = xd
        moe_quantize_activation(x, &xq, &xd, &xs, cols, ab)
        var xdeq = [Float](repeating: 0, count: cols)
        for i in 0..<cols { xdeq[i] = Float(xq[i]) * xd[i / ab] }
        var fast = [Float](repeating: 0, count: rows), slow = fast
        codes.withUnsafeBufferPointer { c in
            if format == .q8 {
                moe_matvec_q8(c.baseAddress!, xq, xd, xs, &fast, rows, cols)
                moe_matvec_q8_portable(c.baseAddress!, xq, xd, &slow, rows, cols)
            } else {
                var packed = [UInt8](repeating: 0, count: moe_q4_packed_bytes(cols))
                moe_pack_activation_q4(xq, cols, &packed)
                moe_matvec_q4(c.baseAddress!, xq, xd, xs, packed, &fast, rows, cols)
                moe_matvec_q4_portable(c.baseAddress!, xq, xd, xs, &slow, rows, cols)
            }
        }
        for r in 0..<rows {
            let reference = Self.dot(deq[(r * cols)..<((r + 1) * cols)], xdeq)
            let exact = Self.dot(w[(r * cols)..<((r + 1) * cols)], x)
            #expect(abs(Double(fast[r]) - Double(slow[r])) < 1e-4, "\(format) row \(r): vector \(fast[r]) vs portable \(slow[r])")
            // q4's minimum term uses the activation codes' sum, so it matches the dequantized product to rounding.
            #expect(abs(Double(fast[r]) - reference) < 1e-3, "\(format) row \(r): \(fast[r]) vs dequantized \(reference)")
            // Against the f32 product: within the sum of the termwise quantization errors (a bound, not a guess),
            // which is itself a small fraction of the sum of the terms' sizes.
            var bound = 0.0, size = 0.0
            for i in 0..<cols {
                bound += abs(Double(deq[r * cols + i]) * Double(xdeq[i]) - Double(w[r * cols + i]) * Double(x[i]))
                size += abs(Double(w[r * cols + i]) * Double(x[i]))
            }
            #expect(abs(Double(fast[r]) - exact) <= bound + 1e-3, "\(format) row \(r): \(fast[r]) vs f32 \(exact), bound \(bound)")
            // Expected sizes for normal weights: q4's step is about (5 sigma)/15, so |dw| averages 0.08 sigma against
            // |w|'s 0.8 sigma (10%); q8's step is about (2.1 sigma)/127, so |dw| averages a quarter of it, 0.5% of |w|,
            // and as much again from the activations: about 1% on average, so a row's bound is held to 1.5% (short
            // rows spread more: 1.02% at 320 columns).
            #expect(bound < (format == .q8 ? 0.015 : 0.15) * size, "\(format) row \(r): termwise error \(bound) of \(size)")
        }
    }

    /// q4x8 holds q4's codes with eight rows interleaved: each row dequantizes bit for bit to the row-planar q4 row
    /// (vector and portable), its portable product equals q4's portable one exactly, and the vector kernel matches
    /// it on whole blocks and on ranges that start and end inside a block (rows done one at a time). Columns as
    /// above; 24 rows (three blocks).
    @Test(arguments: [1088, 2816, 1856, 320])
    func interleavedQ4MatchesRowPlanarQ4(cols: Int) {
        let rows = 24, rb = BlockFormat.q4.rowBytes(cols)
        #expect(BlockFormat.q4x8.rowBytes(cols) == rb)
        let w = Self.randomFloats(rows * cols, seed: 15, scale: 0.02), x = Self.randomFloats(cols, seed: 16)
        var planar = [UInt8](repeating: 0, count: rows * rb), mixed = planar
        w.withUnsafeBufferPointer { pw in
            planar.withUnsafeMutableBytes { BlockFormat.q4.quantize(pw.baseAddress!, rows: rows, into: $0.baseAddress!, cols: cols) }
            mixed.withUnsafeMutableBytes { BlockFormat.q4x8.quantize(pw.baseAddress!, rows: rows, into: $0.baseAddress!, cols: cols) }
        }
        #expect(planar != mixed)
        #expect(planar.sorted() == mixed.sorted())  // the same bytes, moved
        var a = [Float](repeating: 0, count: cols), b = a, c = a
        for r in 0..<rows {
            moe_dequantize_row_q4(Array(planar[(r * rb)..<((r + 1) * rb)]), &a, cols)
            moe_dequantize_row_q4x8(mixed, r, &b, cols)
            moe_dequantize_row_q4x8_portable(mixed, r, &c, cols)
            #expect(a == b && b == c, "row \(r)")
        }
        var xq = [Int8](repeating: 0, count: cols), xd = [Float](repeating: 0, count: cols / 64), xs = xd
        moe_quantize_activation(x, &xq, &xd, &xs, cols, 64)
        var q4 = [Float](repeating: 0, count: rows), slow = q4
        moe_matvec_q4_portable(planar, xq, xd, xs, &q4, rows, cols)
        moe_matvec_q4x8_portable(mixed, 0, xq, xd, xs, &slow, rows, cols)
        #expect(q4 == slow)
        for (row0, n) in [(0, 24), (8, 16), (3, 17), (5, 2), (16, 8)] {
            var part = [Float](repeating: .nan, count: n)
            moe_matvec_q4x8(mixed, row0, xq, xd, xs, &part, n, cols)
            for i in 0..<n {
                #expect(abs(part[i] - slow[row0 + i]) <= 1e-5 * Swift.max(1, abs(slow[row0 + i])), "rows \(row0)+\(n), row \(row0 + i): \(part[i]) vs \(slow[row0 + i])")
            }
        }
    }

    /// Prefill's integer products (many tokens at once, 16 rows at a time, AVX-512 VNNI where present) equal the
    /// portable matrix-vector products token by token, up to float rounding, for q4x8 and q8 weights: on row ranges
    /// that start at 0 and at 16 and end inside a 16-row block or a q4x8 block, token counts that leave a partial
    /// pass of eight, and an output row stride wider than the rows written (the gap stays untouched).
    @Test(arguments: [(BlockFormat.q4x8, 40, 1088, 13), (.q4x8, 24, 320, 8), (.q4x8, 16, 2816, 3), (.q4x8, 48, 64, 17),
                      (.q8, 40, 1056, 13), (.q8, 19, 96, 9), (.q8, 32, 2816, 2)])
    func integerPrefillProductsMatchTheMatrixVectorReference(format: BlockFormat, rows: Int, cols: Int, tokens: Int) {
        let w = Self.randomFloats(rows * cols, seed: 21, scale: 0.02), x = Self.randomFloats(tokens * cols, seed: 22)
        var stored = [UInt8](repeating: 0, count: rows * format.rowBytes(cols))
        w.withUnsafeBufferPointer { pw in
            stored.withUnsafeMutableBytes { format.quantize(pw.baseAddress!, rows: rows, into: $0.baseAddress!, cols: cols) }
        }
        let block = format == .q8 ? 32 : 64, blocks = cols / block, rb = format.rowBytes(cols)
        var xq = [Int8](repeating: 0, count: tokens * cols), xd = [Float](repeating: 0, count: tokens * blocks), xs = xd
        for t in 0..<tokens {
            xq.withUnsafeMutableBufferPointer { q in
                xd.withUnsafeMutableBufferPointer { d in
                    xs.withUnsafeMutableBufferPointer { s in
                        moe_quantize_activation(Array(x[(t * cols)..<((t + 1) * cols)]), q.baseAddress! + t * cols, d.baseAddress! + t * blocks,
                                                s.baseAddress! + t * blocks, cols, block)
                    }
                }
            }
        }
        for (row0, n) in [(0, rows), (16, rows - 16), (0, 8), (0, rows - 3)] where n > 0 {
            let ld = n + 5
            var fast = [Float](repeating: .nan, count: tokens * ld), slow = fast
            if format == .q8 {
                moe_gemm_q8(stored, rows, cols, row0, n, xq, xd, tokens, &fast, ld)
                moe_gemm_q8_portable(stored, rows, cols, row0, n, xq, xd, tokens, &slow, ld)
            } else {
                moe_gemm_q4x8(stored, rows, cols, row0, n, xq, xd, xs, tokens, &fast, ld)
                moe_gemm_q4x8_portable(stored, rows, cols, row0, n, xq, xd, xs, tokens, &slow, ld)
            }
            for t in 0..<tokens {
                var one = [Float](repeating: 0, count: n)
                let q = Array(xq[(t * cols)..<((t + 1) * cols)]), d = Array(xd[(t * blocks)..<((t + 1) * blocks)])
                if format == .q8 {
                    moe_matvec_q8_portable(Array(stored[(row0 * rb)...]), q, d, &one, n, cols)
                } else {
                    moe_matvec_q4x8_portable(stored, row0, q, d, Array(xs[(t * blocks)..<((t + 1) * blocks)]), &one, n, cols)
                }
                for i in 0..<n {
                    #expect(slow[t * ld + i] == one[i])
                    #expect(abs(fast[t * ld + i] - one[i]) <= 1e-5 * Swift.max(1, abs(one[i])),
                            "\(format) rows \(row0)+\(n), token \(t), row \(i): \(fast[t * ld + i]) vs \(one[i])")
                }
                for i in n..<ld { #expect(fast[t * ld + i].isNaN && slow[t * ld + i].isNaN, "token \(t): column \(i) past the rows was written") }
            }
        }
    }

    /// MXFP4 as gpt-oss stores it: dequantization against the E2M1 table written out here (element 2i in the low
    /// nibble of byte i, 2^(s - 127) per block of 32), and the vector product against the portable one and the
    /// dequantized product, on random codes and scales.
    @Test func mxfp4ProductsMatchTheirReferences() {
        let rows = 7, cols = 1024 + 32, nb = cols / 32
        var rng = RandomGenerator(seed: 9)
        let blocks = (0..<(rows * cols / 2)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let scales = (0..<(rows * nb)).map { _ in UInt8(118 + Int(rng.next() % 12)) }
        let e2m1: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]
        var deq = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            blocks.withUnsafeBufferPointer { pb in
                scales.withUnsafeBufferPointer { ps in
                    deq.withUnsafeMutableBufferPointer { pd in
                        moe_dequantize_row_mxfp4(pb.baseAddress! + r * cols / 2, ps.baseAddress! + r * nb, pd.baseAddress! + r * cols, cols)
                    }
                }
            }
            for j in 0..<cols {
                let byte = blocks[r * cols / 2 + j / 2], code = Int(j % 2 == 0 ? byte & 15 : byte >> 4)
                let expected = e2m1[code] * Float(sign: .plus, exponent: Int(scales[r * nb + j / 32]) - 127, significand: 1)
                #expect(deq[r * cols + j] == expected, "row \(r) element \(j)")
            }
        }
        let x = Self.randomFloats(cols, seed: 10)
        var xq = [Int8](repeating: 0, count: cols), xd = [Float](repeating: 0, count: nb), xs = xd
        moe_quantize_activation(x, &xq, &xd, &xs, cols, 32)
        var fast = [Float](repeating: 0, count: rows), slow = fast
        var packed = [Int8](repeating: 0, count: cols)
        moe_pack_activation_mxfp4(xq, cols, &packed)
        moe_matvec_mxfp4(blocks, scales, xq, xd, xs, packed, &fast, rows, cols)
        moe_matvec_mxfp4_portable(blocks, scales, xq, xd, &slow, rows, cols)
        for r in 0..<rows {
            let reference = (0..<cols).reduce(0.0) { $0 + Double(deq[r * cols + $1]) * Double(Float(xq[$1]) * xd[$1 / 32]) }
            let size = (0..<cols).reduce(0.0) { $0 + abs(Double(deq[r * cols + $1]) * Double(x[$1])) }
            #expect(abs(Double(fast[r]) - Double(slow[r])) <= 1e-5 * size, "row \(r): vector \(fast[r]) vs portable \(slow[r])")
            #expect(abs(Double(fast[r]) - reference) <= 1e-5 * size, "row \(r): \(fast[r]) vs dequantized \(reference)")
        }
    }

    /// BF16 rounding to nearest even, and oneDNN's BF16 product (where it is installed and the CPU has AVX512_BF16)
    /// against the f32 product of the same rounded values, with row strides as prefill passes them.
    @Test func bf16ProductsMatchTheF32ProductOfTheRoundedValues() {
        let values: [Float] = [1, 1 + 1.0 / 256, 1 + 3.0 / 256, -2.5, 3e38, .infinity, Float(bitPattern: 0x0001_16C2)]
        var out = [UInt16](repeating: 0, count: values.count)
        moe_narrow_bf16(values, &out, values.count)
        #expect(out == [0x3F80, 0x3F80, 0x3F82, 0xC020, 0x7F62, 0x7F80, 0x0001])
        var nan = [UInt16](repeating: 0, count: 1)
        moe_narrow_bf16([Float.nan], &nan, 1)
        #expect(nan[0] & 0x7F80 == 0x7F80 && nan[0] & 0x7F != 0)
        guard moe_bf16_gemm_available() != 0 else { return }
        let m = 37, n = 70, k = 96, ldc = n + 5
        let a = Self.randomFloats(m * k, seed: 21), b = Self.randomFloats(n * k, seed: 22)
        var ab = [UInt16](repeating: 0, count: m * k), bb = [UInt16](repeating: 0, count: n * k)
        moe_narrow_bf16(a, &ab, m * k)
        moe_narrow_bf16(b, &bb, n * k)
        var c = [Float](repeating: -7, count: m * ldc)
        #expect(moe_bf16_gemm(m, n, k, ab, k, bb, k, &c, ldc) == 1)
        for i in 0..<m {
            for j in 0..<n {
                var exact = 0.0
                for p in 0..<k { exact += Double(Float(bitPattern: UInt32(ab[i * k + p]) << 16)) * Double(Float(bitPattern: UInt32(bb[j * k + p]) << 16)) }
                #expect(abs(Double(c[i * ldc + j]) - exact) < 1e-4, "c[\(i), \(j)] = \(c[i * ldc + j]) vs \(exact)")
            }
            for j in n..<ldc { #expect(c[i * ldc + j] == -7, "row \(i): the product wrote past its columns") }
        }
    }

    /// Decode attention against the softmax written out in Double: head dims 64 (the AVX-512 register path) and
    /// 24 (the general loop), grouped heads, with and without sink logits.
    @Test(arguments: [64, 24])
    func decodeAttentionMatchesTheSoftmax(dh: Int) {
        let s = 77, hq = 4, hkv = 2, group = hq / hkv, ld = hkv * dh
        let q = Self.randomFloats(hq * dh, seed: 31), k = Self.randomFloats(s * ld, seed: 32), v = Self.randomFloats(s * ld, seed: 33)
        let sinks: [Float] = [0.5, -1, 2, 0]
        let scale = 1 / Float(dh).squareRoot()
        for withSinks in [false, true] {
            var out = [Float](repeating: 0, count: hq * dh), scratch = [Float](repeating: 0, count: s)
            if withSinks {
                moe_attention_decode(q, k, v, &out, s, hq, hkv, dh, scale, sinks, 0, hq, &scratch)
            } else {
                moe_attention_decode(q, k, v, &out, s, hq, hkv, dh, scale, nil, 0, hq, &scratch)
            }
            for h in 0..<hq {
                let g = h / group
                let scores = (0..<s).map { j in (0..<dh).reduce(0.0) { $0 + Double(q[h * dh + $1]) * Double(k[j * ld + g * dh + $1]) } * Double(scale) }
                let top = max(scores.max()!, withSinks ? Double(sinks[h]) : -.infinity)
                let e = scores.map { Foundation.exp($0 - top) }
                let total = e.reduce(0, +) + (withSinks ? Foundation.exp(Double(sinks[h]) - top) : 0)
                for i in 0..<dh {
                    let want = (0..<s).reduce(0.0) { $0 + e[$1] * Double(v[$1 * ld + g * dh + i]) } / total
                    #expect(abs(Double(out[h * dh + i]) - want) < 1e-5, "dh \(dh) sinks \(withSinks) head \(h) dim \(i): \(out[h * dh + i]) vs \(want)")
                }
            }
        }
    }

    /// The vector BF16 rounding is the portable one bit for bit: ties to even, NaNs kept quiet, subnormals rounded
    /// (not flushed), values that round up to infinity, and every tail length.
    @Test(arguments: [1, 15, 16, 17, 1000])
    func vectorBF16RoundingEqualsThePortableOne(n: Int) {
        var x = Self.randomFloats(n, seed: UInt64(n), scale: 3)
        let special: [Float] = [.nan, -.infinity, .infinity, 3.4e38, -0.0, Float(bitPattern: 0x0001_16C2), Float(bitPattern: 0x0000_8000),
                                Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x7F7F_FFFF), Float(bitPattern: 0xFFC0_0001)]
        for (i, v) in special.enumerated() where i < n { x[(i * 5) % n] = v }
        var fast = [UInt16](repeating: 0, count: n), portable = [UInt16](repeating: 1, count: n)
        moe_narrow_bf16(x, &fast, n)
        moe_narrow_bf16_portable(x, &portable, n)
        #expect(fast == portable)
    }

    /// Decode's activation quantization in vector lanes equals the scalar loop code for code, scale for scale,
    /// for q8/mxfp4's blocks of 32 and q4's of 64, with NaNs, infinities, zero blocks and subnormal blocks.
    @Test(arguments: [32, 64])
    func vectorActivationQuantizationEqualsThePortableOne(block: Int) {
        let n = block * 9
        var x = Self.randomFloats(n, seed: UInt64(block), scale: 2)
        for j in 0..<block { x[j] = 0 }  // an all-zero block
        for j in block..<(2 * block) { x[j] = Float(bitPattern: UInt32(j)) }  // a subnormal block
        let special: [Float] = [.nan, .infinity, -.infinity, -0.0, 3e38, 1.5, -2.5, 0.5]
        for (i, v) in special.enumerated() { x[2 * block + (1 + i * (block + 3)) % (n - 2 * block)] = v }
        var q = [Int8](repeating: 0, count: n), d = [Float](repeating: 0, count: n / block), s = d
        var qp = [Int8](repeating: 1, count: n), dp = [Float](repeating: 1, count: n / block), sp = dp
        moe_quantize_activation(x, &q, &d, &s, n, block)
        moe_quantize_activation_portable(x, &qp, &dp, &sp, n, block)
        #expect(q == qp)
        #expect(d.map(\.bitPattern) == dp.map(\.bitPattern))
        #expect(s.map(\.bitPattern) == sp.map(\.bitPattern))
    }

    /// f16 rounding in vector lanes is moe_f32_to_f16's, and decode attention on an f16 cache is the f32 kernel on
    /// the widened cache bit for bit: head dims 64 (the register path) and 24 (the widening path), with sinks.
    @Test(arguments: [64, 24])
    func decodeAttentionOnAnF16CacheIsTheF32OneOnTheWidenedValues(dh: Int) {
        let s = 53, hq = 4, hkv = 2, ld = hkv * dh
        var k = Self.randomFloats(s * ld, seed: 41), v = Self.randomFloats(s * ld, seed: 42)
        let q = Self.randomFloats(hq * dh, seed: 43)
        k[3] = .nan
        k[5] = 70000
        k[7] = 1e-6
        var k16 = [UInt16](repeating: 0, count: s * ld), v16 = k16, kp = k16
        moe_narrow_f16(k, &k16, s * ld)
        moe_narrow_f16_portable(k, &kp, s * ld)
        #expect(k16 == kp)
        #expect(k16.indices.allSatisfy { k16[$0] == moe_f32_to_f16(k[$0]) })
        k[3] = 0.5  // finite keys for the attention itself
        k[5] = 3
        moe_narrow_f16(k, &k16, s * ld)
        moe_narrow_f16(v, &v16, s * ld)
        var kw = [Float](repeating: 0, count: s * ld), vw = kw
        moe_widen_f16(k16, &kw, s * ld)
        moe_widen_f16(v16, &vw, s * ld)
        let sinks: [Float] = [0.5, -1, 2, 0]
        var want = [Float](repeating: 0, count: hq * dh), got = want
        var scratch = [Float](repeating: 0, count: moe_attention_decode_f16_scratch(s, dh))
        moe_attention_decode(q, kw, vw, &want, s, hq, hkv, dh, 0.125, sinks, 0, hq, &scratch)
        moe_attention_decode_f16(q, k16, v16, &got, s, hq, hkv, dh, 0.125, sinks, 0, hq, &scratch)
        #expect(got.map(\.bitPattern) == want.map(\.bitPattern))
    }

    /// The vector conversions prefill uses are bit-identical to the portable ones.
    @Test func vectorConversionsEqualThePortableOnes() {
        let cols = 1024 + 64, w = Self.randomFloats(cols, seed: 9, scale: 0.05)
        let bits16 = w.map { UInt16(($0.bitPattern &+ 0x8000) >> 16) }, half = w.map { moe_f32_to_f16($0) }
        var a = [Float](repeating: 0, count: cols), b = a
        moe_widen_bf16(bits16, &a, cols - 3)
        moe_widen_bf16_portable(bits16, &b, cols - 3)
        #expect(a == b)
        moe_widen_f16(half, &a, cols - 5)
        moe_widen_f16_portable(half, &b, cols - 5)
        #expect(a == b)
        for format in [BlockFormat.q8, .q4] {
            var codes = [UInt8](repeating: 0, count: format.rowBytes(cols))
            codes.withUnsafeMutableBytes { c in w.withUnsafeBufferPointer { format.quantize($0.baseAddress!, rows: 1, into: c.baseAddress!, cols: cols) } }
            if format == .q8 {
                moe_dequantize_row_q8(codes, &a, cols)
                moe_dequantize_row_q8_portable(codes, &b, cols)
            } else {
                moe_dequantize_row_q4(codes, &a, cols)
                moe_dequantize_row_q4_portable(codes, &b, cols)
            }
            #expect(a == b, "\(format)")
        }
    }
}
