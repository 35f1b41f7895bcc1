# Common commands over CMake (as DuckDB does). `make run` and `make test` are the two commands
# of the README: each installs missing Debian packages first, then configures and builds.
BUILD_DIR ?= build/release
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
SCENARIO ?=
FUZZ_DIR ?= build/fuzz
FUZZ_SECONDS ?= 15
# BROWSER_TESTS=ON installs Debian's chromium and opens a rendered report in it headless.
BROWSER_TESTS ?= OFF
MOESIM := $(BUILD_DIR)/cli/moesim

.PHONY: all deps configure build run test fuzz bench format clean

all: build

deps:
	@MOESIM_EXTRA_PACKAGES="$(MOESIM_EXTRA_PACKAGES) $(if $(filter ON,$(BROWSER_TESTS)),chromium)" \
	  tools/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DMOESIM_WERROR=ON \
	  -DMOESIM_BROWSER_TESTS=$(BROWSER_TESTS) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	@$(MOESIM) run $(SCENARIO)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600
	@$(MAKE) --no-print-directory fuzz

# libFuzzer targets (clang, ASan + UBSan), each run for FUZZ_SECONDS on its seed corpus.
fuzz: deps
	@cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=Release -DMOESIM_WERROR=ON -DMOESIM_FUZZ=ON \
	  -DMOESIM_FUZZ_SECONDS=$(FUZZ_SECONDS) -DMOESIM_BUILD_BENCH=OFF >/dev/null
	@cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzz_targets
	@cd $(FUZZ_DIR) && ctest --output-on-failure -R '^fuzz/'

bench: build
	@for b in $(BUILD_DIR)/bench/bench_*; do echo "== $$b"; $$b --benchmark_counters_tabular=true || exit 1; done

format:
	@find core sim models topologies scenarios analysis cli tests bench -name '*.h' -o -name '*.cpp' | xargs clang-format -i

clean:
	@rm -rf build
