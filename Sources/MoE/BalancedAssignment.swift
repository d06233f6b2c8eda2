/// Balanced assignment of N tokens to E experts, each expert taking exactly its capacity (N / E when E divides
/// N), maximizing the summed score: the auction algorithm (Bertsekas 1979) with experts as sellers of
/// `capacity` identical seats, as BASE layers (Lewis et al. 2021) solve it in training.
///
/// Each unassigned token bids for its best expert by value (score − price), raising that expert's price by the
/// gap to its second-best value plus ε; a full expert drops its lowest bidder, who bids again. The result is
/// within N·ε of the optimum (ε-complementary slackness); ε is the score range / (8 N), so it is within an eighth
/// of the range in total.
public enum BalancedAssignment {
    /// scores [N·E] row-major; returns the expert of each token. Requires N ≤ E · capacity.
    ///
    /// When every seat is filled (N = E · capacity), ε-scaling (Bertsekas 1988): phases with ε = range/4,
    /// range/32, ... down to the final ε, each starting from the previous phase's prices, so contested experts'
    /// prices rise in large steps first. With spare seats an expert left short must end at price 0, which carried
    /// prices would break, so that case runs one auction from zero prices at the final ε.
    public static func solve(scores: [Double], tokens n: Int, experts e: Int, capacity: Int) -> [Int] {
        precondition(n <= e * capacity && scores.count == n * e, "[balanced_assignment] \(n) tokens do not fit \(e) experts of \(capacity)")
        guard n > 0 else { return [] }
        if e == 1 { return [Int](repeating: 0, count: n) }
        let range = max(scores.max()! - scores.min()!, 1e-12)
        let final = range / Double(8 * n)
        var price = [Double](repeating: 0, count: e)
        var eps = n == e * capacity ? range / 4 : final
        while true {
            eps = max(eps, final)
            let owner = phase(scores, n, e, capacity, eps, &price)
            if eps == final { return owner }
            eps /= 8
        }
    }

    /// One auction at a fixed ε from the given prices; every token ends assigned. Each expert's holders are a
    /// min-heap on their bids, so the lowest bidder is dropped in O(log capacity).
    static func phase(_ scores: [Double], _ n: Int, _ e: Int, _ capacity: Int, _ eps: Double, _ price: inout [Double]) -> [Int] {
        var heaps = [[(bid: Double, token: Int)]](repeating: [], count: e)
        for j in 0..<e { heaps[j].reserveCapacity(capacity + 1) }
        var owner = [Int](repeating: -1, count: n)
        var queue = Array((0..<n).reversed())
        // A phase starts with no holders, so an expert's price is what its holders paid only once it is full.
        var current = price
        while let t = queue.popLast() {
            var best = -1, v1 = -Double.infinity, v2 = -Double.infinity
            for j in 0..<e {
                let v = scores[t * e + j] - current[j]
                if v > v1 { (v2, v1, best) = (v1, v, j) } else if v > v2 { v2 = v }
            }
            let bid = current[best] + (v1 - v2) + eps
            push(&heaps[best], (bid, t))
            owner[t] = best
            if heaps[best].count > capacity {
                let out = pop(&heaps[best])
                owner[out.token] = -1
                queue.append(out.token)
            }
            if heaps[best].count == capacity { current[best] = heaps[best][0].bid }
        }
        price = current
        return owner
    }

    static func push(_ h: inout [(bid: Double, token: Int)], _ v: (bid: Double, token: Int)) {
        h.append(v)
        var i = h.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard h[i].bid < h[p].bid else { break }
            h.swapAt(i, p)
            i = p
        }
    }

    static func pop(_ h: inout [(bid: Double, token: Int)]) -> (bid: Double, token: Int) {
        let top = h[0]
        let last = h.removeLast()
        guard !h.isEmpty else { return top }
        h[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < h.count && h[l].bid < h[m].bid { m = l }
            if r < h.count && h[r].bid < h[m].bid { m = r }
            if m == i { break }
            h.swapAt(i, m)
            i = m
        }
        return top
    }

    /// The best balanced assignment by exhaustive search (tests only: tiny N).
    public static func bruteForce(scores: [Double], tokens n: Int, experts e: Int, capacity: Int) -> (assignment: [Int], total: Double) {
        var best = (assignment: [Int](), total: -Double.infinity)
        var current = [Int](repeating: 0, count: n), load = [Int](repeating: 0, count: e)
        func visit(_ t: Int, _ sum: Double) {
            if t == n {
                if sum > best.total { best = (current, sum) }
                return
            }
            for j in 0..<e where load[j] < capacity {
                load[j] += 1
                current[t] = j
                visit(t + 1, sum + scores[t * e + j])
                load[j] -= 1
            }
        }
        visit(0, 0)
        return best
    }
}
