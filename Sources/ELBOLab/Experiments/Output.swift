import Foundation

/// Writes files whole or not at all: the text goes to a temporary name in the same folder,
/// then is renamed over the target, so a reader never sees a half-written result.
public enum AtomicFile {
    /// Writes `text` to `path` atomically.
    /// - Throws: ``InputError`` naming the path and the reason (missing folder, no permission…).
    public static func write(_ text: String, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw InputError("\(path): cannot write: the folder \(folder) does not exist")
        }
        let temporary = folder + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw InputError("\(path): cannot write: \(String(cString: strerror(errno)))")
        }
        var ok = true
        var message = ""
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Foundation.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    ok = false; message = String(cString: strerror(errno)); return
                }
                offset += n
            }
        }
        // fsync: a full disk may show only here (delayed allocation), not at write.
        if ok && fsync(fd) != 0 && errno != EINVAL { ok = false; message = String(cString: strerror(errno)) }
        if close(fd) != 0 && ok { ok = false; message = String(cString: strerror(errno)) }
        if ok && rename(temporary, path) != 0 { ok = false; message = String(cString: strerror(errno)) }
        if !ok {
            unlink(temporary)
            throw InputError("\(path): cannot write: \(message)")
        }
    }

    /// Creates `path` as a folder (and its parents) if missing.
    public static func makeFolder(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            if !isDirectory.boolValue { throw InputError("\(path): exists and is not a folder") }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw InputError("\(path): cannot create the folder: \((error as NSError).localizedDescription)")
        }
    }
}

/// `params.json`: `{"W": [[…] D rows of J], "b": […D], "noise_variance": s2}`.
public enum ParamsFile {
    /// The JSON of `model`.
    public static func json(_ model: LinearGaussianModel) -> JSON {
        .object([
            ("W", .array(model.loadings.nestedRows.map { .array($0.map { .number($0) }) })),
            ("b", .array(model.offset.map { .number($0) })),
            ("noise_variance", .number(model.noiseVariance)),
        ])
    }

    /// Reads a model from `path`. - Throws: ``InputError`` naming the field that is wrong.
    ///
    /// JSON's own types are kept apart (a number is never read from `true`, and `1` is never a
    /// boolean), so every number the writer emits, integers included, reads back.
    public static func read(path: String) throws -> LinearGaussianModel {
        try parse(try readFile(path, what: "parameters file"), path: path)
    }

    /// Reads a model from the contents of a parameters file; `path` names the file in messages.
    ///
    /// ``StrictJSON``, not JSONSerialization: on Linux the latter rounds some numbers wrongly (it
    /// reads 0.30000000000000004 as 0.3000000000000001), so a written model would not read back.
    public static func parse(_ bytes: Data, path: String) throws -> LinearGaussianModel {
        let value = try StrictJSON.parse(bytes, path: path)
        guard case let .object(dict) = value else {
            throw InputError("\(path): must be a JSON object with W, b and noise_variance, got \(value.shown)")
        }
        guard case let .array(rowValues)? = dict["W"], !rowValues.isEmpty else {
            throw InputError("\(path): \"W\" must be a non-empty array of rows (D arrays of J numbers), got \(dict["W"]?.shown ?? "nothing")")
        }
        var rows: [[Double]] = []
        for (i, r) in rowValues.enumerated() {
            guard case let .array(row) = r, !row.isEmpty else {
                throw InputError("\(path): \"W\" row \(i + 1) must be a non-empty array of numbers, got \(r.shown)")
            }
            let values = try numbers(row, path: path, field: "\"W\" row \(i + 1)")
            if let first = rows.first, first.count != values.count {
                throw InputError("\(path): \"W\" row \(i + 1) has \(values.count) entries, row 1 has \(first.count) (W is D rows of J numbers)")
            }
            rows.append(values)
        }
        guard case let .array(bValues)? = dict["b"] else {
            throw InputError("\(path): \"b\" must be an array of D numbers, got \(dict["b"]?.shown ?? "nothing")")
        }
        let b = try numbers(bValues, path: path, field: "\"b\"")
        guard b.count == rows.count else {
            throw InputError("\(path): \"b\" has \(b.count) entries but \"W\" has \(rows.count) rows")
        }
        guard case let .number(s2)? = dict["noise_variance"], s2.isFinite, s2 > 0 else {
            throw InputError("\(path): \"noise_variance\" must be a positive number, got \(dict["noise_variance"]?.shown ?? "nothing")")
        }
        // 1/s2 and ‖W‖² enter every density: past these limits log p(y) would be NaN.
        guard s2 >= Double.leastNormalMagnitude else {
            throw InputError("\(path): \"noise_variance\" \(formatNumber(s2)) is too small (below \(Double.leastNormalMagnitude), 1/s2 overflows)")
        }
        guard rows.joined().reduce(0, { $0 + $1 * $1 }).isFinite else {
            throw InputError("\(path): \"W\" is too large: the sum of its squared entries overflows a double (rescale)")
        }
        return LinearGaussianModel(loadings: Matrix(rows), offset: b, noiseVariance: s2)
    }

