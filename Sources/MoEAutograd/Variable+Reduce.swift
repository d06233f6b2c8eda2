import MoETensor

extension Variable {
    /// Sum over `axes`. VJP: the gradient broadcast back over the summed axes.
    public func sum(axes: [Int], keepDims: Bool = false) -> Variable {
        let inShape = shape
        let kept = value.sum(axes: axes, keepDims: true)
        let y = keepDims ? kept : value.sum(axes: axes, keepDims: false)
        return Variable.result(y, self) {
            let keptShape = kept.shape
            return { g in [g.reshaped(keptShape).broadcast(to: inShape)] }
        }
    }

    public func sum(axis: Int, keepDims: Bool = false) -> Variable { sum(axes: [axis], keepDims: keepDims) }

    /// Sum of every element, as a scalar.
    public func sum() -> Variable { reshaped([count]).sum(axis: 0) }

    public var count: Int { value.count }

    /// Mean over `axes`.
    public func mean(axes: [Int], keepDims: Bool = false) -> Variable {
        let n = axes.map { shape[Shape.axis($0, rank: rank, op: "mean")] }.reduce(1, *)
        return sum(axes: axes, keepDims: keepDims) * (1 / T(Swift.max(n, 1)))
    }

    public func mean(axis: Int, keepDims: Bool = false) -> Variable { mean(axes: [axis], keepDims: keepDims) }

    /// Mean of every element.
    public func mean() -> Variable { sum() * (1 / T(Swift.max(count, 1))) }

    /// Maximum over several axes (one axis at a time: the max of maxima).
    public func max(axes: [Int], keepDims: Bool = false) -> Variable {
        let norm = Set(axes.map { Shape.axis($0, rank: rank, op: "max") }).sorted(by: >)
        var v = self
        for a in norm { v = v.max(axis: a, keepDims: true) }
        return keepDims ? v : v.reshaped(shape.enumerated().filter { !norm.contains($0.offset) }.map(\.element))
    }

    /// Maximum over `axis`. VJP: the gradient goes to the first maximal element.
    public func max(axis: Int, keepDims: Bool = false) -> Variable {
        let ax = Shape.axis(axis, rank: rank, op: "max")
        let (y, idx) = value.max(axis: ax, keepDims: keepDims)
        return Variable.result(y, self) {
            let inShape = shape
            var keptShape = inShape
            keptShape[ax] = 1
            return { g in [Tensor.maxBackward(g.reshaped(keptShape), indices: idx, inputShape: inShape, axis: ax)] }
        }
    }
}
