import ArgumentParser
import ELBOLab
import Foundation

extension Strategy: ExpressibleByArgument {}
extension ESolver: ExpressibleByArgument {}
extension MStep: ExpressibleByArgument {}
extension EncoderKind: ExpressibleByArgument {}
extension GradientEstimator: ExpressibleByArgument {}
extension KLEstimator: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
extension Acceleration: ExpressibleByArgument {}
extension GaussianPosteriors.Family: ExpressibleByArgument {}

struct Fit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fit the model to a CSV file with one strategy and score it exactly.",
        discussion: """
        Strategies:
          mle            the closed-form maximum-likelihood fit (Tipping & Bishop), the ceiling.
          em             exact EM: the notes' "E step / M step" with q = p(z|y) in closed form,
                         parameter-expanded by default (--acceleration).
          per-datapoint  part A of the notes (variational inference): one Gaussian q_n per point,
                         optimised by --e-solver, alternating with a θ step (--m-step).
          amortized      part B (amortization): an encoder g_φ(y) fitted by --encoder-steps
                         gradient steps with θ held, alternating with a θ step (variational EM).
          joint          part C (joint training, the VAE): θ and φ together, by one L-BFGS iteration
                         on the exact ELBO (the default) or one Adam step (--gradient reparam, …).

        Writes DIR/curve.csv (the exact ELBO, log-likelihood and both gaps at logged iterations),
        DIR/summary.json and DIR/params.json.

        Examples:
          elbolab fit --data data.csv --latent 3 --strategy mle --output out/mle
          elbolab fit --data data.csv --latent 3 --strategy per-datapoint --e-solver bfgs --output out/a
          elbolab fit --data data.csv --latent 3 --strategy joint --gradient reparam --samples 1 --output out/c
          elbolab fit --data data.csv --latent 3 --strategy amortized --gradient reparam --kl stl --output out/b
          elbolab fit --data scalar.csv --latent 1 --strategy em --noise-variance 0.25 --no-offset --output out/em
        """
    )

    @Option(help: "The data, a numeric CSV file (one point per row; one header line allowed).") var data: String
    @Option(help: "Latent dimension J (1…D−1, or 1…D with --noise-variance).") var latent: Int
    @Option(help: "mle | em | per-datapoint | amortized | joint.") var strategy: Strategy
    @OptionGroup var model: ModelOptions
    @Option(help: "Seed of the run's random stream (initial θ, encoder, Monte Carlo draws).") var seed: UInt64 = 1
    @Option(help: "Iteration cap (default: 10000 for em, 100000 otherwise).") var iterations: Int?
    @Option(name: .customLong("max-seconds"), help: "Training-time cap in seconds.") var maxSeconds: Double = 60
    @Option(help: "Stop when the exact ELBO gains less than this (nats/point) over the window, and with exact gradients also moves less than this (default 1e-6; 1e-10 for em).") var tolerance: Double?
    @Option(help: "Logged rows the stop rule looks back over (default 5; 10 with Monte Carlo gradients).") var window: Int?
    @Option(name: .customLong("log-every"), help: "Log every K iterations (default: a geometric grid, ~20 rows a decade).") var logEvery: Int?
    @Option(help: "per-datapoint: diagonal | full covariance of each q_n.") var covariance: GaussianPosteriors.Family = .diagonal
    @Option(name: .customLong("e-solver"), help: "per-datapoint: closed-form | bfgs | adam.") var eSolver: ESolver = .closedForm
    @Option(name: .customLong("e-steps"), help: "per-datapoint: inner iterations per E-step (default 50 for bfgs, 5 for adam).") var eSteps: Int?
    @Option(name: .customLong("m-step"), help: "per-datapoint, amortized: closed-form | gradient.") var mStep: MStep = .closedForm
    @Option(help: "amortized, joint: linear | mlp.") var encoder: EncoderKind = .linear
    @Option(help: "MLP encoder width.") var hidden: Int = 32
    @Option(name: .customLong("encoder-steps"), help: "amortized: encoder steps per θ step.") var encoderSteps: Int = 1
    @Option(help: "amortized, joint: exact (default: the closed-form expected gradient) | reparam (the notes' Monte Carlo method) | score.") var gradient: GradientEstimator?
    @Option(help: "Monte Carlo gradients (--gradient reparam|score, --e-solver adam): the KL term: analytic (closed form, the peers' choice) | mc (log q − log p at the draws) | stl (mc with q's parameters held fixed inside log q: the path-derivative, 'sticking the landing' estimator, whose noise vanishes as q reaches the exact posterior).") var kl: KLEstimator = .analytic
    @Option(help: "Monte Carlo samples per point per step.") var samples: Int = 1
    @Option(help: "amortized, joint: minibatch size (default: the full batch).") var batch: Int?
    @Option(help: "amortized, joint: adam | bfgs (GSL's BFGS2) | lbfgs (limited-memory BFGS); the quasi-Newton methods need --gradient exact and the full batch (default: lbfgs for joint with the exact gradient, else adam).") var optimizer: OptimizerKind?
    @Option(help: "em, and per-datapoint with closed-form E- and M-steps: px (parameter expansion: the M-step also fits the prior of z, then maps back; the default) | none (the notes' plain steps) | squarem (em only: extrapolate from two EM steps, keep the result when log p rises).") var acceleration: Acceleration?
    @Option(name: .customLong("learning-rate"), help: "Adam step size (default 0.05; 0.1 for amortized and joint with Monte Carlo gradients).") var learningRate: Double?
    @Option(help: "Step-size decay α/(1+t/τ)^κ: τ (default 300; 100 with Monte Carlo gradients; with --kl stl: constant for amortized with the closed-form M-step, 300 per-datapoint; 1000 for joint and per-datapoint with --averaging; 0 keeps the step constant).") var decay: Double?
    @Option(name: .customLong("decay-power"), help: "Power κ of the decay α/(1+t/τ)^κ (default 1).") var decayPower: Double?
    @Option(help: "per-datapoint, amortized, joint: score the Polyak–Ruppert average of the iterates (θ and every q_n), with weights growing like t^η for this η ≥ 0 (0: the plain average; larger forgets the start sooner). Default: the iterate itself.") var averaging: Double?
    // θ held (issue 14 item 3); kept apart for the option table.
    @Option(help: "Hold θ fixed and fit only q (per-datapoint, em's E-step) or the encoder (amortized): a params.json (as fit writes it), or `mle` for the closed-form MLE of the data. The gap to the MLE is then approximation + amortisation (+ θ's own shortfall when θ is not the MLE).")
    var theta: String?
    @Option(help: "Output folder (created if missing).") var output: String
    @Flag(help: "No progress on stderr.") var quiet = false

    func validate() throws {
        if iterations.map({ $0 < 0 }) == true { throw ValidationError("--iterations must be non-negative") }
        if !(maxSeconds > 0) { throw ValidationError("--max-seconds must be positive, got \(maxSeconds)") }
        if let t = tolerance, !(t >= 0) { throw ValidationError("--tolerance must be non-negative, got \(t)") }
        if let window, window < 1 { throw ValidationError("--window must be at least 1") }
        if let e = logEvery, e < 1 { throw ValidationError("--log-every must be at least 1") }
        if let e = eSteps, e < 1 { throw ValidationError("--e-steps must be at least 1") }
        if encoderSteps < 1 { throw ValidationError("--encoder-steps must be at least 1") }
        if samples < 1 { throw ValidationError("--samples must be at least 1") }
        if hidden < 1 { throw ValidationError("--hidden must be at least 1") }
        if let b = batch, b < 1 { throw ValidationError("--batch must be at least 1") }
        if let lr = learningRate, !(lr > 0 && lr.isFinite) { throw ValidationError("--learning-rate must be a positive number") }
        if let d = decay, !(d >= 0) { throw ValidationError("--decay must be non-negative") }
        if let a = averaging, !(a >= 0 && a.isFinite) { throw ValidationError("--averaging must be a non-negative number") }
    }

    var options: FitOptions {
        var o = FitOptions(strategy: strategy, latent: latent)
        o.constraints = model.constraints
        o.seed = seed
        o.iterations = iterations
        o.maxSeconds = maxSeconds
        o.tolerance = tolerance
        o.window = window
        o.logEvery = logEvery
        o.covariance = covariance
        o.eSolver = eSolver
        o.eSteps = eSteps
        o.mStep = mStep
        o.encoder = encoder
        o.hidden = hidden
        o.encoderSteps = encoderSteps
        o.gradient = gradient
        o.kl = kl
        o.samples = samples
        o.batch = batch
        o.optimizer = optimizer
        o.learningRate = learningRate
        o.decay = decay
        o.decayPower = decayPower
        o.averaging = averaging
        o.acceleration = acceleration
        return o
    }

    func run() throws {
        try runReportingErrors(fit)
    }

    private func fit() throws {
        let dataset = try Dataset.load(csv: data)
        // Bad input must leave no files: check the data against the options before creating
        // the output folder, and remove the folders created here if the fit itself fails.
        try dataset.validate(latent: latent, noiseFixed: model.noiseVariance != nil)
        var options = self.options
        if let theta {
            options.theta = theta == "mle" ? .mle : .fixed(try ParamsFile.read(path: theta))
            try HeldTheta.check(strategy)
            _ = try options.theta?.model(for: dataset, latent: latent, constraints: options.constraints)
        }
        var created: String? = nil   // the outermost folder makeFolder is about to create
        var ancestor = URL(fileURLWithPath: output).standardizedFileURL
        while ancestor.path != "/" && !FileManager.default.fileExists(atPath: ancestor.path) {
            created = ancestor.path
            ancestor = ancestor.deletingLastPathComponent()
        }
        try AtomicFile.makeFolder(output)
        let name = strategy.rawValue
        let progress = quiet ? nil : progressLine(name)
        let result: FitResult
        do {
            installInterruptHandler()
            result = try FitRunner(progress: progress, shouldStop: { interruptRequested != 0 }).fit(dataset, options: options)
        } catch {
            if let created { try? FileManager.default.removeItem(atPath: created) }
            throw error
        }
        if !quiet { FileHandle.standardError.write(Data("\n".utf8)) }
        try AtomicFile.write(result.curveCSV, to: output + "/curve.csv")
        try AtomicFile.write(result.summaryJSON(data: dataset).text() + "\n", to: output + "/summary.json")
        try AtomicFile.write(ParamsFile.json(result.model).text() + "\n", to: output + "/params.json")
        if result.stopReason == .interrupted {
            FileHandle.standardError.write(Data("elbolab fit: interrupted after iteration \(result.final?.iteration ?? 0); the rows logged so far are in \(output) (stop_reason \"interrupted\")\n".utf8))
            throw ExitCode(130)
        }
        if let fault = result.fault {
            throw InputError("stopped by a numerical fault: \(fault); the rows logged before it are in \(output)/curve.csv")
        }
        if !quiet, let last = result.final {
            let gap = result.mle.logLikelihood - last.score.elbo
            print("\(name): ELBO \(fixed(last.score.elbo, 6)), log-lik \(fixed(last.score.logLikelihood, 6)), MLE \(fixed(result.mle.logLikelihood, 6)) (gap \(scientific(gap)) nats/point) after \(last.iteration) iterations, \(fixed(last.seconds, 3)) s [\(result.stopReason.rawValue)]")
        }
    }
}

/// `x` with `digits` decimals.
func fixed(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
/// `x` as `1.23e-04`.
func scientific(_ x: Double) -> String { String(format: "%.2e", x) }

/// A progress callback that rewrites one line on stderr.
func progressLine(_ name: String) -> @Sendable (CurveRow) -> Void {
    return { row in
        let elbo = fixed(row.score.elbo, 6), ll = fixed(row.score.logLikelihood, 6), sec = fixed(row.seconds, 2)
        let line = "\r\(name) iteration \(row.iteration)  ELBO \(elbo)  log-lik \(ll)  \(sec) s   "
        FileHandle.standardError.write(Data(line.utf8))
    }
}
