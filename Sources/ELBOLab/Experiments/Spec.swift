import Foundation

/// One experiment, read from a JSON spec in `experiments/` (the format is documented in
/// `experiments/README.md`).
///
/// A spec names the data (simulated from the model, or a CSV file), the runs (a label, a
/// strategy and any ``/ELBOLabEngines/FitOptions`` field under its CLI name), the seeds every run is repeated
/// over, the log schedule and the stop rule. Two special kinds add a study to the curves:
/// `gradient-variance` (the variance of Monte Carlo gradient estimators at a fixed (θ, q)) and
/// `scaling` (every run repeated at several data sizes N).
public struct ExperimentSpec: Sendable {
    /// What the experiment measures besides the curves of its runs.
    public enum Kind: String, Sendable, CaseIterable {
        /// Runs × seeds, scored on a schedule.
        case curves
        /// The curves, plus the variance of the gradient estimators at a fixed (θ, q).
        case gradientVariance = "gradient-variance"
        /// The curves at each data size in ``ExperimentSpec/counts``.
        case scaling
    }

    /// The experiment's name: the results folder is `results/<name>`.
    public var name: String
    /// A one-line title for the report.
    public var title: String
    /// What the experiment shows, for the report.
    public var description: String
    public var kind: Kind
    /// Where `run-all` places it (lower first; ties by name).
    public var order: Int
    public var data: DataSpec
    /// Each run is repeated with each of these seeds (initial θ, encoder, Monte Carlo draws).
    public var seeds: [UInt64]
    public var runs: [RunSpec]
    /// Scaling: the data sizes N.
    public var counts: [Int]
    /// Gradient variance: the study's settings.
    public var variance: VarianceSpec?
    /// The name of the setting this experiment stands for in `results/overview` (nil: not shown there).
    public var overview: String? = nil
    /// The file the spec was read from, for messages.
    public var path: String
    /// The bytes the spec was parsed from (written beside the results as `spec.json`); nil for a
    /// spec built in code.
    public var text: Data? = nil
    /// A study kind's settings (``StudyKind``): the experiment is that study, with no runs.
    public var study: StudySettings? = nil

    public init(name: String, title: String = "", description: String = "", kind: Kind = .curves, order: Int = 0,
                data: DataSpec, seeds: [UInt64], runs: [RunSpec], counts: [Int] = [], variance: VarianceSpec? = nil,
                path: String = "spec") {
        self.name = name
        self.title = title
        self.description = description
        self.kind = kind
        self.order = order
        self.data = data
        self.seeds = seeds
        self.runs = runs
        self.counts = counts
        self.variance = variance
        self.path = path
    }
}

/// Where an experiment's data come from.
public struct DataSpec: Sendable {
    /// A simulation from the model, or a CSV file.
    public enum Source: Sendable {
        case simulated(SimulationSpec)
        /// A numeric CSV file (resolved against the spec's folder when relative).
        case csv(String)
    }

    public var source: Source
    /// The latent dimension J the runs fit unless a run sets `latent`.
    public var latent: Int
    /// A CSV source's delimiter (nil: detected) and columns (nil: all), as `--delimiter` and `--columns`.
    public var delimiter: UInt8? = nil
    public var columns: [CSVColumn]? = nil

    public init(source: Source, latent: Int) {
        self.source = source
        self.latent = latent
    }

    /// The true parameters, when the data are simulated.
    public var truth: LinearGaussianModel? {
        if case let .simulated(s) = source { return s.model }
        return nil
    }

    /// A one-line description for reports.
    public var summary: String {
        switch source {
        case let .simulated(s):
            var text = "simulated from the model: D = \(s.dimension), J = \(s.latent), s2 = \(formatNumber(s.noiseVariance)), data seed \(s.seed)"
            if s.loadings != nil { text += ", W given" }
            if s.offset != nil { text += ", b given" } else if s.zeroOffset { text += ", b = 0" }
            return text
        case let .csv(path):
            return "the CSV file \(path)"
        }
    }

    /// Loads or simulates the data (`count` points when simulated; nil uses the spec's count).
    public func dataset(count: Int? = nil, name: String, memory: MemoryBudget = .machine) throws -> Dataset {
        switch source {
        case let .simulated(s):
            return s.dataset(count: count ?? s.count, name: name)
        case let .csv(path):
            return try Dataset.load(csv: path, options: CSVOptions(delimiter: delimiter, columns: columns, memory: memory)).data
        }
    }
}

