#!/bin/bash
# ELBOLab next to its peers (NumPyro, JAX exact gradient, Pyro, numpy EM) on the peers' synth data
# (D = 20, J = 3, N = 5000): seconds to 0.01 nats/point below the MLE, side by side, with ratios.
# IWAE rows: NumPyro's RenyiELBO(alpha=0, num_particles=10) against `elbolab fit --objective iwae
# --particles 10`, both timed until θ's exact log-likelihood is within 0.01 (0.001) of the MLE.
#
# usage: Benchmarks/peers.sh [--published] [--report-only] [--max-seconds S] [--strategies "A B C"] [--output DIR]
#
#   (default)     runs the peer scripts (../shared/peers/run.sh) when their environment is installed,
#                 then `elbolab fit` on the same file with matching settings, and prints the table.
#                 Without the peer environment it says how to install it and exits 0, running nothing.
#   --published   runs only ELBOLab and compares with the figures measured in ../shared/peers/README.md.
#   --report-only prints the table from the runs already in --output, running nothing.
#   --max-seconds training-time cap of ELBOLab's runs (default 60, the cap run.sh gives the peers).
#   --strategies  which peer strategies (default "A B C IWAE"; EM is always included; IWAE is
#                 joint training on the importance-weighted bound with K = 10).
#   --output DIR  where ELBOLab's runs (and the peers' outputs) go (default results/peers).
#
# Environment: PEERS_DIR (default ../shared/peers beside the repository), PEERS_VENV (default
# ~/.cache/elbolab-peers/venv), ELBOLAB (default .build/release/elbolab, built when missing).
# Never part of `make test`: it takes minutes and needs the peers' Python environment.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_DIR:-$root/../shared/peers}
[[ -d $peers ]] && peers=$(cd "$peers" && pwd)
venv=${PEERS_VENV:-$HOME/.cache/elbolab-peers/venv}
published=0
report_only=0
max_seconds=60
strategies="A B C IWAE"
output=$root/results/peers

while [[ $# -gt 0 ]]; do
  case $1 in
    --published) published=1 ;;
    --report-only) report_only=1 ;;
    --max-seconds) max_seconds=$2; shift ;;
    --strategies) strategies=$2; shift ;;
    --output) output=$2; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "peers.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

data=$peers/data/synth_d20_j3_n5000.csv
[[ -f $data ]] || { echo "peers.sh: the peers' data is missing: $data (set PEERS_DIR)" >&2; exit 2; }

if [[ $published == 0 && $report_only == 0 && ! -x $venv/bin/python ]]; then
  cat <<EOF
peers.sh: the peer environment is not installed ($venv), so no peer was run.
Install it once (NumPyro + JAX from PyPI, a few minutes; add --pyro for PyTorch + Pyro, several GB):

    $peers/setup.sh            # or: PEERS_VENV=DIR $peers/setup.sh

then run this script again. To compare ELBOLab with the figures the peers' README reports
(measured on a machine like this one) without installing anything:

    $0 --published
EOF
  exit 0
fi

# One core for everything, as the peers are run (taskset when the machine has it).
pin=""
command -v taskset >/dev/null && pin="taskset -c 0"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

mkdir -p "$output/elbolab" "$output/peers-out"
peer_out=$output/peers-out

