# ELBOLab — `make experiments` runs the comparison, `make test` runs the tests.
# Both install missing system packages (GSL, gnuplot, OpenBLAS, headless Chromium) with apt-get first.

SWIFT      ?= swift
RELEASE    := .build/release
ELBOLAB    := $(RELEASE)/elbolab
PACKAGES   := libgsl-dev gnuplot-nox libopenblas-dev chromium-headless-shell
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TESTFLAGS  := -c release -Xswiftc -enable-testing

.PHONY: all deps build test browser-check experiments bench fuzz docs clean

all: build

## deps: install the system packages that are missing (and say which)
deps:
	@missing=""; \
	for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing missing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null \
	    || { echo "make deps: apt-get failed; install$$missing by hand and retry" >&2; exit 1; }; \
	fi

## build: the release build of the library and the elbolab tool
build: deps
	$(SWIFT) build -c release --product elbolab

## test: every unit, property and end-to-end test, the browser check of a quick run's page, then
## the README's library example built in a consumer package that depends on ELBOLab by version
## (Tests/consumer/run.sh)
test: deps
	$(SWIFT) build $(TESTFLAGS) --build-tests
	$(SWIFT) test $(TESTFLAGS) --skip-build
	$(MAKE) --no-print-directory browser-check
	Tests/consumer/run.sh

## browser-check: a quick run's results/index.html opened in headless Chromium (Tests/Browser):
## no console error, nothing fetched, the overview renders, a legend click hides a series;
## the screenshot is kept as .build/browser-check/index.png
BROWSERCHECK := .build/browser-check
browser-check:
	$(SWIFT) build $(TESTFLAGS) --product elbolab
	rm -rf $(BROWSERCHECK) && mkdir -p $(BROWSERCHECK)
	$(ELBOLAB) run-all Tests/Browser/specs --output $(BROWSERCHECK)/results --quiet >/dev/null
	python3 Tests/Browser/check_page.py $(BROWSERCHECK)/results/index.html $(BROWSERCHECK)/index.png

## experiments: run every spec in experiments/ and write results/
experiments: build
	$(ELBOLAB) run-all experiments --output results

## bench: throughput and time-to-tolerance benchmarks, written to results/bench/
## (a few minutes; `make bench BENCHFLAGS=--quick` for a short run; Benchmarks/README.md explains)
bench: build
	$(SWIFT) build -c release --product elbolab-bench
	$(RELEASE)/elbolab-bench --output results/bench $(BENCHFLAGS)

## fuzz: libFuzzer on the CSV reader, the spec loader and the parameters reader, FUZZTIME seconds
## each; inputs that reach new code join Tests/FuzzCorpus/, which `make test` replays (Fuzz/README.md)
FUZZTIME    ?= 60
FUZZMAXLEN  ?= 4096
FUZZTARGETS ?= csv spec params
FUZZBUILD   := --package-path Fuzz --scratch-path Fuzz/.build -c release \
               -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld

fuzz: deps
	$(SWIFT) build $(FUZZBUILD)
	FUZZTIME=$(FUZZTIME) FUZZMAXLEN=$(FUZZMAXLEN) Fuzz/run.sh $(FUZZTARGETS)

## docs: the library's API reference, a static DocC site in .build/docs/ (serve the folder, e.g.
## `python3 -m http.server -d .build/docs`, and open /documentation/): the ELBOLab
## page and one per layer module, combined into one site so that pages link across modules;
## then opened in headless Chromium (Tests/Browser/check_docs.py: each module page renders its
## overview, links across modules open their pages; screenshots in .build/docs-check/)
DOCTARGETS := ELBOLab ELBOLabNumerics ELBOLabModel ELBOLabVariational ELBOLabEngines ELBOLabExperiments
docs: deps
	rm -rf .build/docs
	$(SWIFT) package --allow-writing-to-directory .build/docs generate-documentation \
	  $(addprefix --target ,$(DOCTARGETS)) --enable-experimental-combined-documentation \
	  --disable-indexing --transform-for-static-hosting --output-path .build/docs
	python3 Tests/Browser/check_docs.py .build/docs .build/docs-check

clean:
	rm -rf .build Fuzz/.build
