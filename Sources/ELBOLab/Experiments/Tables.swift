import Foundation

/// A CSV table with a header and text fields: what the experiment runner writes and what the
/// report (summary and plots) is rebuilt from.
///
/// Fields holding a comma, a quote or a line break are quoted (RFC 4180); numbers are written in
/// their shortest exact form (``/ELBOLabNumerics/formatNumber(_:)``), so reading a table back gives the same values.
public struct CSVTable: Sendable {
    public var header: [String]
    public var rows: [[String]]
    /// Where the table came from, for messages.
    public var name: String

    public init(header: [String], rows: [[String]] = [], name: String = "table") {
        self.header = header
        self.rows = rows
        self.name = name
    }

    /// The CSV text.
    public var text: String {
        var out = CSVTable.line(header)
        for r in rows { out += CSVTable.line(r) }
        return out
    }

    static func line(_ fields: [String]) -> String {
        fields.map { f in
            f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
                ? "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : f
        }.joined(separator: ",") + "\n"
    }

    /// Reads the table at `path`. - Throws: ``/ELBOLabNumerics/InputError`` naming the file and line.
    public static func read(path: String) throws -> CSVTable {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InputError("\(path): cannot read the file")
        }
        return try parse(String(decoding: data, as: UTF8.self), name: path)
    }

    /// Parses CSV text whose first record is the header.
    public static func parse(_ text: String, name: String) throws -> CSVTable {
        var records: [[String]] = []
        var field = ""
        var record: [String] = []
        var quoted = false
        var afterQuote = false
        var line = 1
        var iterator = text.unicodeScalars.makeIterator()
        var pending: Unicode.Scalar? = nil
        func next() -> Unicode.Scalar? {
            if let p = pending { pending = nil; return p }
            return iterator.next()
        }
        while let c = next() {
            if quoted {
                if c == "\"" {
                    if let n = next() {
                        if n == "\"" { field.unicodeScalars.append("\"") } else { quoted = false; afterQuote = true; pending = n }
                    } else { quoted = false; afterQuote = true }
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case ",":
                record.append(field); field = ""; afterQuote = false
            case "\n":
                record.append(field); field = ""; afterQuote = false
                records.append(record); record = []
                line += 1
            case "\r":
                continue
            case "\"":
                guard field.isEmpty && !afterQuote else {
                    throw InputError("\(name):\(line): a quote in the middle of a field")
                }
                quoted = true
            default:
                if afterQuote { throw InputError("\(name):\(line): text after a closing quote") }
                field.unicodeScalars.append(c)
            }
        }
        if quoted { throw InputError("\(name):\(line): a quoted field is not closed") }
        if !field.isEmpty || !record.isEmpty { record.append(field); records.append(record) }
        guard let header = records.first else { throw InputError("\(name): is empty (expected a header line)") }
        let body = Array(records.dropFirst())
        for (i, r) in body.enumerated() where r.count != header.count {
            throw InputError("\(name):\(i + 2): has \(r.count) fields, the header has \(header.count)")
        }
        return CSVTable(header: header, rows: body, name: name)
    }

    /// The index of column `name`. - Throws: ``/ELBOLabNumerics/InputError`` when it is missing.
    public func column(_ column: String) throws -> Int {
        guard let i = header.firstIndex(of: column) else {
            throw InputError("\(name): has no column \"\(column)\" (columns: \(header.joined(separator: ", ")))")
        }
        return i
    }

    /// Column `name` of every row as numbers (empty fields are nil).
    public func numbers(_ column: String) throws -> [Double?] {
        let c = try self.column(column)
        return try rows.enumerated().map { i, r in
            let s = r[c]
            if s.isEmpty { return nil }
            guard let x = Double(s) else {
                throw InputError("\(name):\(i + 2): column \(column): \(JSON.quote(s)) is not a number")
            }
            return x
        }
    }

    /// Column `name` of every row as non-negative whole numbers (counts, seeds, iterations).
    public func counts(_ column: String) throws -> [Int] {
        try numbers(column).enumerated().map { i, x in
            guard let x, x >= 0, x == x.rounded(), x < 9e15 else {
                throw InputError("\(name):\(i + 2): column \(column) must be a non-negative whole number")
            }
            return Int(x)
        }
    }

    /// Column `name` of every row as text.
    public func strings(_ column: String) throws -> [String] {
        let c = try self.column(column)
        return rows.map { $0[c] }
    }
}

