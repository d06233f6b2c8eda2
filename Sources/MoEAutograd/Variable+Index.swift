import MoETensor

extension Variable {
    /// Embedding lookup: rows of `table` [V, D] for `ids` laid out in `idsShape`; output [idsShape..., D].
    /// VJP: the gradient rows scatter-added into the table's shape.
    public static func embedding(_ table: Variable, ids: [Int], idsShape: [Int]? = nil) -> Variable {
        let shapeOfIds = idsShape ?? [ids.count]
        Shape.require(
            Shape.count(shapeOfIds) == ids.count, "embedding",
            "\(ids.count) ids do not fill shape \(Shape.describe(shapeOfIds))")
        Shape.require(table.rank == 2, "embedding", "table must be [V, D], got \(Shape.describe(table.shape))")
        let d = table.shape[1]
        let y = table.value.indexSelect(ids).reshaped(shapeOfIds + [d])
        return result(y, table) {
            let tShape = table.shape
            return { g in [Tensor.zeros(tShape).scatterAdd(ids, g.reshaped([ids.count, d]))] }
        }
    }

    /// Rows of the first axis picked by `indices`. VJP: scatter-add of the gradient rows.
    public func indexSelect(_ indices: [Int]) -> Variable {
        let inShape = shape
        return Variable.result(value.indexSelect(indices), self) {
            { g in [Tensor.zeros(inShape).scatterAdd(indices, g)] }
        }
    }

    /// `base` with rows of `src` added at `indices`. VJP: base gets g; src gets the rows of g at `indices`.
    public static func scatterAdd(_ base: Variable, indices: [Int], _ src: Variable) -> Variable {
        result(base.value.scatterAdd(indices, src.value), base, src) {
            { g in [g, g.indexSelect(indices)] }
        }
    }

    /// Gather along the last axis: out[..., j] = x[..., index[..., j]] with `k` entries per row.
    public func gather(lastAxis index: [Int], k: Int) -> Variable {
        let inShape = shape
        return Variable.result(value.gather(lastAxis: index, k: k), self) {
            { g in [Tensor.gatherBackward(g, index: index, inputShape: inShape)] }
        }
    }

    /// The k largest values along the last axis (descending) and their indices. The gradient flows through
    /// the values to the chosen positions; the indices are constants.
    public func topK(_ k: Int) -> (values: Variable, indices: [Int]) {
        let (v, idx) = value.topK(k)
        let inShape = shape
        let values = Variable.result(v, self) { { g in [Tensor.gatherBackward(g, index: idx, inputShape: inShape)] } }
        return (values, idx)
    }
}