# run.sh runs A, B and C; the IWAE runs are started here (run.sh has none).
elbo_strategies=$(for s in $strategies; do [[ $s == IWAE ]] || printf '%s ' "$s"; done)
if [[ $published == 0 && $report_only == 0 ]]; then
  if [[ -n ${elbo_strategies// /} ]]; then
    echo "peers.sh: running the peers (run.sh synth $elbo_strategies; up to 60 s a run)..." >&2
    # run.sh caps every run at 60 s itself; --max-seconds applies to ELBOLab's runs here.
    PEERS_OUT=$peer_out "$peers/run.sh" synth $elbo_strategies >&2 || echo "peers.sh: run.sh exited $?" >&2
  fi
  if [[ " $strategies " == *" IWAE "* ]]; then
    echo "peers.sh: running NumPyro RenyiELBO(alpha=0, num_particles=10), lr 0.05 and 0.01 (up to 60 s each)..." >&2
    # As run.sh runs its peers: one core, single-threaded XLA and BLAS; the MLE first (ref_numpy.py).
    (cd "$peers" && export PEERS_OUT=$peer_out XLA_FLAGS=--xla_cpu_multi_thread_eigen=false &&
      $pin "$venv/bin/python" ref_numpy.py --dataset synth >/dev/null &&
      for lr in 0.05 0.01; do
        $pin "$venv/bin/python" run_numpyro.py --dataset synth --strategy C --objective iwae --particles 10 \
          --lr $lr --max-seconds 60 --tag _iwae10_lr$lr >&2
      done) || echo "peers.sh: the NumPyro IWAE runs failed" >&2
  fi
fi

elbolab=${ELBOLAB:-$root/.build/release/elbolab}
if [[ $report_only == 0 && ! -x $elbolab ]]; then
  echo "peers.sh: building elbolab (swift build -c release --product elbolab)..." >&2
  (cd "$root" && swift build -c release --product elbolab >&2) || { echo "peers.sh: build failed" >&2; exit 1; }
fi

# ELBOLab's runs: "matched" copies the peer protocol (constant Adam step, the peer's learning rate,
# 1 reparameterised sample with analytic KL, 4 encoder steps per θ step for B, gradient M-steps);
# "own" is ELBOLab's default schedule (α/(1+t/τ)) or its closed-form steps.
runs=(
  "C_mc_matched|joint --gradient reparam --samples 1 --learning-rate 0.01 --decay 0"
  "C_mc_own|joint --gradient reparam --samples 1"
  "C_exact_matched|joint --gradient exact --learning-rate 0.05 --decay 0"
  "C_exact_own|joint"
  "C_mc_stl|joint --gradient reparam --samples 1 --kl stl"
  "C_mc_avg|joint --gradient reparam --samples 1 --averaging 8"
  "B_mc_matched|amortized --gradient reparam --samples 1 --encoder-steps 4 --m-step gradient --learning-rate 0.01 --decay 0"
  "B_mc_own|amortized --gradient reparam --samples 1"
  "B_exact_matched|amortized --gradient exact --encoder-steps 4 --m-step gradient --learning-rate 0.05 --decay 0"
  "B_exact_own|amortized"
  "B_mc_stl|amortized --gradient reparam --samples 1 --kl stl"
  "A_mc_matched|per-datapoint --e-solver adam --m-step gradient --learning-rate 0.01 --decay 0"
  "A_mc_own|per-datapoint --e-solver adam"
  "A_exact_own|per-datapoint"
  "A_mc_stl|per-datapoint --e-solver adam --kl stl"
  "A_mc_avg|per-datapoint --e-solver adam --averaging 4"
  "EM_own|em"
  "IWAE_reparam_matched05|joint --objective iwae --particles 10 --gradient reparam --learning-rate 0.05 --decay 0 --window 1000000"
  "IWAE_reparam_matched01|joint --objective iwae --particles 10 --gradient reparam --learning-rate 0.01 --decay 0 --window 1000000"
  "IWAE_reparam_own|joint --objective iwae --particles 10 --gradient reparam --window 1000000"
  "IWAE_dreg_own|joint --objective iwae --particles 10 --gradient dreg --window 1000000"
)
for entry in "${runs[@]}"; do
  [[ $report_only == 1 ]] && break
  name=${entry%%|*}; args=${entry#*|}
  key=${name%%_*}
  [[ $key == EM || " $strategies " == *" $key "* ]] || continue
  echo "peers.sh: elbolab fit --strategy $args" >&2
  # shellcheck disable=SC2086
  $pin "$elbolab" fit --data "$data" --latent 3 --strategy $args --iterations 20000 \
    --max-seconds "$max_seconds" --quiet --output "$output/elbolab/$name" >/dev/null \
    || echo "peers.sh: elbolab fit $name failed" >&2
done

python3 - "$output" "$peer_out" "$peers/README.md" "$published" <<'PY'
import glob, json, os, re, sys
output, peer_out, readme, published = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"

def elbolab(name):
    p = os.path.join(output, "elbolab", name, "summary.json")
    if not os.path.exists(p):
        return None
    d = json.load(open(p))
    secs = d.get("seconds") or 0
    return dict(s01=d["seconds_to_tolerance"].get("0.01"), s001=d["seconds_to_tolerance"].get("0.001"),
                gap=(d["mle_loglik"] - d["loglik"]) if d.get("objective") == "iwae" and d.get("loglik") is not None else d.get("gap_to_mle"), sps=(d.get("iterations", 0) / secs) if secs else None,
                stop=d.get("stop_reason"))

# Peer figures: measured now (run.sh's JSON files) or published in the peers' README.
peer = {}
if published:
    for line in open(readme):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] == "synth" and cells[1].startswith("NumPyro RenyiELBO") and cells[2] == "10":
            num = lambda s: None if s.startswith("never") or s == "—" else float(s)
            peer[("NumPyro RenyiELBO(α=0, K=10)", "IWAE", cells[3])] = dict(s01=num(cells[4]), s001=num(cells[5]), gap=None,
                                                                         sps=float(cells[6]))
        if len(cells) == 8 and cells[0] == "synth":
            _, who, strat, lr, gap, s01, s001, sps = cells
            num = lambda s: None if s in ("never", "—") else float(s)
            peer[(who, strat, lr)] = dict(s01=num(s01), s001=num(s001), gap=float(gap), sps=float(sps))
else:
    names = {"numpyro": "NumPyro (1-sample MC)", "jaxanalytic": "JAX exact gradient", "pyro": "Pyro (1-sample MC)", "numpy": "numpy exact EM"}
    for f in glob.glob(os.path.join(peer_out, "synth_*.json")):
        parts = os.path.basename(f)[:-5].split("_")
        if len(parts) < 3:
            continue
        d = json.load(open(f))
        if d.get("objective") == "iwae":
            # θ's log-likelihood, not the ELBO, is what IWAE training is timed on (q fits another bound).
            if d.get("particles") == 10:
                t1, t2 = d.get("loglik_tte_0p01"), d.get("loglik_tte_0p001")
                peer[("NumPyro RenyiELBO(α=0, K=10)", "IWAE", str(d.get("lr")))] = dict(
                    s01=t1 and t1["train_seconds"], s001=t2 and t2["train_seconds"],
                    gap=d["mle_loglik"] - d["final_exact_loglik"], sps=d.get("steps_per_second"))
            continue
        who = names.get(parts[1], parts[1])
        lr = "—" if parts[1] == "numpy" else str(d.get("lr", "0.05" if "lr0.05" in f else "0.01"))
        t1, t2 = d.get("tte_0p01"), d.get("tte_0p001")
        peer[(who, parts[2], lr)] = dict(s01=t1 and t1["train_seconds"], s001=t2 and t2["train_seconds"],
                                         gap=d.get("final_gap_to_mle"), sps=d.get("steps_per_second"))

def lookup(who, strat, lr):
    for (w, s, l), v in peer.items():
        if w == who and s == strat and (l == lr or (l != "—" and lr != "—" and float(l) == float(lr))):
            return v
    return None

pairs = [
    ("C", "NumPyro (1-sample MC)", "0.01", "C_mc_matched", "joint, reparam 1 sample, Adam 0.01 constant"),
    ("C", "NumPyro (1-sample MC)", "0.01", "C_mc_own", "joint, reparam 1 sample, Adam 0.1/(1+t/100)"),
    ("C", "Pyro (1-sample MC)", "0.01", "C_mc_matched", "joint, reparam 1 sample, Adam 0.01 constant"),
    ("C", "JAX exact gradient", "0.05", "C_exact_matched", "joint, exact gradient, Adam 0.05 constant"),
    ("C", "NumPyro (1-sample MC)", "0.01", "C_mc_stl", "joint, reparam 1 sample, path-derivative KL (--kl stl)"),
    ("C", "NumPyro (1-sample MC)", "0.01", "C_mc_avg", "joint, reparam 1 sample, iterate averaging (--averaging 8)"),
    ("C", "JAX exact gradient", "0.05", "C_exact_own", "joint, exact gradient, L-BFGS (default)"),
    ("B", "NumPyro (1-sample MC)", "0.01", "B_mc_matched", "amortized, reparam, 4 enc steps + θ Adam step, 0.01"),
    ("B", "NumPyro (1-sample MC)", "0.01", "B_mc_own", "amortized, reparam, 1 enc step + closed-form M"),
    ("B", "Pyro (1-sample MC)", "0.01", "B_mc_matched", "amortized, reparam, 4 enc steps + θ Adam step, 0.01"),
    ("B", "NumPyro (1-sample MC)", "0.01", "B_mc_stl", "amortized, reparam, --kl stl, closed-form M"),
    ("B", "JAX exact gradient", "0.05", "B_exact_matched", "amortized, exact, 4 enc steps + θ Adam step, 0.05"),
    ("B", "JAX exact gradient", "0.05", "B_exact_own", "amortized, exact, 1 enc step + closed-form M"),
    ("A", "NumPyro (1-sample MC)", "0.01", "A_mc_matched", "per-datapoint, 5 Adam E-steps + θ Adam step, 0.01"),
    ("A", "NumPyro (1-sample MC)", "0.01", "A_mc_own", "per-datapoint, Adam E-step + closed-form M"),
    ("A", "Pyro (1-sample MC)", "0.01", "A_mc_matched", "per-datapoint, 5 Adam E-steps + θ Adam step, 0.01"),
    ("A", "NumPyro (1-sample MC)", "0.01", "A_mc_stl", "per-datapoint, Adam E-step, --kl stl, closed-form M"),
    ("A", "NumPyro (1-sample MC)", "0.01", "A_mc_avg", "per-datapoint, Adam E-step, iterate averaging (--averaging 4)"),
    ("A", "JAX exact gradient", "0.05", "A_exact_own", "per-datapoint, closed-form E and M (variational EM)"),
    ("EM", "numpy exact EM", "—", "EM_own", "exact EM in moment form"),
    ("IWAE", "NumPyro RenyiELBO(α=0, K=10)", "0.05", "IWAE_reparam_matched05", "joint IWAE K=10, reparam, Adam 0.05 constant"),
    ("IWAE", "NumPyro RenyiELBO(α=0, K=10)", "0.01", "IWAE_reparam_matched01", "joint IWAE K=10, reparam, Adam 0.01 constant"),
    ("IWAE", "NumPyro RenyiELBO(α=0, K=10)", "0.05", "IWAE_reparam_own", "joint IWAE K=10, reparam, Adam 0.1/(1+t/100)"),
    ("IWAE", "NumPyro RenyiELBO(α=0, K=10)", "0.05", "IWAE_dreg_own", "joint IWAE K=10, DReG, Adam 0.1/(1+t/100)"),
]

def f(x, d=3):
    return "never" if x is None else f"{x:.{d}f}"

def ratio(p, e):
    if p is None and e is not None:
        return "ELBOLab only"
    if e is None and p is not None:
        return "peer only"
    if p is None or e is None:
        return "—"
    if e <= 0:
        return "∞"
    return f"{p / e:.1f}×"

source = "published in the peers' README" if published else "measured now by run.sh"
print(f"# ELBOLab vs peers on synth (D=20, J=3, N=5000): seconds to 0.01 and 0.001 nats/point below the MLE\n")
print(f"Peer figures {source}; ELBOLab's from `elbolab fit` here, one core (taskset), training seconds.")
print("Ratio = peer seconds / ELBOLab seconds (> 1: ELBOLab reaches the tolerance sooner).\n")
hdr = ["strategy", "peer", "peer lr", "peer s→0.01", "peer s→0.001", "peer steps/s", "ELBOLab settings", "ELBOLab s→0.01",
       "ELBOLab s→0.001", "ELBOLab steps/s", "ratio s→0.01", "ratio s→0.001", "peer gap", "ELBOLab gap"]
rows = []
for strat, who, lr, name, desc in pairs:
    p, e = lookup(who, strat, lr), elbolab(name)
    if p is None or e is None:
        continue
    rows.append([strat, who, lr, f(p["s01"]), f(p["s001"]), f(p["sps"], 0), desc, f(e["s01"]), f(e["s001"]), f(e["sps"], 0),
                 ratio(p["s01"], e["s01"]), ratio(p["s001"], e["s001"]), f"{p['gap']:.1e}" if p["gap"] is not None else "—",
                 (f"{e['gap']:.1e}" if e["gap"] is not None else "—") + (" (fault)" if e["stop"] == "fault" else "")])
if not rows:
    print("(no pair had both a peer figure and an ELBOLab run)")
    sys.exit(0)
w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
print("| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(hdr)) + " |")
print("|" + "|".join("-" * (w[i] + 2) for i in range(len(hdr))) + "|")
for r in rows:
    print("| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |")
print("\n\"never\": not within 0.01 before the cap or the stop rule; \"(fault)\": ELBOLab stopped the run as diverging. ELBOLab reads s→0.01 at its logged rows (every")
print("iteration to 10, then ~20 a decade); the peers every 50 steps. Initial points differ (the peers: W = 0.1·N(0,1),")
print("b = 0, s2 = 1; ELBOLab: W = 0.1·σ·N(0,1), b = ȳ, s2 = mean variance). One ELBOLab iteration of B-matched is 5 peer steps.")
print("IWAE rows: seconds until θ's exact log-likelihood (not the ELBO) is within the tolerance, on both sides; gaps are θ's;")
print("ELBOLab's IWAE runs have no stop rule (--window 1000000): they run to --max-seconds, as the peers run to theirs.")
PY
