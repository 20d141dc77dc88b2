import Foundation

/// Writes files whole or not at all: the text goes to a temporary name in the same folder,
/// then is renamed over the target, so a reader never sees a half-written result.
public enum AtomicFile {
    /// Writes `text` to `path` atomically.
    /// - Throws: ``/ELBOLabNumerics/InputError`` naming the path and the reason (missing folder, no permission…).
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
            ("best_amortization_gap", .number(bestAmortizationGap(data: data))),
            ("seconds_to_tolerance", .object(FitResult.thresholds.map { (formatNumber($0), .number(secondsTo(within: $0))) })),
            ("iterations_to_tolerance", .object(FitResult.thresholds.map { (formatNumber($0), .number(iterationsTo(within: $0).map(Double.init))) })),
            ("stop_reason", .string(stopReason.rawValue)),
        ]
        if let fault { pairs.append(("fault", .string(fault))) }
        if let solverStatus { pairs.append(("solver_status", .string(solverStatus.explanation))) }
        if let c = pointStatusCounts {
            pairs.append(("point_solver_status", .object([("converged", .number(Double(c.converged))),
                                                          ("stalled", .number(Double(c.stalled))),
                                                          ("iteration_limit", .number(Double(c.iterationLimit)))])))
        }
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
