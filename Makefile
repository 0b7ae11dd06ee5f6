# attnres workflows. `make help` lists them. `make run` and `make test` install what is missing first.
SHELL := /bin/bash
SWIFT ?= swift
RELEASE_BIN := .build/release/attnres
TOPOLOGY ?=
APT_PACKAGES := libzmq3-dev libopenblas-dev pkg-config
# Tools the tests call: rsvg-convert renders the sweep plots, xmllint validates smoke's JUnit XML, script gives a pty.
APT_TEST_TOOLS := librsvg2-bin libxml2-utils bsdutils
# Cluster launchers the launcher tests start workers with (Tests/ClusterTests/LauncherTests.swift): OpenMPI's mpirun,
# and SLURM with munge (scripts/slurm-local.sh runs the daemons for one local node inside a temporary directory).
APT_LAUNCHERS := openmpi-bin slurm-wlm munge
# The whole suite takes about 1.5 min here; a hang must fail fast, not eat CI's time limit. Output is line-buffered
# so a log always shows the test that was running. Swift's crash backtracer is off for tests: seen here, it
# blocked for ever reading a crashed test process's memory while holding the output pipe open.
TEST_TIMEOUT ?= 900
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps build run test smoke sweeps bench fuzz fuzz-build clean

# Fuzzing, not part of `make test` (the regression corpus Tests/Corpus is: the CorpusReplayTests replay it).
# libFuzzer binaries in $(FUZZ_DIR), one per decoder: data-frame, control-message, topology-yaml. SwiftPM builds
# the Cluster target alone (with its chain: Pipeline, Wire, Model, Numerics with OpenBLAS, Yams, swift-log) into
# $(FUZZ_DIR)/spm with -sanitize=fuzzer,address: coverage-instrumented object files and no executable linked, so
# libFuzzer's main clashes with nothing. `swiftc -sanitize=fuzzer,address` (with the toolchain's lld) then links
# each scripts/fuzz/*Target.swift, with the contract file its tests share (Tests/*/…Contract.swift), against
# those object files. Each binary writes its own seeds from this build's encoders (`BINARY --write-seeds=DIR`);
# scripts/fuzz/run.sh runs them, prints inputs executed, exec/s and findings, and fails on any finding.
SWIFTC ?= swiftc
FUZZ_DIR := .build-fuzz
FUZZ_TARGETS ?= data-frame control-message topology-yaml
FUZZ_RUNS ?= 1000000
FUZZ_MAX_LEN ?= 4096
FUZZ_TIMEOUT ?= 10
FUZZ_SWIFTC := $(SWIFTC) -sanitize=fuzzer,address -parse-as-library -use-ld=lld
# Swift modules' objects are read from SwiftPM's output-file-map.json (a stale object of a deleted source would
# clash); the C modules' are all their .o files.
FUZZ_SWIFT_MODULES := Cluster Pipeline Wire Model Numerics Yams Logging
FUZZ_C_MODULES := CSys CKernels CYaml

help: ## list the workflows
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-10s %s\n", $$1, $$2 }'

deps: ## install the C libraries (libzmq, OpenBLAS), the test tools (rsvg-convert, xmllint, script, ip, tc, iptables, tcpdump) and launchers (mpirun, SLURM, munge) with apt-get, and python3's jsonschema and pyzmq (protocol tests), when missing
	@if ! command -v pkg-config >/dev/null || ! pkg-config --exists libzmq || ! pkg-config --exists openblas; then \
	  echo "installing $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@if ! command -v rsvg-convert >/dev/null || ! command -v xmllint >/dev/null || ! command -v script >/dev/null; then \
	  echo "installing $(APT_TEST_TOOLS)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_TEST_TOOLS); \
	fi
	@if ! command -v ip >/dev/null || ! command -v tc >/dev/null || ! command -v iptables >/dev/null; then \
	  echo "installing iproute2 iptables (ip netns, tc: test hosts, scripts/hosts.sh, the shaped-link validation; a firewall inside a test host)"; \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq iproute2 iptables; } || echo "iproute2/iptables not installed: the test-host and shaped-link tests will be skipped"; \
	fi
	@if ! command -v mpirun >/dev/null || ! command -v srun >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then \
	  echo "installing $(APT_LAUNCHERS) (the launcher tests)"; \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_LAUNCHERS); } || echo "$(APT_LAUNCHERS) not installed: the launcher tests will be skipped"; \
	fi
	@if ! command -v tcpdump >/dev/null; then \
	  echo "installing tcpdump (the CURVE capture test)"; \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq tcpdump; } || echo "tcpdump not installed: the capture test will be skipped"; \
	fi
	@if ! python3 -c 'import jsonschema, zmq' 2>/dev/null; then \
	  echo "installing python3 jsonschema pyzmq"; \
	  command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3 python3-pip; }; \
	  python3 -m pip install -q jsonschema pyzmq 2>/dev/null || python3 -m pip install -q --break-system-packages jsonschema pyzmq; \
	fi

build: deps ## build the release binary
	$(SWIFT) build -c release

run: build ## run the default topology on a local cluster and print the per-link table (ARGS="--mode compute" trains for real)
	$(RELEASE_BIN) run $(TOPOLOGY) $(ARGS)

