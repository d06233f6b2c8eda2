/// A shape violation inside a tensor op: names the op and the shapes involved.
public struct ShapeError: Error, CustomStringConvertible, Equatable {
    public let op: String
    public let message: String
    public init(op: String, _ message: String) {
        self.op = op
        self.message = message
    }
    public var description: String { "[\(op)] \(message)" }
}

/// Shape arithmetic shared by every kernel.
public enum Shape {
    @inline(__always)
    public static func count(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    public static func describe(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }

    /// Stops with the op's name and the message when `check` fails. Shape errors inside ops are programming
    /// errors (like an out-of-bounds index), so they stop the program rather than throw.
    @inline(__always)
    public static func require(_ check: Bool, _ op: @autoclosure () -> String, _ message: @autoclosure () -> String) {
        if !check { preconditionFailure(ShapeError(op: op(), message()).description) }
    }

    /// Row-major strides of a contiguous shape.
    public static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            s[i] = acc
            acc *= shape[i]
        }
        return s
    }

    public static func flatIndex(_ index: [Int], _ shape: [Int]) -> Int {
        require(index.count == shape.count, "index", "index of rank \(index.count) for shape \(describe(shape))")
        var flat = 0
        for (i, n) in zip(index, shape) {
            require(i >= 0 && i < n, "index", "index \(index) out of bounds for shape \(describe(shape))")
            flat = flat * n + i
        }
        return flat
    }

    /// Normalizes a possibly negative axis.
    public static func axis(_ axis: Int, rank: Int, op: String) -> Int {
        let a = axis < 0 ? axis + rank : axis
        require(a >= 0 && a < max(rank, 1), op, "axis \(axis) out of range for rank \(rank)")
        return a
    }

    /// Resolves one -1 in a reshape target.
    public static func resolve(_ target: [Int], count: Int, op: String) -> [Int] {
        let unknown = target.indices.filter { target[$0] == -1 }
        require(unknown.count <= 1, op, "more than one -1 in \(describe(target))")
        var out = target
        if let u = unknown.first {
            let known = target.enumerated().filter { $0.offset != u }.map(\.element).reduce(1, *)
            require(known > 0 && count % known == 0, op, "cannot infer -1 in \(describe(target)) for \(count) elements")
            out[u] = count / known
        }
        require(
            Shape.count(out) == count, op,
            "cannot view \(count) elements as \(describe(target))")
        return out
    }

    /// NumPy broadcasting of two shapes, or a ShapeError naming the op.
    public static func broadcast(_ a: [Int], _ b: [Int], op: String) throws(ShapeError) -> [Int] {
        let rank = max(a.count, b.count)
        var out = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            if da == db || db == 1 {
                out[i] = da
            } else if da == 1 {
                out[i] = db
            } else {
                throw ShapeError(op: op, "shapes \(describe(a)) and \(describe(b)) do not broadcast")
            }
        }
        return out
    }

    /// Strides of `shape` read as if broadcast to `target` (0 along broadcast axes).
    public static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
        let s = strides(shape)
        let lead = target.count - shape.count
        return (0..<target.count).map { i in
            if i < lead { return 0 }
            return shape[i - lead] == 1 && target[i] != 1 ? 0 : s[i - lead]
        }
    }
}
