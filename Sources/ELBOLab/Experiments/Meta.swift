import Foundation

/// What the report needs to know about an experiment besides its CSV files: `meta.json`.
public struct ExperimentMeta: Sendable, Equatable {
    /// One run as the report lists it (for scaling, one per run × N).
    public struct Run: Sendable, Equatable {
        public var label: String
        public var strategy: String
        /// The spec's explicit settings, `key value`, for the report.
        public var settings: [String]
        /// The run's label in the spec (scaling runs are `<base> N=<n>`).
        public var base: String
        /// Number of points N.
        public var count: Int

        public init(label: String, strategy: String, settings: [String], base: String, count: Int) {
            self.label = label
            self.strategy = strategy
            self.settings = settings
            self.base = base
            self.count = count
        }
    }

    public var experiment: String
    public var title: String
    public var description: String
    public var kind: ExperimentSpec.Kind
    /// The spec file.
    public var spec: String
    /// A one-line description of the data.
    public var data: String
    /// Whether the true θ is known (simulated data), so recovery can be reported.
    public var truthKnown: Bool
    public var seeds: [UInt64]
    public var runs: [Run]
    /// Gradient variance: a one-line description of the fixed (θ, q).
    public var varianceNote: String
    /// Wall-clock seconds the whole experiment took (training, scoring and writing).
    public var wallSeconds: Double
    /// The setting this experiment stands for in `results/overview` ("" when not shown there).
    public var overview: String = ""

    public init(experiment: String, title: String, description: String, kind: ExperimentSpec.Kind, spec: String,
                data: String, truthKnown: Bool, seeds: [UInt64], runs: [Run], varianceNote: String = "", wallSeconds: Double = 0) {
        self.experiment = experiment
        self.title = title
        self.description = description
        self.kind = kind
        self.spec = spec
        self.data = data
        self.truthKnown = truthKnown
        self.seeds = seeds
        self.runs = runs
        self.varianceNote = varianceNote
        self.wallSeconds = wallSeconds
    }

    /// The JSON of `meta.json`.
    public var json: JSON {
        .object([
            ("experiment", .string(experiment)),
            ("title", .string(title)),
            ("description", .string(description)),
            ("kind", .string(kind.rawValue)),
            ("spec", .string(spec)),
            ("data", .string(data)),
            ("truth_known", .bool(truthKnown)),
            ("seeds", .array(seeds.map { .number(Double($0)) })),
            ("runs", .array(runs.map { r in
                .object([("label", .string(r.label)), ("strategy", .string(r.strategy)),
                         ("settings", .array(r.settings.map { .string($0) })), ("base", .string(r.base)),
                         ("n", .number(Double(r.count)))])
            })),
            ("variance_note", .string(varianceNote)),
            ("wall_seconds", .number(wallSeconds)),
            ("overview", .string(overview)),
        ])
    }

    /// Reads `meta.json` at `path`. - Throws: ``/ELBOLabNumerics/InputError`` naming the file and field.
    public static func read(path: String) throws -> ExperimentMeta {
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw InputError("\(path): cannot read it (is this a results folder written by `elbolab run`?)")
        }
        let value = try StrictJSON.parse(bytes, path: path)
        let r = SpecReader(file: path)
        let f = try r.object(value, "", allowed: ["experiment", "title", "description", "kind", "spec", "data", "truth-known",
                                                 "seeds", "runs", "variance-note", "wall-seconds", "overview"])
        func text(_ key: String) throws -> String { try f[key].map { try r.string($0, f.at(key)) } ?? "" }
        let experiment = try r.string(try r.required(f, "experiment", "the experiment's name"), f.at("experiment"))
        let kind = try f["kind"].map { try r.choice($0, f.at("kind"), "kind", ExperimentSpec.Kind.self) } ?? .curves
        let seeds = try f["seeds"].map { try r.array($0, f.at("seeds"), nonEmpty: false).enumerated().map {
            UInt64(try r.integer($0.element, "\(f.at("seeds"))[\($0.offset)]", min: 0))
        } } ?? []
        var runs: [Run] = []
        for (i, v) in try r.array(try r.required(f, "runs", "the runs"), f.at("runs")).enumerated() {
            let rf = try r.object(v, "\(f.at("runs"))[\(i)]", allowed: ["label", "strategy", "settings", "base", "n"])
            let label = try r.string(try r.required(rf, "label", "the run's label"), rf.at("label"))
            let settings = try rf["settings"].map { try r.array($0, rf.at("settings"), nonEmpty: false).map { try r.string($0, rf.at("settings")) } } ?? []
            runs.append(Run(label: label, strategy: try rf["strategy"].map { try r.string($0, rf.at("strategy")) } ?? "",
                            settings: settings, base: try rf["base"].map { try r.string($0, rf.at("base")) } ?? label,
                            count: try rf["n"].map { try r.integer($0, rf.at("n"), min: 0) } ?? 0))
        }
        var meta = ExperimentMeta(experiment: experiment, title: try text("title"), description: try text("description"), kind: kind,
                              spec: try text("spec"), data: try text("data"),
                              truthKnown: try f["truth-known"].map { try r.bool($0, f.at("truth-known")) } ?? false,
                              seeds: seeds, runs: runs, varianceNote: try text("variance-note"),
                              wallSeconds: try f["wall-seconds"].map { try r.number($0, f.at("wall-seconds")) } ?? 0)
        meta.overview = try text("overview")
        return meta
    }
}