/// Data drawn from the model: `z ~ N(0, I_J)`, `y = W z + b + noise`, with W and b given or
/// drawn N(0, 1) entries exactly as `elbolab simulate` draws them (the same seed gives the
/// same data).
public struct SimulationSpec: Sendable {
    public var dimension: Int
    public var latent: Int
    /// N (0 for scaling experiments, whose sizes come from ``ExperimentSpec/counts``).
    public var count: Int
    public var noiseVariance: Double
    public var seed: UInt64
    public var zeroOffset: Bool
    /// The true W (`D × J`), when given; otherwise drawn.
    public var loadings: Matrix?
    /// The true b, when given; otherwise drawn (or 0 with ``zeroOffset``).
    public var offset: [Double]?

    public init(dimension: Int, latent: Int, count: Int, noiseVariance: Double, seed: UInt64 = 1,
                zeroOffset: Bool = false, loadings: Matrix? = nil, offset: [Double]? = nil) {
        self.dimension = dimension
        self.latent = latent
        self.count = count
        self.noiseVariance = noiseVariance
        self.seed = seed
        self.zeroOffset = zeroOffset
        self.loadings = loadings
        self.offset = offset
    }

    /// The true parameters (the first draws of the data seed's stream when not given).
    public var model: LinearGaussianModel {
        modelAndStream().0
    }

    private func modelAndStream() -> (LinearGaussianModel, RandomSource) {
        let rng = RandomSource(seed: seed)
        var m = LinearGaussianModel.random(dimension: dimension, latent: latent, noiseVariance: noiseVariance,
                                           zeroOffset: zeroOffset, using: rng)
        if let loadings { m.loadings = loadings }
        if let offset { m.offset = offset }
        return (m, rng)
    }

    /// `count` points from the model.
    public func dataset(count: Int, name: String) -> Dataset {
        let (m, rng) = modelAndStream()
        return Dataset(points: m.sample(count: count, using: rng), name: name)
    }
}

/// One run of an experiment: a label and the fit settings (the seed is set per job).
public struct RunSpec: Sendable {
    /// The run's name in every table and plot (unique within the spec).
    public var label: String
    public var options: FitOptions
    /// The options the spec set explicitly (CLI names and values), for reports.
    public var settings: [(String, String)]

    public init(label: String, options: FitOptions, settings: [(String, String)] = []) {
        self.label = label
        self.options = options
        self.settings = settings
    }
}

/// The gradient-variance study: at a fixed (θ, q), taken after `warmupIterations` steps of the
/// `warmup` strategy, the variance over `repeats` independent estimates of the ELBO gradient,
/// for each estimator, KL estimator and number of samples K.
public struct VarianceSpec: Sendable {
    /// The strategy that produces the fixed (θ, q) (amortized or joint, or per-datapoint with a diagonal q).
    public var warmup: FitOptions
    /// Steps of the warm-up strategy before (θ, q) is frozen.
    public var warmupIterations: Int
    /// Numbers of Monte Carlo samples K.
    public var samples: [Int]
    public var estimators: [GradientEstimator]
    public var kl: [KLEstimator]
    /// Independent estimates per setting.
    public var repeats: Int
    /// The first this many points form the batch (nil: all of them).
    public var points: Int?
    /// More points along training at which (θ, q) is frozen and measured again (warm-up
    /// iterations, ascending); the study then has one stage per point.
    public var laterStages: [Int] = []
    /// Also measure the score-function estimator without its leave-one-out baseline.
    public var noBaseline = false

    /// Every stage's warm-up iterations, ascending.
    public var stages: [Int] { Array(Set([warmupIterations] + laterStages)).sorted() }

    public init(warmup: FitOptions, warmupIterations: Int, samples: [Int], estimators: [GradientEstimator],
                kl: [KLEstimator], repeats: Int, points: Int? = nil) {
        self.warmup = warmup
        self.warmupIterations = warmupIterations
        self.samples = samples
        self.estimators = estimators
        self.kl = kl
        self.repeats = repeats
        self.points = points
    }
}

// MARK: - Loading

extension ExperimentSpec {
    /// Reads and checks the spec at `path`.
    ///
    /// - Throws: ``/ELBOLabNumerics/InputError`` naming the file and the field, e.g.
    ///   `experiments/ppca.json: runs[2].strategy: unknown strategy "vae" (expected one of mle, em, per-datapoint, amortized, joint)`.
    public static func load(path: String) throws -> ExperimentSpec {
        try parse(try readFile(path, what: "spec file"), path: path)
    }

