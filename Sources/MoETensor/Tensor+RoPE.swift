import Foundation
/// Rotary position embedding (Su et al. 2021), in the "rotate half" layout used by Hugging Face Llama,
/// Mixtral and Qwen: dimension i pairs with i + R/2 within the first R (rotary) dimensions of each head.
///
/// Input shape [..., T, H, Dh]: T positions, H heads, Dh head dimension; `positions` has T entries.
/// Angle of pair i at position p: p * theta^(-2i/R), or YaRN's blended frequencies with `scaling`. With
/// `inverse`, the transposed rotation (what the gradient needs: with YaRN's cos/sin scale s, y = s R x has
/// VJP s R^T g).
extension Tensor {
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func rope(
        _ x: Tensor, positions: [Int], theta: Double, rotaryDim: Int? = nil, scaling: RopeScaling? = nil, inverse: Bool = false
    ) -> Tensor {
        Shape.require(x.rank >= 3, "rope", "input must be [..., T, H, Dh], got \(Shape.describe(x.shape))")
        let dh = x.shape[x.rank - 1], heads = x.shape[x.rank - 2], t = x.shape[x.rank - 3]
        let rdim = rotaryDim ?? dh
        Shape.require(rdim % 2 == 0 && rdim <= dh, "rope", "rotary dimension \(rdim) must be even and <= head dim \(dh)")
        Shape.require(positions.count == t, "rope", "\(positions.count) positions for \(t) time steps of \(Shape.describe(x.shape))")
        let half = rdim / 2
        let (cosT, sinT) = RopeTables.tables(T.self, positions: positions, theta: theta, rotaryDim: rdim, scaling: scaling, inverse: inverse)
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
        let type: String, theta: Double, rotaryDim: Int, scaling: RopeScaling?
    }
    nonisolated(unsafe) static var cache: [Key: Table] = [:]
    static let lock = NSLock()