    private static func numbers(_ xs: [SpecValue], path: String, field: String) throws -> [Double] {
        try xs.enumerated().map { k, x in
            guard case let .number(v) = x, v.isFinite else {
                throw InputError("\(path): \(field) entry \(k + 1) must be a finite number, got \(x.shown)")
            }
            return v
        }
    }
}

/// The bytes of the file at `path`, or an ``InputError`` saying why they cannot be read
/// (missing, a directory or a device, no permission), with `what` naming the file's role.
func readFile(_ path: String, what: String) throws -> Data {
    try refuseNonFile(path, what: what)
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw InputError("\(path): cannot read the \(what): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes = Data()
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw InputError("\(path): cannot read the \(what): \(String(cString: strerror(errno)))")
        }
        if n == 0 { return bytes }
        bytes.append(contentsOf: chunk[0..<n])
    }
}

extension CurveRow {
    /// The CSV header every curve file uses.
    public static let csvHeader = "iteration,data_passes,gradient_evaluations,seconds,elbo,loglik,approximation_gap,amortization_gap"

    /// The row's CSV fields, in the order of ``csvHeader``.
    public var csvValues: [String] {
        [String(iteration), formatNumber(dataPasses), String(gradientEvaluations), formatNumber(seconds), formatNumber(score.elbo),
         formatNumber(score.logLikelihood), formatNumber(score.approximationGap), formatNumber(score.amortizationGap)]
    }
}

extension FitResult {
    /// The curve as CSV text with ``CurveRow/csvHeader``.
    public var curveCSV: String {
        ([CurveRow.csvHeader] + curve.map { $0.csvValues.joined(separator: ",") }).joined(separator: "\n") + "\n"
    }

    /// The thresholds (nats/point below the MLE) that `seconds_to_tolerance` reports.
    public static let thresholds: [Double] = [0.1, 0.01, 0.001]

    /// `summary.json`.
    public func summaryJSON(data: Dataset) -> JSON {
        let last = final
        var pairs: [(String, JSON)] = [
            ("strategy", .string(options.strategy.rawValue)),
            ("objective", .string(options.resolvedObjective.rawValue)),
            ("n", .number(Double(data.count))),
            ("dim", .number(Double(data.dimension))),
            ("latent", .number(Double(options.latent))),
            ("iterations", .number(Double(last?.iteration ?? 0))),
            ("data_passes", .number(last?.dataPasses)),
            ("gradient_evaluations", .number(Double(last?.gradientEvaluations ?? 0))),
            ("seconds", .number(last?.seconds ?? 0)),
            ("loglik", .number(last?.score.logLikelihood)),
            ("mle_loglik", .number(mle.logLikelihood)),
            ("elbo", .number(last?.score.elbo)),
            ("gap_to_mle", .number(last.map { mle.logLikelihood - $0.score.elbo })),
            ("approximation_gap", .number(last?.score.approximationGap)),
            ("amortization_gap", .number(last?.score.amortizationGap)),
            ("seconds_to_tolerance", .object(FitResult.thresholds.map { (formatNumber($0), .number(secondsTo(within: $0))) })),
            ("iterations_to_tolerance", .object(FitResult.thresholds.map { (formatNumber($0), .number(iterationsTo(within: $0).map(Double.init))) })),
            ("stop_reason", .string(stopReason.rawValue)),
        ]
        if let fault { pairs.append(("fault", .string(fault))) }
        pairs.append(contentsOf: diagnosticsSummary(data: data, particles: options.resolvedParticles))
        pairs.append(("seed", .number(Double(options.seed))))
        pairs.append(("noise_variance_fixed", .number(options.constraints.noiseVariance)))
        pairs.append(("zero_offset", .bool(options.constraints.zeroOffset)))
        // θ held (`--theta`): the θ term of the gap, MLE − log p(Y; θ), is fixed, not fitted.
        switch options.theta {
        case nil: pairs.append(("theta", .string("fitted")))
        case .mle?: pairs.append(("theta", .string("held at the closed-form MLE (the θ term of the gap is 0)")))
        case .fixed?: pairs.append(("theta", .string("held at the --theta parameters (the θ term of the gap is fixed)")))
        }
        pairs.append(("model_gap", .number(last.map { mle.logLikelihood - $0.score.logLikelihood })))
        return .object(pairs)
    }
}