    /// Parses spec JSON; `path` names the file in messages and anchors relative CSV paths.
    public static func parse(_ bytes: Data, path: String) throws -> ExperimentSpec {
        let value = try StrictJSON.parse(bytes, path: path)
        var spec = try SpecReader(file: path).spec(value)
        spec.text = bytes
        return spec
    }
}

/// Walks a spec's JSON, turning every problem into an ``InputError`` naming the file and field.
struct SpecReader {
    let file: String

    /// The keys a run (and `defaults`) may set: the options of ``FitOptionTable``.
    static var runOptionKeys: [String] { FitOptionTable.names }
    static let stopKeys = ["tolerance", "max-seconds", "iterations", "window"]
    static let topKeys = ["name", "title", "description", "kind", "order", "data", "seeds", "log-every", "stop",
                          "defaults", "runs", "counts", "variance", "overview", "study"]
    static let dataKeys = ["csv", "delimiter", "columns", "dim", "latent", "count", "noise-variance", "seed", "no-offset", "loadings", "offset"]
    static let varianceKeys = ["warmup", "samples", "estimators", "kl", "repeats", "points", "no-baseline"]

    func fail(_ field: String, _ message: String) -> InputError {
        // A field's path is made of the spec's own keys: escaped, so that the message stays one line.
        InputError(field.isEmpty ? "\(file): \(message)" : "\(file): \(JSON.escaped(field)): \(message)")
    }

    /// The object at `field` with keys normalised to kebab-case (`e_solver` → `e-solver`),
    /// checked against `allowed`.
    func object(_ value: SpecValue, _ field: String, allowed: [String], hint: String? = nil) throws -> Fields {
        guard case let .object(raw) = value else {
            throw fail(field, "expected an object, got \(value.shown)")
        }
        var fields = Fields(path: field)
        for key in raw.keys.sorted() {
            let normal = key.replacingOccurrences(of: "_", with: "-")
            let where_ = field.isEmpty ? key : "\(field).\(key)"
            if let other = fields.spelling[normal] {
                throw fail(where_, "repeats \(JSON.quote(other)) (snake_case and kebab-case name the same key)")
            }
            guard allowed.contains(normal) else {
                var message = "unknown key \(JSON.quote(key))"
                if let hint { message += " (\(hint))" } else { message += " (expected one of \(allowed.joined(separator: ", ")))" }
                throw fail(where_, message)
            }
            fields.spelling[normal] = key
            fields.values[normal] = raw[key]
        }
        return fields
    }

    struct Fields {
        let path: String
        var values: [String: SpecValue] = [:]
        var spelling: [String: String] = [:]

        init(path: String) { self.path = path }

        /// The path of `key` as the user spelled it.
        func at(_ key: String) -> String {
            let k = spelling[key] ?? key
            return path.isEmpty ? k : "\(path).\(k)"
        }

        /// The value of `key`, treating JSON null as absent.
        subscript(key: String) -> SpecValue? {
            if case .null? = values[key] { return nil }
            return values[key]
        }
    }

    func required(_ f: Fields, _ key: String, _ what: String) throws -> SpecValue {
        guard let v = f[key] else { throw fail(f.at(key), "is missing (\(what))") }
        return v
    }

    func string(_ v: SpecValue, _ field: String) throws -> String {
        guard case let .string(s) = v else { throw fail(field, "expected a string, got \(v.shown)") }
        return s
    }

    func number(_ v: SpecValue, _ field: String) throws -> Double {
        guard case let .number(x) = v, x.isFinite else { throw fail(field, "expected a number, got \(v.shown)") }
        return x
    }

    func positive(_ v: SpecValue, _ field: String) throws -> Double {
        let x = try number(v, field)
        guard x > 0 else { throw fail(field, "must be positive, got \(formatNumber(x))") }
        return x
    }

    func nonNegative(_ v: SpecValue, _ field: String) throws -> Double {
        let x = try number(v, field)
        guard x >= 0 else { throw fail(field, "must be non-negative, got \(formatNumber(x))") }
        return x
    }

    func integer(_ v: SpecValue, _ field: String, min: Int) throws -> Int {
        guard case let .number(x) = v, x.isFinite, x == x.rounded(), abs(x) < 9e15 else {
            throw fail(field, "expected an integer, got \(v.shown)")
        }
        guard Int(x) >= min else { throw fail(field, "must be at least \(min), got \(Int(x))") }
        return Int(x)
    }

