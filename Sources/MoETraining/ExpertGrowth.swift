import Foundation

/// Lifelong expert growth (Chen et al. 2023, "Lifelong Language Pretraining with Distribution-Specialized
/// Experts"): every MoE layer gains M new experts and M new router rows for a new data distribution; with
/// `freezeOld` the experts and router rows that existed stay fixed (`MoEConfig.frozenExperts`), so what they
/// learned on the old data is kept; with `distill` > 0 the model before the growth becomes a teacher whose
/// predictions on the new data regularize the grown one (the caller sets `Trainer.teacher`). The run's step,
/// schedule and random state continue; the optimizer's moments carry over, zero for the new rows.
public enum Growth {
    public struct GrowthError: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    public static func grow(
        model old: MoETransformer<Float>, optimizer: AdamW<Float>, state: TrainerState, add m: Int, freezeOld: Bool,
        data: TextDataset?, seed: UInt64, distill: Double = 0
    ) throws -> (model: MoETransformer<Float>, optimizer: AdamW<Float>, state: TrainerState) {
        guard let moe = old.config.moe else {
            throw GrowthError("adding experts needs an MoE run; this one is dense (upcycle it first: moe upcycle)")
        }
        guard m >= 1 && m <= 4096 && moe.numExperts + m <= 8192 else {
            throw GrowthError("cannot add \(m) experts to \(moe.numExperts): add between 1 and 4096, at most 8192 in all")
        }
        guard moe.router.hasOneRowPerExpert else {
            throw GrowthError("the \(moe.router.rawValue) router cannot grow (its rows are not one per expert); use softmax_topk, topk_softmax, switch, noisy_topk, gshard or dense")
        }
        guard distill >= 0 && distill <= 100 && distill.isFinite else {
            throw GrowthError("invalid distillation coefficient \(distill): use 0 (none) up to 100, such as 1")
        }
        let e = moe.numExperts
        var config = old.config
        config.moe!.numExperts = e + m
        if freezeOld { config.moe!.frozenExperts = e }
        let grown: MoETransformer<Float>
        do { grown = try MoETransformer<Float>(config, seed: seed) } catch { throw GrowthError("\(error)") }
        let before = old.namedParameters
        var opt = Trainer.optimizer(for: grown, weightDecay: Double(optimizer.weightDecay))
        opt.stepCount = optimizer.stepCount
        for p in grown.parameters + grown.buffers {
            guard let src = before[p.path] else { throw GrowthError("\(p.path) has no counterpart in the run being grown") }
            if src.shape == p.shape {
                p.value = src.value
                if let mm = optimizer.m[p.path], let vv = optimizer.v[p.path] { (opt.m[p.path], opt.v[p.path]) = (mm, vv) }
                continue
            }
            // A per-expert tensor: the old experts' rows first, then the new ones as initialized.
            guard src.shape.dropFirst() == p.shape.dropFirst(), src.shape[0] == e, p.shape[0] == e + m else {
                throw GrowthError("\(p.path) changes from \(src.shape) to \(p.shape), not by \(m) leading rows")
            }
            let keep = src.value.count
            func spliced(_ head: Tensor<Float>, _ tail: Tensor<Float>) -> Tensor<Float> {
                Tensor(shape: p.shape, Array(head.scalars) + Array(tail.scalars[keep...]))
            }
            p.value = spliced(src.value, p.value)
            if let mm = optimizer.m[p.path], let vv = optimizer.v[p.path] {
                opt.m[p.path] = spliced(mm, .zeros(p.shape))
                opt.v[p.path] = spliced(vv, .zeros(p.shape))
            }
        }
        var next = state
        next.growth.append(ExpertGrowth(step: state.step, firstNew: e, added: m, frozeOld: freezeOld, dataSource: data?.source ?? state.dataSource, distill: distill))
        if let data {
            next.dataSource = data.source
            // A new stream: its own sampler, seeded by the run's seed and the step it starts at.
            next.sampler = BatchSampler(seed: state.train.seed &+ UInt64(state.step) &* 0x9E37_79B9)
        }
        return (grown, opt, next)
    }
}
