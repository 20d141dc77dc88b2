/// How the per-datapoint strategy solves its E-step.
public enum ESolver: String, Sendable, CaseIterable, Codable {
    /// The optimum of §6 in closed form.
    case closedForm = "closed-form"
    /// GSL's BFGS2 on each point's exact ELBO, points split across cores.
    case bfgs
    /// Adam on reparameterised one-sample gradients, as in the notes.
    case adam
}

/// How θ is updated given q.
public enum MStep: String, Sendable, CaseIterable, Codable {
    /// The maximiser of the ELBO over θ given q, in closed form.
    case closedForm = "closed-form"
    /// One Adam step along the exact gradient with respect to θ.
    case gradient
}

/// The optimiser of amortized and joint runs.
public enum OptimizerKind: String, Sendable, CaseIterable, Codable {
    /// Adam with the step-size schedule.
    case adam
    /// GSL's BFGS2 quasi-Newton method on the exact ELBO (needs the exact gradient).
    case bfgs
    /// Limited-memory BFGS on the exact ELBO (needs the exact gradient): ``/ELBOLabNumerics/LBFGSMinimizer``.
    case lbfgs
}

/// How em, and per-datapoint VI with closed-form E- and M-steps (variational EM), speed up.
public enum Acceleration: String, Sendable, CaseIterable, Codable {
    /// The plain steps, as in the notes.
    case none
    /// Parameter expansion: the M-step also fits the prior of z (its covariance for em, its mean
    /// and diagonal scale for mean-field q), then maps back to N(0, I). Same cost per step as the
    /// plain one; removes the slow scale direction of EM when λ/s2 is large.
    case px
    /// em only: SQUAREM (Varadhan & Roland 2008), extrapolating from two EM steps and keeping
    /// the result only when the log-likelihood rises.
    case squarem
}

/// Every setting of a fit. The CLI's `fit` and the experiment runner both build engines from it.
public struct FitOptions: Sendable, Equatable {
    /// The inference strategy: what is fitted, and how.
    public var strategy: Strategy
    /// Latent dimension J.
    public var latent: Int
    /// What is held fixed (s2, b = 0).
    public var constraints: ModelConstraints = .free
    /// Seed of the run's one random stream (initial θ, encoder weights, Monte Carlo draws).
    public var seed: UInt64 = 1
    /// Iteration cap.
    public var iterations: Int? = nil
    /// Wall-clock cap in seconds (scoring excluded).
    public var maxSeconds: Double = 60
    /// Stop once the exact ELBO improves by less than this (nats/point) over `window` logged rows.
    public var tolerance: Double? = nil
    /// Logged rows the stop rule looks back over; nil: 5, or 10 for Monte Carlo gradients (noisier).
    public var window: Int? = nil
    /// Log every this many iterations; nil logs on a geometric grid (about 20 rows a decade).
    public var logEvery: Int? = nil

    /// Per-datapoint: the covariance family of each q_n.
    public var covariance: GaussianPosteriors.Family = .diagonal
    /// Per-datapoint: the E-step solver.
    public var eSolver: ESolver = .closedForm
    /// Per-datapoint: inner iterations per E-step (BFGS iterations or Adam steps).
    public var eSteps: Int? = nil
    /// Per-datapoint and amortized: the θ update.
    public var mStep: MStep = .closedForm

    /// Amortized and joint: the encoder family.
    public var encoder: EncoderKind = .linear
    /// MLP encoder width.
    public var hidden: Int = 32
    /// Low-rank encoder: the bound on the rank of its mean map (nil: 1).
    public var rank: Int? = nil
    /// Amortized: encoder steps per θ step.
    public var encoderSteps: Int = 1
    /// Amortized and joint: the gradient estimator for q's parameters.
    public var gradient: GradientEstimator? = nil
    /// Monte Carlo estimators: the KL term.
    public var kl: KLEstimator = .analytic
    /// Monte Carlo samples per point per step.
    public var samples: Int = 1
    /// joint: the ELBO (nil) or the importance-weighted bound L_K.
    public var objective: Objective? = nil
    /// K, the particles of L_K (nil: 1).
    public var particles: Int? = nil
    /// Minibatch size; nil is the full batch.
    public var batch: Int? = nil
    /// Amortized and joint: Adam, or a quasi-Newton method on the exact objective; nil the default
    /// (``resolvedOptimizer``).
    public var optimizer: OptimizerKind? = nil
    /// Adam step size; nil picks the strategy's default.
    public var learningRate: Double? = nil
    /// Decay the step size as α/√(1 + t/τ) with this τ (Monte Carlo gradients); 0 keeps it constant; nil the default.
    public var decay: Double? = nil
    /// The power κ of the decay α/(1 + t/τ)^κ; nil the default, 1.
    public var decayPower: Double? = nil

    /// Semi-amortized: the refinement steps R per point, and their rate α (nil:
    /// ``/ELBOLabVariational/PerPointRefinement/defaultRate(for:)``).
    public var refineSteps: Int = 5
    public var refineRate: Double? = nil

    /// Per-datapoint, amortized, joint: score the Polyak–Ruppert average of the iterates with
    /// weights growing like t^η (`AveragedEngine`); nil scores the iterate itself.
    public var averaging: Double? = nil

    /// em and per-datapoint variational EM: how the steps are accelerated; nil:
    /// ``resolvedAcceleration``.
    public var acceleration: Acceleration? = nil

