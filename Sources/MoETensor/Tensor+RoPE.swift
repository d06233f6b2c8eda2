import Foundation
/// Rotary position embedding (Su et al. 2021), in the "rotate half" layout used by Hugging Face Llama,
/// Mixtral and Qwen: dimension i pairs with i + R/2 within the first R (rotary) dimensions of each head.
///
/// Input shape [..., T, H, Dh]: T positions, H heads, Dh head dimension; `positions` has T entries.
/// Angle of pair i at position p: p * theta^(-2i/R).
extension Tensor {
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func rope(
        _ x: Tensor, positions: [Int], theta: Double, rotaryDim: Int? = nil, inverse: Bool = false
    ) -> Tensor {
        Shape.require(x.rank >= 3, "rope", "input must be [..., T, H, Dh], got \(Shape.describe(x.shape))")
        let dh = x.shape[x.rank - 1], heads = x.shape[x.rank - 2], t = x.shape[x.rank - 3]
        let rdim = rotaryDim ?? dh
        Shape.require(rdim % 2 == 0 && rdim <= dh, "rope", "rotary dimension \(rdim) must be even and <= head dim \(dh)")
        Shape.require(positions.count == t, "rope", "\(positions.count) positions for \(t) time steps of \(Shape.describe(x.shape))")
        let half = rdim / 2
        let (cosT, sinT) = RopeTables.tables(T.self, positions: positions, theta: theta, rotaryDim: rdim, inverse: inverse)
        let out = Tensor(uninitializedShape: x.shape)
        let outer = x.count / Swift.max(t * heads * dh, 1)
        let po = out.storage.base
        x.withUnsafePointer { px in
            cosT.withUnsafeBufferPointer { pc in
                sinT.withUnsafeBufferPointer { ps in
                    Parallel.forRange(outer * t, grain: Swift.max(1, elementwiseGrain / Swift.max(heads * dh, 1))) { r in
                        for ot in r {
                            let ti = ot % t
                            let c = pc.baseAddress! + ti * half, s = ps.baseAddress! + ti * half
                            for h in 0..<heads {
                                let base = (ot * heads + h) * dh
                                rotate(px + base, po + base, c, s, half: half, dh: dh)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// y[i] = x[i] c[i] - x[i + half] s[i], y[i + half] = x[i + half] c[i] + x[i] s[i] for i < half; the
    /// dimensions past the rotary ones are copied. Eight lanes at a time where half allows (the scalar loop
    /// did not vectorize: 1.3 ns per pair).
    @inline(__always)
    static func rotate(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ c: UnsafePointer<T>, _ s: UnsafePointer<T>, half: Int, dh: Int) {
        var i = 0
        if half % 8 == 0 {
            while i < half {
                let a = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<T>.self)
                let b = UnsafeRawPointer(x + i + half).loadUnaligned(as: SIMD8<T>.self)
                let cc = UnsafeRawPointer(c + i).loadUnaligned(as: SIMD8<T>.self)
                let ss = UnsafeRawPointer(s + i).loadUnaligned(as: SIMD8<T>.self)
                UnsafeMutableRawPointer(y + i).storeBytes(of: a * cc - b * ss, as: SIMD8<T>.self)
                UnsafeMutableRawPointer(y + i + half).storeBytes(of: b * cc + a * ss, as: SIMD8<T>.self)
                i += 8
            }
        }
        while i < half {
            let a = x[i], b = x[i + half]
            y[i] = a * c[i] - b * s[i]
            y[i + half] = b * c[i] + a * s[i]
            i += 1
        }
        for j in (2 * half)..<dh { y[j] = x[j] }
    }
}

/// cos/sin tables of rotary embeddings, cached per (scalar type, theta, rotary dims) and grown to the largest
/// position seen, so that training and decoding compute each angle once rather than once per call (a table
/// for T1's 128 positions cost 0.5 ms of pow/cos/sin per call, four calls per layer and step).
enum RopeTables {
    final class Table {
        var cos: [Double] = [], sin: [Double] = []  // [positions, half], rounded to the scalar type
        var positions = 0
    }
    struct Key: Hashable {
        let type: String, theta: Double, rotaryDim: Int
    }
    nonisolated(unsafe) static var cache: [Key: Table] = [:]
    static let lock = NSLock()

    /// Angle of pair i at position p: p * theta^(-2i/R), with the inverse frequency rounded to T first and the
    /// angle in Double, then cos and sin rounded to T: matches references that build the tables in float32.
    static func tables<T: TensorScalar>(
        _: T.Type, positions: [Int], theta: Double, rotaryDim rdim: Int, inverse: Bool
    ) -> ([T], [T]) {
        let half = rdim / 2, t = positions.count
        var cosT = [T](repeating: 0, count: t * half), sinT = [T](repeating: 0, count: t * half)
        let sign: T = inverse ? -1 : 1
        // Cached for non-negative positions below a bound (anything else is computed directly).
        let maxPosition = positions.max() ?? 0
        if (positions.min() ?? 0) < 0 || maxPosition >= 1 << 20 {
            for (ti, p) in positions.enumerated() {
                for i in 0..<half {
                    let (c, s) = angle(T.self, position: p, pair: i, theta: theta, rotaryDim: rdim)
                    cosT[ti * half + i] = c
                    sinT[ti * half + i] = s * sign
                }
            }
            return (cosT, sinT)
        }
        lock.lock()
        defer { lock.unlock() }
        let key = Key(type: T.dtypeName, theta: theta, rotaryDim: rdim)
        let table = cache[key] ?? Table()
        cache[key] = table
        if table.positions <= maxPosition {
            let grown = Swift.max(maxPosition + 1, 2 * table.positions, 256)
            table.cos.reserveCapacity(grown * half)
            table.sin.reserveCapacity(grown * half)
            for p in table.positions..<grown {
                for i in 0..<half {
                    let (c, s) = angle(T.self, position: p, pair: i, theta: theta, rotaryDim: rdim)
                    table.cos.append(Double(c))
                    table.sin.append(Double(s))
                }
            }
            table.positions = grown
        }
        for (ti, p) in positions.enumerated() {
            for i in 0..<half {
                cosT[ti * half + i] = T(table.cos[p * half + i])
                sinT[ti * half + i] = T(table.sin[p * half + i]) * sign
            }
        }
        return (cosT, sinT)
    }

    @inline(__always)
    static func angle<T: TensorScalar>(_: T.Type, position p: Int, pair i: Int, theta: Double, rotaryDim rdim: Int) -> (T, T) {
        let invFreq = 1.0 / Double.pow(theta, Double(2 * i) / Double(rdim))
        let a = Double(p) * Double(T(invFreq))
        return (T(Double.cos(a)), T(Double.sin(a)))
    }
}
