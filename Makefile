# attnres workflows. `make help` lists them. `make run` and `make test` install what is missing first.
SHELL := /bin/bash
SWIFT ?= swift
RELEASE_BIN := .build/release/attnres
TOPOLOGY ?=
APT_PACKAGES := libzmq3-dev libopenblas-dev pkg-config
# The whole suite takes about 1.5 min here; a hang must fail fast, not eat CI's time limit. Output is line-buffered
# so a log always shows the test that was running. Swift's crash backtracer is off for tests: seen here, it
# blocked for ever reading a crashed test process's memory while holding the output pipe open.
TEST_TIMEOUT ?= 900
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps build run test bench clean

help: ## list the workflows
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-7s %s\n", $$1, $$2 }'

deps: ## install the C libraries (libzmq, OpenBLAS) with apt-get when pkg-config cannot find them
	@if ! command -v pkg-config >/dev/null || ! pkg-config --exists libzmq || ! pkg-config --exists openblas; then \
	  echo "installing $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi

build: deps ## build the release binary
	$(SWIFT) build -c release

run: build ## run the default topology on a local cluster and print the per-link table (ARGS="--mode compute" trains for real)
	$(RELEASE_BIN) run $(TOPOLOGY) $(ARGS)

test: deps ## build and run the whole test suite (debug build; real worker processes included)
	$(SWIFT) build --build-tests
	@set -o pipefail; SWIFT_BACKTRACE=enable=no timeout --kill-after=20 $(TEST_TIMEOUT) stdbuf -oL -eL $(SWIFT) test --skip-build --disable-swift-testing 2>&1 | tee .build/test-output.txt; status=$$?; \
	  if [ $$status = 124 ] || [ $$status = 137 ]; then echo "make test: the suite ran past $(TEST_TIMEOUT) s and was stopped; the last 'started' test above is the one that hung"; fi; \
	  awk '/Executed [0-9]+ tests?, with [0-9]+ failures?/ { n=$$2; f=$$5 } END { if (n != "") printf "%d passed, %d failed\n", n-f, f }' .build/test-output.txt; \
	  exit $$status

# bench model runs twice: the default d = 64 model and a wider d = 256 one (the goals differ by width,
# docs/benchmarks-model.md); the sgemm kernel table is printed once.
bench: build ## run the benchmarks (ratios against baselines measured in the same run)
	$(RELEASE_BIN) bench wire
	$(RELEASE_BIN) bench model --repetitions 50
	$(RELEASE_BIN) bench model --layers 16 --hidden 256 --heads 8 --seq 64 --blocks 4 --repetitions 15 --no-kernels
	$(RELEASE_BIN) bench pipeline

clean: ## remove build outputs
	rm -rf .build