    func bool(_ v: SpecValue, _ field: String) throws -> Bool {
        guard case let .bool(b) = v else { throw fail(field, "expected true or false, got \(v.shown)") }
        return b
    }

    func array(_ v: SpecValue, _ field: String, nonEmpty: Bool = true) throws -> [SpecValue] {
        guard case let .array(a) = v else { throw fail(field, "expected an array, got \(v.shown)") }
        if nonEmpty && a.isEmpty { throw fail(field, "must not be empty") }
        return a
    }

    func choice<E: RawRepresentable & CaseIterable>(_ v: SpecValue, _ field: String, _ what: String, _: E.Type) throws -> E
    where E.RawValue == String {
        let s = try string(v, field)
        guard let e = E(rawValue: s) else {
            throw fail(field, "unknown \(what) \(JSON.quote(s)) (expected one of \(E.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return e
    }

    // MARK: The spec

    func spec(_ value: SpecValue) throws -> ExperimentSpec {
        let top = try object(value, "", allowed: Self.topKeys)
        let name = try string(try required(top, "name", "the experiment's name, used for its results folder"), top.at("name"))
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }),
              name.first != "." else {
            throw fail(top.at("name"), "\(JSON.quote(name)) must be a non-empty folder name of letters, digits, '-', '_' and '.'")
        }
        let title = try top["title"].map { try string($0, top.at("title")) } ?? name
        let description = try top["description"].map { try string($0, top.at("description")) } ?? ""
        if let study = try studySpec(top, name: name, title: title, description: description) { return study }
        let kind = try top["kind"].map { try choice($0, top.at("kind"), "kind", ExperimentSpec.Kind.self) } ?? .curves
        let order = try top["order"].map { try integer($0, top.at("order"), min: Int.min / 2) } ?? 0

        let seedValues = try array(try required(top, "seeds", "an array of seeds, e.g. [1, 2, 3]"), top.at("seeds"))
        var seeds: [UInt64] = []
        for (i, s) in seedValues.enumerated() {
            let seed = UInt64(try integer(s, "\(top.at("seeds"))[\(i)]", min: 0))
            if seeds.contains(seed) { throw fail("\(top.at("seeds"))[\(i)]", "repeats the seed \(seed)") }
            seeds.append(seed)
        }

        var counts: [Int] = []
        if let c = top["counts"] {
            guard kind == .scaling else { throw fail(top.at("counts"), "is only used by kind \"scaling\"") }
            for (i, v) in try array(c, top.at("counts")).enumerated() {
                counts.append(try integer(v, "\(top.at("counts"))[\(i)]", min: 2))
            }
        } else if kind == .scaling {
            throw fail(top.at("counts"), "is missing (kind \"scaling\" needs the data sizes, e.g. [1000, 10000])")
        }
        let data = try dataSpec(try required(top, "data", "a simulation {dim, latent, count, noise-variance, seed} or {\"csv\": path, \"latent\": J}"),
                                top.at("data"), needsCount: kind != .scaling)

        // Inherited settings: the stop rule and log schedule, then `defaults`; each run's own keys
        // come last. Inherited settings apply to the runs they fit (a learning rate in `defaults`
        // does not reach an em run); a run's own keys must apply to it.
        var inherited = Fields(path: "")
        if let stop = top["stop"] {
            inherited.merge(try object(stop, top.at("stop"), allowed: Self.stopKeys))
        }
        if let v = top["log-every"] {
            inherited.merge(Fields(path: "", values: ["log-every": v], spelling: ["log-every": top.spelling["log-every"] ?? "log-every"]))
        }
        if let d = top["defaults"] {
            inherited.merge(try object(d, top.at("defaults"), allowed: Self.runOptionKeys,
                                       hint: "defaults take the run options: \(Self.runOptionKeys.joined(separator: ", "))"))
        }
        let base = FitOptions(strategy: .em, latent: data.latent)

        let runValues = try array(try required(top, "runs", "an array of runs, each with a label and a strategy"), top.at("runs"))
        var runs: [RunSpec] = []
        for (i, r) in runValues.enumerated() {
            let field = "\(top.at("runs"))[\(i)]"
            let run = try runSpec(r, field, base: base, inherited: inherited)
            if runs.contains(where: { $0.label == run.label }) {
                throw fail("\(field).label", "repeats the label \(JSON.quote(run.label)) (labels name the runs in tables and plots)")
            }
            runs.append(run)
        }

        var variance: VarianceSpec? = nil
        if let v = top["variance"] {
            guard kind == .gradientVariance else { throw fail(top.at("variance"), "is only used by kind \"gradient-variance\"") }
            variance = try varianceSpec(v, top.at("variance"), base: base, inherited: inherited)
        } else if kind == .gradientVariance {
            throw fail(top.at("variance"), "is missing (kind \"gradient-variance\" needs the study's settings)")
        }

        var spec = ExperimentSpec(name: name, title: title, description: description, kind: kind, order: order,
                                  data: data, seeds: seeds, runs: runs, counts: counts, variance: variance, path: file)
        spec.overview = try top["overview"].map { try string($0, top.at("overview")) }
        return spec
    }

