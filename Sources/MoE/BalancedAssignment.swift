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
    public static func solve(scores: [Double], tokens n: Int, experts e: Int, capacity: Int) -> [Int] {
        precondition(n <= e * capacity && scores.count == n * e, "[balanced_assignment] \(n) tokens do not fit \(e) experts of \(capacity)")
        guard n > 0 else { return [] }
        if e == 1 { return [Int](repeating: 0, count: n) }
        let lo = scores.min()!, hi = scores.max()!
        let eps = max((hi - lo) / Double(8 * n), 1e-12)
        var price = [Double](repeating: 0, count: e)
        var holders = [[(token: Int, bid: Double)]](repeating: [], count: e)
        var owner = [Int](repeating: -1, count: n)
        var queue = Array((0..<n).reversed())
        while let t = queue.popLast() {
            // Best and second-best value among the experts.
            var best = -1, v1 = -Double.infinity, v2 = -Double.infinity
            for j in 0..<e {
                let v = scores[t * e + j] - price[j]
                if v > v1 { (v2, v1, best) = (v1, v, j) } else if v > v2 { v2 = v }
            }
            let bid = price[best] + (v1 - v2) + eps
            holders[best].append((t, bid))
            owner[t] = best
            if holders[best].count > capacity {
                // Drop the lowest bidder; the expert's price is now its lowest remaining bid.
                let worst = holders[best].indices.min { holders[best][$0].bid < holders[best][$1].bid }!
                let out = holders[best].remove(at: worst)
                owner[out.token] = -1
                queue.append(out.token)
            }
            if holders[best].count == capacity { price[best] = holders[best].map(\.bid).min()! }
        }
        return owner
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