/// A number as a CSV field: shortest exact form, empty when nil or not finite.
func field(_ x: Double?) -> String {
    guard let x, x.isFinite else { return "" }
    return formatNumber(x)
}

/// The final figures of one run × seed: a row of `runs.csv`.
public struct RunRecord: Sendable, Equatable {
    public var experiment: String
    public var run: String
    public var strategy: String
    public var seed: UInt64
    /// Number of points N.
    public var count: Int
    public var stopReason: String
    public var iterations: Int
    public var dataPasses: Double
    public var gradientEvaluations: Int
    public var seconds: Double
    public var elbo: Double
    public var logLikelihood: Double
    public var approximationGap: Double
    public var amortizationGap: Double
    public var mleLogLikelihood: Double
    /// Seconds to within each of ``/ELBOLabExperiments/ELBOLabEngines/FitResult/thresholds`` of the MLE (nil: not reached).
    public var secondsTo: [Double?]
    /// Iterations to within each threshold.
    public var iterationsTo: [Double?]
    /// Recovery against the truth (nil when unknown): the fitted θ, then the closed-form MLE.
    public var recovery: Recovery?
    public var mleRecovery: Recovery?
    public var fault: String
    /// The least amortisation gap the run's encoder family can reach at its final θ, where known
    /// (``/ELBOLabEngines/FitResult/bestAmortizationGap(data:)``).
    public var bestAmortizationGap: Double? = nil

    /// The CSV header of `runs.csv`.
    public static var header: [String] {
        ["experiment", "run", "strategy", "seed", "n", "stop_reason", "iterations", "data_passes", "gradient_evaluations",
         "seconds", "elbo", "loglik", "approximation_gap", "amortization_gap", "mle_loglik", "gap_to_mle"]
            + FitResult.thresholds.map { "seconds_to_\(formatNumber($0))" }
            + FitResult.thresholds.map { "iterations_to_\(formatNumber($0))" }
            + ["principal_angle_deg", "noise_variance", "noise_variance_rel_error", "loading_rel_error",
               "mle_principal_angle_deg", "mle_noise_variance_rel_error", "mle_loading_rel_error", "fault", "best_amortization_gap"]
    }

    var fields: [String] {
        [experiment, run, strategy, String(seed), String(count), stopReason, String(iterations), field(dataPasses),
         String(gradientEvaluations), field(seconds), field(elbo), field(logLikelihood), field(approximationGap),
         field(amortizationGap), field(mleLogLikelihood), field(mleLogLikelihood - elbo)]
            + secondsTo.map(field) + iterationsTo.map(field)
            + [field(recovery?.principalAngleDegrees), field(recovery?.noiseVariance), field(recovery?.noiseVarianceRelativeError),
               field(recovery?.loadingRelativeError), field(mleRecovery?.principalAngleDegrees),
               field(mleRecovery?.noiseVarianceRelativeError), field(mleRecovery?.loadingRelativeError), fault,
               field(bestAmortizationGap)]
    }

    /// `runs.csv` as a table.
    public static func table(_ records: [RunRecord]) -> CSVTable {
        CSVTable(header: header, rows: records.map(\.fields), name: "runs.csv")
    }