    /// Angle of pair i at position p: p * theta^(-2i/R), with the inverse frequency rounded to T first and the
    /// angle in Double, then cos and sin rounded to T: matches references that build the tables in float32.
    static func tables<T: TensorScalar>(
        _: T.Type, positions: [Int], theta: Double, rotaryDim rdim: Int, scaling: RopeScaling? = nil, inverse: Bool
    ) -> ([T], [T]) {
        let half = rdim / 2, t = positions.count
        // The frequencies are needed only where the table grows (or for positions it does not hold).
        func frequencies() -> [Double] {
            scaling?.inverseFrequencies(theta: theta, rotaryDim: rdim) ?? (0..<half).map { RopeScaling.plainFrequency(theta: theta, pair: $0, rotaryDim: rdim) }
        }
        let amplitude = scaling?.cosSinScale ?? 1
        var cosT = [T](repeating: 0, count: t * half), sinT = [T](repeating: 0, count: t * half)
        let sign: T = inverse ? -1 : 1
        // Cached for non-negative positions below a bound (anything else is computed directly).
        let maxPosition = positions.max() ?? 0
        if (positions.min() ?? 0) < 0 || maxPosition >= 1 << 20 {
            let freqs = frequencies()
            for (ti, p) in positions.enumerated() {
                for i in 0..<half {
                    let (c, s) = angle(T.self, position: p, inverseFrequency: freqs[i], amplitude: amplitude)
                    cosT[ti * half + i] = c
                    sinT[ti * half + i] = s * sign
                }
            }
            return (cosT, sinT)
        }
        lock.lock()
        defer { lock.unlock() }
        let key = Key(type: T.dtypeName, theta: theta, rotaryDim: rdim, scaling: scaling)
        let table = cache[key] ?? Table()
        cache[key] = table
        if table.positions <= maxPosition {
            let freqs = frequencies()
            let grown = Swift.max(maxPosition + 1, 2 * table.positions, 256)
            table.cos.reserveCapacity(grown * half)
            table.sin.reserveCapacity(grown * half)
            for p in table.positions..<grown {
                for i in 0..<half {
                    let (c, s) = angle(T.self, position: p, inverseFrequency: freqs[i], amplitude: amplitude)
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

    /// cos and sin of p times the inverse frequency rounded to T, times YaRN's amplitude (1 otherwise).
    @inline(__always)
    static func angle<T: TensorScalar>(_: T.Type, position p: Int, inverseFrequency: Double, amplitude: Double) -> (T, T) {
        let a = Double(p) * Double(T(inverseFrequency))
        return amplitude == 1 ? (T(Double.cos(a)), T(Double.sin(a))) : (T(Double(T(Double.cos(a))) * amplitude), T(Double(T(Double.sin(a))) * amplitude))
    }
}

/// YaRN context extension (Peng et al. 2023, "YaRN: Efficient Context Window Extension of Large Language
/// Models") as Hugging Face's `_compute_yarn_parameters` defines it: the high-frequency pairs keep their
/// frequency (extrapolation), the low-frequency ones are divided by `factor` (interpolation), with a linear ramp
/// between the pairs that turn `beta_fast` and `beta_slow` times over `original_max_position_embeddings`; cos
/// and sin are multiplied by the attention factor (0.1 ln(factor) + 1 unless given).
public struct RopeScaling: Codable, Sendable, Hashable {
    public var factor: Double
    public var originalMaxPositions: Int
    public var betaFast = 32.0
    public var betaSlow = 1.0
    /// Round the correction range outward to whole pairs (transformers' default; gpt-oss sets false).
    public var truncate = true
    public var attentionFactor: Double? = nil
    public var mscale: Double? = nil
    public var mscaleAllDim: Double? = nil

    enum CodingKeys: String, CodingKey {
        case factor, originalMaxPositions = "original_max_position_embeddings", betaFast = "beta_fast", betaSlow = "beta_slow"
        case truncate, attentionFactor = "attention_factor", mscale, mscaleAllDim = "mscale_all_dim"
    }

    public init(factor: Double, originalMaxPositions: Int) {
        self.factor = factor
        self.originalMaxPositions = originalMaxPositions
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        factor = try c.decode(Double.self, forKey: .factor)
        originalMaxPositions = try c.decode(Int.self, forKey: .originalMaxPositions)
        betaFast = try c.decodeIfPresent(Double.self, forKey: .betaFast) ?? betaFast
        betaSlow = try c.decodeIfPresent(Double.self, forKey: .betaSlow) ?? betaSlow
        truncate = try c.decodeIfPresent(Bool.self, forKey: .truncate) ?? truncate
        attentionFactor = try c.decodeIfPresent(Double.self, forKey: .attentionFactor)
        mscale = try c.decodeIfPresent(Double.self, forKey: .mscale)
        mscaleAllDim = try c.decodeIfPresent(Double.self, forKey: .mscaleAllDim)
    }

    static func plainFrequency(theta: Double, pair i: Int, rotaryDim: Int) -> Double {
        1.0 / Double.pow(theta, Double(2 * i) / Double(rotaryDim))
    }

    static func yarnScale(_ scale: Double, _ m: Double = 1) -> Double { scale <= 1 ? 1 : 0.1 * m * Double.log(scale) + 1 }

    /// What cos and sin are multiplied by.
    public var cosSinScale: Double {
        if let attentionFactor { return attentionFactor }
        if let mscale, let mscaleAllDim, mscale != 0, mscaleAllDim != 0 {
            return Self.yarnScale(factor, mscale) / Self.yarnScale(factor, mscaleAllDim)
        }
        return Self.yarnScale(factor)
    }

    /// The blended inverse frequency of each of the rotaryDim / 2 pairs.
    public func inverseFrequencies(theta: Double, rotaryDim dim: Int) -> [Double] {
        // The pair index that turns `rotations` times over the original context.
        func correction(_ rotations: Double) -> Double {
            Double(dim) * Double.log(Double(originalMaxPositions) / (rotations * 2 * Double.pi)) / (2 * Double.log(theta))
        }
        var low = correction(betaFast), high = correction(betaSlow)
        if truncate { (low, high) = (low.rounded(.down), high.rounded(.up)) }
        low = Swift.max(low, 0)
        high = Swift.min(high, Double(dim - 1))
        if low == high { high += 0.001 }
        return (0..<(dim / 2)).map { i in
            let base = Self.plainFrequency(theta: theta, pair: i, rotaryDim: dim)
            let ramp = Swift.min(Swift.max((Double(i) - low) / (high - low), 0), 1)
            let extrapolation = 1 - ramp
            return base / factor * (1 - extrapolation) + base * extrapolation
        }
    }
}