    func dataSpec(_ value: SpecValue, _ field: String, needsCount: Bool) throws -> DataSpec {
        let f = try object(value, field, allowed: Self.dataKeys)
        if let csv = f["csv"] {
            var path = try string(csv, f.at("csv"))
            for key in ["dim", "count", "noise-variance", "seed", "no-offset", "loadings", "offset"] where f[key] != nil {
                throw fail(f.at(key), "is for simulated data; a CSV file brings its own points")
            }
            let latent = try integer(try required(f, "latent", "the latent dimension J to fit"), f.at("latent"), min: 1)
            if !path.hasPrefix("/") {
                let folder = URL(fileURLWithPath: file).deletingLastPathComponent().path
                path = folder + "/" + path
            }
            var spec = DataSpec(source: .csv(path), latent: latent)
            do {
                spec.delimiter = try f["delimiter"].map { try CSVOptions.delimiter(named: try string($0, f.at("delimiter"))) }
                // "columns": "2-" as on the command line, or a list of names and 1-based numbers.
                spec.columns = try f["columns"].map { v -> [CSVColumn] in
                    if case let .string(text) = v { return try CSVColumn.list(text) }
                    return try array(v, f.at("columns")).enumerated().map { k, item in
                        if case let .string(name) = item { return .name(name) }
                        return .index(try integer(item, "\(f.at("columns"))[\(k)]", min: 1))
                    }
                }
            } catch let error as InputError where !error.message.hasPrefix(file) {
                throw fail(f.at(error.message.hasPrefix("--delimiter") ? "delimiter" : "columns"), error.message)
            }
            return spec
        }
        for key in ["delimiter", "columns"] where f[key] != nil {
            throw fail(f.at(key), "is for CSV data (\"csv\": path); simulated data have no file to read")
        }
        var loadings: Matrix? = nil
        if let w = f["loadings"] {
            var rows: [[Double]] = []
            for (i, r) in try array(w, f.at("loadings")).enumerated() {
                let rowField = "\(f.at("loadings"))[\(i)]"
                let row = try array(r, rowField).enumerated().map { try number($0.element, "\(rowField)[\($0.offset)]") }
                if let first = rows.first, first.count != row.count {
                    throw fail(rowField, "has \(row.count) entries, row 0 has \(first.count) (W is D rows of J numbers)")
                }
                rows.append(row)
            }
            loadings = Matrix(rows)
        }
        let dim: Int
        if let d = f["dim"] {
            dim = try integer(d, f.at("dim"), min: 1)
            if let w = loadings, w.rows != dim { throw fail(f.at("dim"), "is \(dim) but loadings has \(w.rows) rows") }
        } else if let w = loadings {
            dim = w.rows
        } else {
            throw fail(f.at("dim"), "is missing (the observation dimension D, or give loadings)")
        }
        let latent: Int
        if let j = f["latent"] {
            latent = try integer(j, f.at("latent"), min: 1)
            if let w = loadings, w.cols != latent { throw fail(f.at("latent"), "is \(latent) but loadings has \(w.cols) columns") }
        } else if let w = loadings {
            latent = w.cols
        } else {
            throw fail(f.at("latent"), "is missing (the latent dimension J, or give loadings)")
        }
        var offset: [Double]? = nil
        if let b = f["offset"] {
            let values = try array(b, f.at("offset")).enumerated().map { try number($0.element, "\(f.at("offset"))[\($0.offset)]") }
            guard values.count == dim else { throw fail(f.at("offset"), "has \(values.count) entries but D = \(dim)") }
            offset = values
        }
        let s2 = try positive(try required(f, "noise-variance", "the true noise variance s2"), f.at("noise-variance"))
        var count = 0
        if let c = f["count"] {
            guard needsCount else { throw fail(f.at("count"), "is not used by kind \"scaling\": give the sizes in \"counts\"") }
            count = try integer(c, f.at("count"), min: 2)
        } else if needsCount {
            throw fail(f.at("count"), "is missing (the number of points N)")
        }
        let seed = UInt64(try f["seed"].map { try integer($0, f.at("seed"), min: 0) } ?? 1)
        let zeroOffset = try f["no-offset"].map { try bool($0, f.at("no-offset")) } ?? false
        if zeroOffset, let offset, offset.contains(where: { $0 != 0 }) {
            throw fail(f.at("offset"), "is not zero but no-offset is true")
        }
        let sim = SimulationSpec(dimension: dim, latent: latent, count: count, noiseVariance: s2, seed: seed,
                                 zeroOffset: zeroOffset, loadings: loadings, offset: offset)
        return DataSpec(source: .simulated(sim), latent: latent)
    }