# SwiftPM leaves an empty TemporaryDirectory.XXXXXX (holding only `.keep-directory`) in $TMPDIR on every
# invocation. The build gets a private TMPDIR that is removed afterwards; `swift test` cannot (the tests inherit its
# TMPDIR, and their ipc socket paths must stay short), so the ones it made during this run, still holding nothing
# but that marker, are removed after it.
SWIFTPM_TMP := .build/swiftpm-tmp
test: deps ## build and run the whole test suite (debug build; real worker processes included)
	@mkdir -p $(SWIFTPM_TMP)
	TMPDIR=$(CURDIR)/$(SWIFTPM_TMP) $(SWIFT) build --build-tests; status=$$?; rm -rf $(SWIFTPM_TMP); exit $$status
	@set -o pipefail; touch .build/test-started; \
	  SWIFT_BACKTRACE=enable=no timeout --kill-after=20 $(TEST_TIMEOUT) stdbuf -oL -eL $(SWIFT) test --skip-build --disable-swift-testing 2>&1 | tee .build/test-output.txt; status=$$?; \
	  find "$${TMPDIR:-/tmp}" -maxdepth 1 -type d -name 'TemporaryDirectory.*' -newer .build/test-started 2>/dev/null | while read -r d; do \
	    [ "$$(ls -A "$$d")" = .keep-directory ] && rm -rf "$$d"; done; \
	  if [ $$status = 124 ] || [ $$status = 137 ]; then echo "make test: the suite ran past $(TEST_TIMEOUT) s and was stopped; the last 'started' test above is the one that hung"; fi; \
	  awk -f scripts/test-summary.awk .build/test-output.txt || true; \
	  exit $$status

smoke: build ## the CI step: every variant on a local cluster and a compute run, checked (JUnit XML in .build/smoke.xml)
	$(RELEASE_BIN) smoke --junit .build/smoke.xml

sweeps: build ## regenerate the sweep plots of docs/sweeps.md
	$(RELEASE_BIN) sweep --layers 8..128:x2 --blocks 8 --measure --csv docs/sweeps/layers-8-128.csv --svg docs/sweeps/layers-8-128.svg --json docs/sweeps/layers-8-128.json
	$(RELEASE_BIN) sweep topologies/paper-scale.yaml --layers 9..54:+9 --blocks 9 --csv docs/sweeps/paper-layers.csv --svg docs/sweeps/paper-layers.svg
	$(RELEASE_BIN) sweep topologies/paper-scale.yaml --blocks 1,2,3,6,9,18,27,54 --csv docs/sweeps/paper-blocks.csv --svg docs/sweeps/paper-blocks.svg

# bench model runs twice: the default d = 64 model and a wider d = 256 one (the goals differ by width,
# docs/benchmarks-model.md); the sgemm kernel table is printed once. Both use the depth-attention kernel the CPU
# allows (AVX-512F where present, else AVX2 + FMA; each run also times the step's depth-attention calls alone under
# every kernel the CPU has); a third run pins the baseline kernel (what a CPU without AVX2 runs), no peers.
bench: build ## run the benchmarks (ratios against baselines measured in the same run)
	$(RELEASE_BIN) bench wire
	$(RELEASE_BIN) bench model --repetitions 50
	$(RELEASE_BIN) bench model --layers 16 --hidden 256 --heads 8 --seq 64 --blocks 4 --repetitions 15 --no-kernels
	ATTNRES_DEPTH_KERNEL=baseline $(RELEASE_BIN) bench model --repetitions 50 --no-kernels --no-torch
	$(RELEASE_BIN) bench pipeline
	$(RELEASE_BIN) bench simulate

fuzz-build: deps ## build the libFuzzer binaries (see the comment above) into .build-fuzz
	$(SWIFT) build --build-path $(FUZZ_DIR)/spm --target Cluster -Xswiftc -sanitize=fuzzer,address
	@set -e; bin=$$($(SWIFT) build --build-path $(FUZZ_DIR)/spm --show-bin-path); \
	  objects=$$(for m in $(FUZZ_SWIFT_MODULES); do grep -o '"object": *"[^"]*"' $$bin/$$m.build/output-file-map.json | cut -d'"' -f4; done; \
	    for m in $(FUZZ_C_MODULES); do find $$bin/$$m.build -name '*.o'; done); \
	  flags="-I $$bin/Modules -I Sources/CZeroMQ -I Sources/COpenBLAS -Xcc -fmodule-map-file=$$bin/CSys.build/module.modulemap -Xcc -fmodule-map-file=$$bin/CKernels.build/module.modulemap \
	    -Xcc -fmodule-map-file=$(FUZZ_DIR)/spm/checkouts/Yams/Sources/CYaml/include/module.modulemap \
	    $$(pkg-config --cflags openblas | sed 's/-I/-Xcc -I/g') $$objects -lzmq $$(pkg-config --libs openblas)"; \
	  echo "linking $(FUZZ_DIR)/{data-frame,control-message,topology-yaml} against $$(echo $$objects | wc -w) object files of $$bin"; \
	  $(FUZZ_SWIFTC) -module-name DataFrameFuzz scripts/fuzz/DataFrameTarget.swift Tests/WireTests/DataFrameContract.swift \
	    scripts/fuzz/SeedWriter.swift $$flags -o $(FUZZ_DIR)/data-frame; \
	  $(FUZZ_SWIFTC) -module-name ControlFuzz scripts/fuzz/ControlMessageTarget.swift Tests/ClusterTests/ControlFrameContract.swift \
	    scripts/fuzz/ControlSeeds.swift scripts/fuzz/SeedWriter.swift $$flags -o $(FUZZ_DIR)/control-message; \
	  $(FUZZ_SWIFTC) -module-name TopologyFuzz scripts/fuzz/TopologyTarget.swift $$flags -o $(FUZZ_DIR)/topology-yaml

fuzz: fuzz-build ## fuzz the frame, control-message and topology decoders, FUZZ_RUNS (10^6) inputs each; fails on a crash
	scripts/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_RUNS) $(FUZZ_MAX_LEN) $(FUZZ_TIMEOUT) $(FUZZ_TARGETS)

clean: ## remove build outputs
	rm -rf .build $(FUZZ_DIR)
