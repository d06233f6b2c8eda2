/// The linear sum assignment problem: given an n x m cost matrix, choose min(n, m) cells, no two in one row or
/// column, with the smallest (or, with `maximize`, the largest) sum. This is what scipy's
/// `optimize.linear_sum_assignment` solves; the expert analyses use it to align two experts' neurons.
///
/// The method is the shortest augmenting path one of Jonker and Volgenant (1987), in the form with row and column
/// potentials (dual variables): each row in turn is joined to the assignment along the cheapest path of reduced
/// costs, found Dijkstra-style over the columns, and the potentials are updated so that reduced costs stay
/// non-negative. O(n^2 m) time, O(n m) memory for the costs (passed in) and O(m) besides.
public enum LinearAssignment {
    public enum Failure: Error, CustomStringConvertible {
        case nonFinite(row: Int, column: Int)
        case shape(String)
        public var description: String {
            switch self {
            case let .nonFinite(row, column): return "cost[\(row)][\(column)] is not a finite number; the assignment needs finite costs"
            case let .shape(s): return s
            }
        }
    }

    /// Rows and the columns assigned to them, ascending by row (as scipy returns them): for n <= m every row gets a
    /// column; for n > m every column gets a row.
    public struct Result: Equatable, Sendable {
        public let rows: [Int]
        public let columns: [Int]
        public let total: Double
    }

    /// Solves the problem for `cost` in row-major order with `n` rows and `m` columns.
    public static func solve(_ cost: [Double], rows n: Int, columns m: Int, maximize: Bool = false) throws -> Result {
        guard n >= 0, m >= 0, cost.count == n * m else {
            throw Failure.shape("\(cost.count) costs for a \(n) x \(m) matrix")
        }
        for i in 0..<(n * m) where !cost[i].isFinite { throw Failure.nonFinite(row: i / Swift.max(m, 1), column: i % Swift.max(m, 1)) }
        if n == 0 || m == 0 { return Result(rows: [], columns: [], total: 0) }
        // The algorithm below needs rows <= columns: solve the transpose otherwise.
        let transposed = n > m
        let (r, c) = transposed ? (m, n) : (n, m)
        let sign: Double = maximize ? -1 : 1
        @inline(__always) func a(_ i: Int, _ j: Int) -> Double { sign * (transposed ? cost[j * m + i] : cost[i * m + j]) }

        // 1-based as in the classical statement; index 0 is a virtual column holding the row being inserted.
        var u = [Double](repeating: 0, count: r + 1), v = [Double](repeating: 0, count: c + 1)
        var owner = [Int](repeating: 0, count: c + 1)  // owner[j]: the row assigned to column j (0: none)
        var way = [Int](repeating: 0, count: c + 1)  // the previous column on the shortest path
        var minimum = [Double](repeating: 0, count: c + 1)
        var used = [Bool](repeating: false, count: c + 1)
        for i in 1...r {
            owner[0] = i
            var j0 = 0
            for j in 0...c { minimum[j] = .infinity; used[j] = false }
            repeat {
                used[j0] = true
                let i0 = owner[j0]
                var delta = Double.infinity, j1 = 0
                for j in 1...c where !used[j] {
                    let reduced = a(i0 - 1, j - 1) - u[i0] - v[j]
                    if reduced < minimum[j] { minimum[j] = reduced; way[j] = j0 }
                    if minimum[j] < delta { delta = minimum[j]; j1 = j }
                }
                for j in 0...c {
                    if used[j] { u[owner[j]] += delta; v[j] -= delta } else { minimum[j] -= delta }
                }
                j0 = j1
            } while owner[j0] != 0
            // Flip the path: each column on it takes the row of the column before it.
            repeat {
                let j1 = way[j0]
                owner[j0] = owner[j1]
                j0 = j1
            } while j0 != 0
        }
        var pairs: [(Int, Int)] = []
        for j in 1...c where owner[j] != 0 {
            let (row, column) = (owner[j] - 1, j - 1)
            pairs.append(transposed ? (column, row) : (row, column))
        }
        pairs.sort { $0.0 < $1.0 }
        let total = pairs.reduce(0.0) { $0 + cost[$1.0 * m + $1.1] }
        return Result(rows: pairs.map(\.0), columns: pairs.map(\.1), total: total)
    }

    /// Kendall's rank correlation between `x` and `y` (no ties, as between a permutation and the identity):
    /// (concordant - discordant pairs) / (n (n - 1) / 2), counting discordant pairs as the inversions of y
    /// ordered by x, by merge sort in O(n log n). 1 when the orders agree, -1 when they are reversed.
    public static func kendallTau(_ x: [Int], _ y: [Int]) -> Double {
        precondition(x.count == y.count, "[kendall] \(x.count) against \(y.count) values")
        let n = x.count
        guard n >= 2 else { return 1 }
        var order = Array(0..<n)
        order.sort { x[$0] < x[$1] }
        var values = order.map { y[$0] }, scratch = values
        var inversions = 0
        func sort(_ lo: Int, _ hi: Int) {
            guard hi - lo > 1 else { return }
            let mid = (lo + hi) / 2
            sort(lo, mid)
            sort(mid, hi)
            var i = lo, j = mid, k = lo
            while i < mid && j < hi {
                if values[i] <= values[j] { scratch[k] = values[i]; i += 1 } else { scratch[k] = values[j]; j += 1; inversions += mid - i }
                k += 1
            }
            while i < mid { scratch[k] = values[i]; i += 1; k += 1 }
            while j < hi { scratch[k] = values[j]; j += 1; k += 1 }
            for t in lo..<hi { values[t] = scratch[t] }
        }
        sort(0, n)
        let pairs = Double(n) * Double(n - 1) / 2
        return (pairs - 2 * Double(inversions)) / pairs
    }
}