    func runSpec(_ value: SpecValue, _ field: String, base: FitOptions, inherited: Fields) throws -> RunSpec {
        var keys = ["label", "strategy"] + Self.runOptionKeys
        if case let .object(raw) = value, raw["seed"] != nil {
            throw fail("\(field).seed", "seeds are set for the whole experiment, in \"seeds\"")
        }
        keys.sort()
        let f = try object(value, field, allowed: keys,
                           hint: "a run takes label, strategy and the options \(Self.runOptionKeys.joined(separator: ", "))")
        let label = try string(try required(f, "label", "the run's name in tables and plots"), f.at("label"))
        guard !label.isEmpty, !label.contains(where: { $0.isNewline }) else {
            throw fail(f.at("label"), "must be a non-empty single line")
        }
        let strategy = try choice(try required(f, "strategy", "one of \(Strategy.allCases.map(\.rawValue).joined(separator: ", "))"),
                                  f.at("strategy"), "strategy", Strategy.self)
        var start = base
        start.strategy = strategy
        let (options, settings) = try options(start, inherited: inherited, own: f.removing("label").removing("strategy"), field: field)
        return RunSpec(label: label, options: options, settings: settings)
    }

    /// `start` with the `inherited` settings that apply to the run and its `own` settings, all
    /// checked as `fit` checks its flags.
    func options(_ start: FitOptions, inherited: Fields, own: Fields, field: String) throws -> (FitOptions, [(String, String)]) {
        var trial = start, ignored: [(String, String)] = []
        try applyOptions(inherited, to: &trial, settings: &ignored)
        try applyOptions(own, to: &trial, settings: &ignored)
        var kept = inherited
        for key in inherited.values.keys where own.values[key] == nil {
            if let entry = FitOptionTable.entry(key), !entry.scope.contains(trial) { kept.values[key] = nil }
        }
        var options = start, settings: [(String, String)] = []
        try applyOptions(kept, to: &options, settings: &settings)
        try applyOptions(own, to: &options, settings: &settings)
        let given = Set(kept.values.keys).union(own.values.keys).filter { key in
            if case .null? = kept.values[key] ?? own.values[key] { return false }
            return true
        }
        do { try options.validate(given: given) } catch let error as InputError { throw fail(field, error.message) }
        return (options, settings)
    }

