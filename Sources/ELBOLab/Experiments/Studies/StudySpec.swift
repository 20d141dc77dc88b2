import Foundation

extension SpecReader {
    /// The keys of each study kind's `study` block.
    static let studyKeys: [StudyKind: [String]] = [
        .iwaeBound: ["particles", "rotation", "relative-error", "max-draws"],
        .iwaeSNR: ["particles", "repeats", "points", "estimators", "loading-scale", "mean-offset", "variance-factor", "variance-spread", "slope-from", "block-summary"],
        .semiAmortized: ["refine-steps", "refine-rate", "encoders", "hidden", "train-steps", "tolerance"],
        .collapse: ["noise-variances", "points", "strategy", "extra-latent", "iterations", "tolerance"],
    ]
    /// The top-level keys a study spec takes (it has no runs).
    static let studyTopKeys = ["name", "title", "description", "kind", "order", "data", "seeds", "study"]

    /// The spec when its `kind` names a study (``StudyKind``); nil for the other kinds.
    func studySpec(_ top: Fields, name: String, title: String, description: String) throws -> ExperimentSpec? {
        guard let k = top["kind"], case let .string(text) = k else {
            if top["kind"] == nil, top["study"] != nil {
                throw fail(top.at("study"), "is only used by the kinds \(StudyKind.allCases.map(\.rawValue).joined(separator: ", ")) (set \"kind\")")
            }
            return nil
        }
        guard let kind = StudyKind(rawValue: text) else {
            if ExperimentSpec.Kind(rawValue: text) == nil {
                let all = ExperimentSpec.Kind.allCases.map(\.rawValue) + StudyKind.allCases.map(\.rawValue)
                throw fail(top.at("kind"), "unknown kind \(JSON.quote(text)) (expected one of \(all.joined(separator: ", ")))")
            }
            if top["study"] != nil { throw fail(top.at("study"), "is only used by the kinds \(StudyKind.allCases.map(\.rawValue).joined(separator: ", "))") }
            return nil
        }
        for key in top.values.keys.sorted() where !Self.studyTopKeys.contains(key) {
            throw fail(top.at(key), "is not used by kind \(JSON.quote(kind.rawValue)) (it takes \(Self.studyTopKeys.joined(separator: ", ")))")
        }
        let order = try top["order"].map { try integer($0, top.at("order"), min: Int.min / 2) } ?? 0
        var seeds: [UInt64] = []
        for (i, s) in try array(try required(top, "seeds", "an array of seeds, e.g. [1]"), top.at("seeds")).enumerated() {
            let seed = UInt64(try integer(s, "\(top.at("seeds"))[\(i)]", min: 0))
            if seeds.contains(seed) { throw fail("\(top.at("seeds"))[\(i)]", "repeats the seed \(seed)") }
            seeds.append(seed)
        }
        let data = try dataSpec(try required(top, "data", "a simulation {dim, latent, count, noise-variance, seed} or {\"csv\": path, \"latent\": J}"),
                                top.at("data"), needsCount: true)
        let f = try object(top["study"] ?? .object([:]), top.at("study"), allowed: Self.studyKeys[kind] ?? [])
        let settings: StudySettings
        switch kind {
        case .iwaeBound:
            var s = IWAEBoundStudy.Settings()
            if let v = f["particles"] { s.particles = try integers(v, f.at("particles"), min: 1) }
            if let v = f["rotation"] { s.rotation = try number(v, f.at("rotation")) }
            if let v = f["relative-error"] { s.relativeError = try positive(v, f.at("relative-error")) }
            if let v = f["max-draws"] { s.maxDraws = try integer(v, f.at("max-draws"), min: 1) }
            settings = .iwaeBound(s)
        case .iwaeSNR:
            var s = IWAESNRStudy.Settings()
            if let v = f["particles"] { s.particles = try integers(v, f.at("particles"), min: 1) }
            if let v = f["repeats"] { s.repeats = try integer(v, f.at("repeats"), min: 2) }
            if let v = f["points"] { s.points = try integer(v, f.at("points"), min: 1) }
            if let v = f["estimators"] {
                s.estimators = try array(v, f.at("estimators")).enumerated().map {
                    try choice($0.element, "\(f.at("estimators"))[\($0.offset)]", "estimator", ImportanceWeightedEstimator.self)
                }
            }
            if let v = f["loading-scale"] { s.loadingScale = try positive(v, f.at("loading-scale")) }
            if let v = f["mean-offset"] { s.meanOffset = try nonNegative(v, f.at("mean-offset")) }
            if let v = f["variance-factor"] { s.varianceFactor = try positive(v, f.at("variance-factor")) }
            if let v = f["variance-spread"] { s.varianceSpread = try nonNegative(v, f.at("variance-spread")) }
            if let v = f["slope-from"] { s.slopeFrom = try integer(v, f.at("slope-from"), min: 1) }
            if let v = f["block-summary"] { s.blockSummary = try choice(v, f.at("block-summary"), "block summary", IWAESNRStudy.BlockSummary.self) }
            settings = .iwaeSNR(s)
        case .semiAmortized:
            var s = SemiAmortizedStudy.Settings()
            if let v = f["refine-steps"] { s.refineSteps = try integers(v, f.at("refine-steps"), min: 0) }
            if let v = f["refine-rate"] { s.refineRate = try positive(v, f.at("refine-rate")) }
            if let v = f["encoders"] {
                s.encoders = try array(v, f.at("encoders")).enumerated().map {
                    try choice($0.element, "\(f.at("encoders"))[\($0.offset)]", "encoder", EncoderKind.self)
                }
            }
            if let v = f["hidden"] { s.hidden = try integer(v, f.at("hidden"), min: 1) }
            if let v = f["train-steps"] { s.trainSteps = try integer(v, f.at("train-steps"), min: 1) }
            if let v = f["tolerance"] { s.tolerance = try positive(v, f.at("tolerance")) }
            settings = .semiAmortized(s)
        case .collapse:
            var s = CollapseStudy.Settings()
            if let v = f["noise-variances"] {
                s.noiseVariances = try array(v, f.at("noise-variances")).enumerated().map {
                    try positive($0.element, "\(f.at("noise-variances"))[\($0.offset)]")
                }
            }
            if let v = f["points"] { s.points = try integer(v, f.at("points"), min: 2) }
            if let v = f["strategy"] {
                s.strategy = try choice(v, f.at("strategy"), "strategy", Strategy.self)
                guard s.strategy == .perDatapoint || s.strategy == .em else {
                    throw fail(f.at("strategy"), "must be per-datapoint or em (a fit with --noise-variance held), got \(JSON.quote(s.strategy.rawValue))")
                }
            }
            if let v = f["extra-latent"] {
                let j = try integer(v, f.at("extra-latent"), min: 1)
                if case let .simulated(sim) = data.source, j >= sim.dimension {
                    throw fail(f.at("extra-latent"), "must be below D = \(sim.dimension) (σ² free needs a discarded eigenvalue), got \(j)")
                }
                s.extraLatent = j
            }
            if let v = f["iterations"] { s.iterations = try integer(v, f.at("iterations"), min: 1) }
            if let v = f["tolerance"] { s.tolerance = try positive(v, f.at("tolerance")) }
            settings = .collapse(s)
        }
        if case .iwaeBound = settings, data.latent < 2 {
            throw fail("\(top.at("data")).latent", "must be at least 2 for kind \"iwae-bound\" (it rotates two latents)")
        }
        var spec = ExperimentSpec(name: name, title: title, description: description, order: order, data: data, seeds: seeds,
                                  runs: [], path: file)
        spec.study = settings
        return spec
    }

    /// A non-empty array of distinct integers ≥ `min`, in increasing order.
    func integers(_ v: SpecValue, _ field: String, min: Int) throws -> [Int] {
        let xs = try array(v, field).enumerated().map { try integer($0.element, "\(field)[\($0.offset)]", min: min) }
        for i in xs.indices.dropFirst() where xs[i] <= xs[i - 1] {
            throw fail("\(field)[\(i)]", "must be larger than the value before it (\(xs[i - 1])): give the values in increasing order")
        }
        return xs
    }
}