    /// Reads the records back from a `runs.csv` table.
    public static func records(from t: CSVTable) throws -> [RunRecord] {
        func num(_ c: String) throws -> [Double?] { try t.numbers(c) }
        func req(_ c: String) throws -> [Double] {
            try num(c).enumerated().map { i, x in
                guard let x else { throw InputError("\(t.name):\(i + 2): column \(c) is empty") }
                return x
            }
        }
        let experiment = try t.strings("experiment"), run = try t.strings("run"), strategy = try t.strings("strategy")
        let seed = try t.counts("seed"), n = try t.counts("n"), stop = try t.strings("stop_reason")
        let iterations = try t.counts("iterations"), passes = try req("data_passes"), grads = try t.counts("gradient_evaluations")
        let seconds = try req("seconds"), elbo = try num("elbo"), ll = try num("loglik")
        let ag = try num("approximation_gap"), mg = try num("amortization_gap"), mle = try req("mle_loglik")
        let st = try FitResult.thresholds.map { try num("seconds_to_\(formatNumber($0))") }
        let it = try FitResult.thresholds.map { try num("iterations_to_\(formatNumber($0))") }
        let angle = try num("principal_angle_deg"), s2 = try num("noise_variance"), s2e = try num("noise_variance_rel_error")
        let le = try num("loading_rel_error"), mAngle = try num("mle_principal_angle_deg")
        let ms2e = try num("mle_noise_variance_rel_error"), mle_le = try num("mle_loading_rel_error")
        let fault = try t.strings("fault")
        // Absent from files written before the column existed.
        let best = t.header.contains("best_amortization_gap") ? try num("best_amortization_gap") : t.rows.map { _ in nil }
        return t.rows.indices.map { i in
            RunRecord(experiment: experiment[i], run: run[i], strategy: strategy[i], seed: UInt64(seed[i]), count: n[i],
                      stopReason: stop[i], iterations: iterations[i], dataPasses: passes[i],
                      gradientEvaluations: grads[i], seconds: seconds[i], elbo: elbo[i] ?? .nan,
                      logLikelihood: ll[i] ?? .nan, approximationGap: ag[i] ?? .nan, amortizationGap: mg[i] ?? .nan,
                      mleLogLikelihood: mle[i], secondsTo: st.map { $0[i] }, iterationsTo: it.map { $0[i] },
                      recovery: angle[i] == nil && s2e[i] == nil ? nil
                          : Recovery(principalAngleDegrees: angle[i] ?? .nan, noiseVariance: s2[i] ?? .nan,
                                     noiseVarianceRelativeError: s2e[i] ?? .nan, loadingRelativeError: le[i] ?? .nan),
                      mleRecovery: mAngle[i] == nil && ms2e[i] == nil ? nil
                          : Recovery(principalAngleDegrees: mAngle[i] ?? .nan, noiseVariance: .nan,
                                     noiseVarianceRelativeError: ms2e[i] ?? .nan, loadingRelativeError: mle_le[i] ?? .nan),
                      fault: fault[i], bestAmortizationGap: best[i])
        }
    }
}

/// The header of `curves.csv`: the run's identity, then ``/ELBOLabExperiments/ELBOLabEngines/CurveRow/csvHeader``.
public let curvesHeader = ["experiment", "run", "strategy", "seed"] + CurveRow.csvHeader.split(separator: ",").map(String.init)

/// One curve row with its run's identity, as read back from `curves.csv`.
public struct CurvePoint: Sendable, Equatable {
    public var run: String
    public var seed: UInt64
    public var iteration: Int
    public var dataPasses: Double
    public var seconds: Double
    public var elbo: Double
    public var logLikelihood: Double
    public var approximationGap: Double
    public var amortizationGap: Double

    /// Reads the points of a `curves.csv` table, in file order.
    public static func points(from t: CSVTable) throws -> [CurvePoint] {
        let run = try t.strings("run"), seed = try t.counts("seed"), it = try t.counts("iteration")
        let passes = try t.numbers("data_passes"), sec = try t.numbers("seconds"), elbo = try t.numbers("elbo")
        let ll = try t.numbers("loglik"), ag = try t.numbers("approximation_gap"), mg = try t.numbers("amortization_gap")
        return try t.rows.indices.map { i in
            guard let p = passes[i], let x = sec[i], let e = elbo[i] else {
                throw InputError("\(t.name):\(i + 2): data_passes, seconds and elbo must be numbers")
            }
            return CurvePoint(run: run[i], seed: UInt64(seed[i]), iteration: it[i], dataPasses: p, seconds: x, elbo: e,
                              logLikelihood: ll[i] ?? .nan, approximationGap: ag[i] ?? .nan, amortizationGap: mg[i] ?? .nan)
        }
    }
}