    func varianceSpec(_ value: SpecValue, _ field: String, base: FitOptions, inherited: Fields) throws -> VarianceSpec {
        let f = try object(value, field, allowed: Self.varianceKeys)
        let w = try object(try required(f, "warmup", "the run that produces (θ, q): a strategy, its options and iterations"),
                           f.at("warmup"), allowed: (["strategy"] + Self.runOptionKeys).sorted())
        let strategy = try choice(try required(w, "strategy", "amortized, joint or per-datapoint"), w.at("strategy"), "strategy", Strategy.self)
        guard strategy == .amortized || strategy == .joint || strategy == .perDatapoint else {
            throw fail(w.at("strategy"), "must be amortized, joint or per-datapoint (a strategy with a mean-field q), got \(JSON.quote(strategy.rawValue))")
        }
        // One number, or the points along training (ascending) at which (θ, q) is frozen.
        let iterationValue = try required(w, "iterations", "warm-up steps before (θ, q) is frozen, or an array of them")
        let stageList: [Int]
        if case let .array(items) = iterationValue {
            stageList = try items.enumerated().map { try integer($0.element, "\(w.at("iterations"))[\($0.offset)]", min: 0) }
            guard !stageList.isEmpty else { throw fail(w.at("iterations"), "must not be empty") }
        } else {
            stageList = [try integer(iterationValue, w.at("iterations"), min: 0)]
        }
        let iterations = stageList.min() ?? 0
        var start = base
        start.strategy = strategy
        let (warmup, _) = try options(start, inherited: inherited, own: w.removing("strategy").removing("iterations"), field: w.path)
        if warmup.covariance == .full { throw fail(w.at("covariance"), "must be diagonal: the estimators are for a mean-field q") }
        let samples = try array(try required(f, "samples", "numbers of samples K, e.g. [1, 10, 100]"), f.at("samples"))
            .enumerated().map { try integer($0.element, "\(f.at("samples"))[\($0.offset)]", min: 1) }
        let estimators = try f["estimators"].map {
            try array($0, f.at("estimators")).enumerated().map {
                try choice($0.element, "\(f.at("estimators"))[\($0.offset)]", "estimator", GradientEstimator.self)
            }
        } ?? [.reparam, .score]
        if let i = estimators.firstIndex(of: .exact) {
            throw fail("\(f.at("estimators"))[\(i)]", "\"exact\" has no variance; it is the reference every estimate is compared with")
        }
        let kl = try f["kl"].map {
            try array($0, f.at("kl")).enumerated().map { try choice($0.element, "\(f.at("kl"))[\($0.offset)]", "kl", KLEstimator.self) }
        } ?? [.analytic, .mc]
        let repeats = try f["repeats"].map { try integer($0, f.at("repeats"), min: 2) } ?? 100
        let points = try f["points"].map { try integer($0, f.at("points"), min: 1) }
        var study = VarianceSpec(warmup: warmup, warmupIterations: iterations, samples: samples, estimators: estimators,
                                 kl: kl, repeats: repeats, points: points)
        study.laterStages = stageList.filter { $0 > iterations }
        study.noBaseline = try f["no-baseline"].map { try bool($0, f.at("no-baseline")) } ?? false
        return study
    }

    /// Applies every run-option key in `f` to `options`, recording what was set.
    func applyOptions(_ f: Fields, to o: inout FitOptions, settings: inout [(String, String)]) throws {
        for key in f.values.keys.sorted() {
            let field = f.at(key)
            guard let entry = FitOptionTable.entry(key) else { throw fail(field, "unknown option \(JSON.quote(key))") }
            settings.removeAll { $0.0 == key }
            guard let v = f[key] else {
                // JSON null restores the default of an optional setting.
                guard let reset = entry.reset else { throw fail(field, "cannot be null") }
                reset(&o)
                continue
            }
            if key == "theta" {
                // A params.json path is relative to the spec's folder.
                o.theta = try heldTheta(v, field)
            } else {
                do { try entry.apply(.json(v), &o) } catch let problem as OptionProblem { throw fail(field, problem.message) }
            }
            if case let .string(s) = v { settings.append((key, s)) } else { settings.append((key, v.shown)) }
        }
    }
}

extension SpecReader {
    /// A run's `theta`: "mle" (the closed-form MLE of the run's data), or a params.json path
    /// (relative to the spec's folder) whose parameters are held.
    func heldTheta(_ v: SpecValue, _ field: String) throws -> HeldTheta {
        let s = try string(v, field)
        if s == "mle" { return .mle }
        let path = s.hasPrefix("/") ? s : URL(fileURLWithPath: file).deletingLastPathComponent().path + "/" + s
        do { return .fixed(try ParamsFile.read(path: path)) } catch let e as InputError {
            throw fail(field, "expected \"mle\" or a params.json path: \(e.message)")
        }
    }
}

extension SpecReader.Fields {
    init(path: String, values: [String: SpecValue], spelling: [String: String]) {
        self.init(path: path)
        self.values = values
        self.spelling = spelling
    }

    /// Adds `other`'s keys, replacing any already here; a key keeps its own field path.
    mutating func merge(_ other: SpecReader.Fields) {
        for (key, value) in other.values {
            values[key] = value
            spelling[key] = other.at(key)
        }
    }

    func removing(_ key: String) -> SpecReader.Fields {
        var copy = self
        copy.values[key] = nil
        return copy
    }
}
