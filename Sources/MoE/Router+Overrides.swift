/// A router with the same weights under another top-k or with experts removed: what pruning and top-k studies
/// run at inference (`moe analyze`). A removed expert cannot be chosen: its logit gets a bias of -1e30, so softmax
/// gives it 0 and sigmoid scores 0, and a selection bias (DeepSeek-V3's) of -1e30 keeps it out of the top-k too;
/// the remaining experts are chosen and weighted as the router always does.
extension Router {
    public enum OverrideFailure: Error, CustomStringConvertible {
        case invalid(String)
        public var description: String { switch self { case let .invalid(s): return s } }
    }

    public func with(topK k: Int? = nil, removed: Set<Int> = []) throws -> Router<T> {
        var c = config
        if let k { c.expertsPerToken = k }
        guard let gate else { throw OverrideFailure.invalid("the \(config.router) router has no weights to override") }
        guard removed.allSatisfy({ (0..<config.numExperts).contains($0) }) else {
            throw OverrideFailure.invalid("removed experts \(removed.sorted()) outside 0..<\(config.numExperts)")
        }
        guard removed.count < config.numExperts - (c.expertsPerToken - 1) else {
            throw OverrideFailure.invalid("removing \(removed.count) of \(config.numExperts) experts leaves fewer than top-\(c.expertsPerToken)")
        }
        if !removed.isEmpty { c.routerBias = true }
        do { try c.validate() } catch { throw OverrideFailure.invalid("\(error)") }
        var rng = RandomGenerator(seed: 0)
        let r = Router<T>(config: c, path: "router", rng: &rng)
        r.gate!.weight.value = gate.weight.value
        if let b = r.gate!.bias {
            var v = gate.bias?.value.scalars ?? [T](repeating: 0, count: config.numExperts)
            for e in removed { v[e] = -1e30 }
            b.value = Tensor(shape: [config.numExperts], v)
        }
        if let s = selectionBias, let t = r.selectionBias {
            var v = s.value.scalars
            for e in removed { v[e] = -1e30 }
            t.value = Tensor(shape: [config.numExperts], v)
        }
        if let n = noise, let m = r.noise { m.weight.value = n.weight.value }
        if let s = slotScale, let t = r.slotScale { t.value = s.value }
        return r
    }
}