    /// Hold θ at these parameters for the whole fit (em, per-datapoint, amortized); nil fits θ.
    public var theta: HeldTheta? = nil

    /// The options for `strategy` at latent dimension `latent`, every other setting at its default (the `fit` tool's).
    public init(strategy: Strategy, latent: Int) {
        self.strategy = strategy
        self.latent = latent
    }

    /// The gradient estimator in force: the exact expected gradient unless a Monte Carlo one is asked for.
    public var resolvedGradient: GradientEstimator { gradient ?? .exact }

    /// Whether the strategy's updates are Monte Carlo estimates.
    public var isStochastic: Bool { strategy.has(.monteCarlo, in: self) }

    /// Whether this run's per-datapoint steps are variational EM in moment form (both closed-form).
    var isVariationalEM: Bool { strategy == .perDatapoint && eSolver == .closedForm && mStep == .closedForm }

    /// The acceleration in force: parameter expansion for em and for per-datapoint variational EM
    /// (plain EM crawls on data whose leading eigenvalues dwarf the noise, such as columns in
    /// mixed units), none elsewhere.
    public var resolvedAcceleration: Acceleration {
        acceleration ?? (strategy.has(.acceleration, in: self) ? .px : .none)
    }

    /// The stop tolerance in force (nats/point over the window).
    public var resolvedTolerance: Double { tolerance ?? strategy.defaultTolerance }

    /// The stop rule's window in force.
    /// Importance-weighted runs track the log-likelihood, which their noisy θ steps move by less
    /// than a short window can tell from a plateau (with 10 rows, runs on `synth` stopped as
    /// converged 1.6e-3 nats/point short): 30 rows.
    public var resolvedWindow: Int { window ?? (resolvedObjective == .iwae ? 30 : isStochastic ? 10 : 5) }

    /// The optimiser in force: L-BFGS for joint on the exact full-batch objective (it reaches
    /// the MLE in several times fewer evaluations than Adam or GSL's BFGS2), Adam otherwise —
    /// and Adam whenever a step size or schedule is given, since only Adam uses them.
    public var resolvedOptimizer: OptimizerKind {
        if let optimizer { return optimizer }
        let adamSettings = learningRate != nil || decay != nil || decayPower != nil
        return strategy == .joint && resolvedGradient == .exact && batch == nil && !adamSettings ? .lbfgs : .adam
    }

    /// The step size in force: 0.05, and 0.1 for an encoder trained by Monte Carlo gradients.
    /// The linear encoder's inputs are scaled by 1/√D, so a step moves its outputs by about α
    /// whatever D is; measured on `synth` (seeds 1–6), 0.1 there reaches 0.01 and 0.001 sooner
    /// than 0.05 for joint (plain and `--kl stl`) and amortized `--kl stl`, and 0.2 diverges.
    /// Amortized runs whose θ takes Adam steps (`--m-step gradient`) keep 0.05: on `synth`
    /// with `--objective iwae --particles 5`, 0.1 diverged within 130 iterations, 0.05 reached
    /// 0.001 nats/point in ~9.4 s (reparam and dreg alike).
    public var resolvedLearningRate: Double {
        learningRate ?? (isStochastic && strategy.hasEncoder && !(strategy == .amortized && mStep == .gradient) ? 0.1 : 0.05)
    }

    /// Whether a constant step suffices for a Monte Carlo run: the amortized strategy with
    /// path-derivative encoder gradients (`--kl stl`, reparameterised) and θ in closed form given
    /// q. Every gradient noise then vanishes at the optimum (q reaches the exact posterior, the
    /// mean-field optimum of this model at the MLE), and the encoder's gradient averages the
    /// points. Not so for the joint strategy (θ's gradient stays noisy) nor for per-datapoint
    /// Adam (each q_n sees its own draw; measured on `synth`, a constant step stalls near 6e-3
    /// nats/point).
    public var constantStepSuffices: Bool {
        isStochastic && strategy == .amortized && resolvedGradient == .reparam && kl == .stl && mStep == .closedForm
    }

    /// The step-size schedule in force: α/(1 + t/τ)^κ with κ = 1 (a Robbins–Monro schedule,
    /// which removes Adam's noise floor). τ = 300 for exact gradients; for Monte Carlo ones,
    /// measured on `synth` (docs/monte-carlo-levers.md): 100, or with `--kl stl` a constant step where
    /// ``constantStepSuffices``, 300 per-datapoint, and 1000 for joint runs with iterate
    /// averaging (the average, not the decay, then damps the noise).
    public var resolvedSchedule: StepSchedule {
        let tau = decay ?? defaultDecay
        return tau > 0 ? .decay(halfLife: tau, power: decayPower ?? 1) : .constant
    }

    /// τ when `decay` is not given.
    var defaultDecay: Double {
        guard isStochastic else { return 300 }
        // Averaging removes the noise a slowly decaying step leaves (joint, per-datapoint).
        if strategy != .amortized && averaging != nil { return 1000 }
        guard kl == .stl else { return 100 }
        if constantStepSuffices { return 0 }
        return strategy == .perDatapoint ? 300 : 100
    }

    /// The iteration cap in force.
    public var resolvedIterations: Int { iterations ?? strategy.defaultIterations }

    /// The objective in force.
    public var resolvedObjective: Objective { objective ?? .elbo }
    /// The particles in force.
    public var resolvedParticles: Int { particles ?? 1 }

    /// Inner iterations per E-step in force.
    public var resolvedESteps: Int { eSteps ?? (eSolver == .adam ? 5 : 50) }
}
