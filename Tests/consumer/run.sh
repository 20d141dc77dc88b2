#!/usr/bin/env bash
# Builds and runs the README's library example as another package would: a consumer that
# depends on ELBOLab by URL and version, in release mode. Called by `make test`.
#
# 1. A git repository of the current tree (the files `git ls-files` names, as they are on disk,
#    so uncommitted edits count), tagged 1.0.0.
# 2. A consumer package: `.package(url: "file://…/ELBOLab", from: "1.0.0")`, and as its
#    main.swift the first ```swift block under "## Using ELBOLab as a library" in README.md.
# 3. `swift build -c release` (ELBOLab and its dependencies from scratch), then a run on a small
#    CSV made here; the exact ELBO printed must be finite and at most the MLE's log-likelihood.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/elbolab-consumer.XXXXXX")
trap 'rm -rf "$work"' EXIT
say() { echo "consumer test: $*"; }
fail() { echo "consumer test: FAILED: $*" >&2; exit 1; }

repo="$work/ELBOLab"
mkdir -p "$repo"
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf -) | tar -xf - -C "$repo"
git -C "$repo" init -q
git -C "$repo" add -A
git -C "$repo" -c user.name=consumer-test -c user.email=consumer-test@localhost commit -qm "snapshot for the consumer test"
git -C "$repo" tag 1.0.0

app="$work/app"
mkdir -p "$app/Sources/Consumer"
cat > "$app/Package.swift" <<MANIFEST
// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Consumer",
    dependencies: [.package(url: "file://$repo", from: "1.0.0")],
    targets: [.executableTarget(name: "Consumer", dependencies: [.product(name: "ELBOLab", package: "ELBOLab")])]
)
MANIFEST
awk '/^## Using ELBOLab as a library$/ { section = 1; next }
     section && /^## / { exit }
     section && !inside && /^```swift$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$root/README.md" > "$app/Sources/Consumer/main.swift"
[ -s "$app/Sources/Consumer/main.swift" ] || fail "README.md has no \`\`\`swift block under '## Using ELBOLab as a library'"

# 300 points in D = 4 from a 1-dimensional latent, by a fixed linear congruential stream
# (sums of uniforms stand in for Gaussians; any data will do for the check).
awk 'BEGIN { s = 12345
      for (n = 0; n < 300; n++) {
        z = 0; for (k = 0; k < 12; k++) { s = (16807 * s) % 2147483647; z += s / 2147483647 } z -= 6
        line = ""
        for (d = 0; d < 4; d++) {
          e = 0; for (k = 0; k < 12; k++) { s = (16807 * s) % 2147483647; e += s / 2147483647 } e -= 6
          line = line (d ? "," : "") sprintf("%.6f", (d + 1) * z + 0.5 * e + d)
        }
        print line
      } }' > "$work/data.csv"

say "building the README example against ELBOLab 1.0.0 (a release build from scratch)"
start=$(date +%s)
swift build -c release --package-path "$app" > "$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; fail "the consumer package did not build"; }
say "built in $(( $(date +%s) - start )) s"
"$app/.build/release/Consumer" "$work/data.csv" | tee "$work/out.txt"
awk '/^exact ELBO:/ { elbo = $3; e = 1 } /^MLE log-lik:/ { mle = $3; m = 1 }
     END {
       if (!e || !m) { print "no ELBO or MLE line in the output"; exit 1 }
       if (elbo !~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/ || mle !~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/) { print "not finite: ELBO " elbo ", MLE " mle; exit 1 }
       if (elbo + 0 > mle + 0) { print "ELBO " elbo " exceeds the MLE log-likelihood " mle; exit 1 }
     }' "$work/out.txt" || fail "the printed scores are wrong"
say "ok (ELBO finite and at most the MLE)"
