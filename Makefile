# The two set-up commands: `make run` and `make test`. Everything else is CMake in build/.
SHELL := /bin/bash
BUILD_DIR ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps configure build test run bench clean format

all: build

deps:
	@deploy/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j$(JOBS) -- --no-print-directory

# Installs what is missing, builds, runs every test; prints ctest's summary line.
# Passing tests are kept in build/ctest.log only; a failing test's output (gtest's messages)
# and the summary are printed.
test: build
	@cd $(BUILD_DIR) && ctest -j$(JOBS) --output-on-failure --timeout 600 | tee ctest.log | \
	  grep -vE "^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* +Passed +[0-9.]+ sec$$|^ *Start +[0-9]+: " ; \
	  exit $${PIPESTATUS[0]}

run: build
	$(BUILD_DIR)/bin/pageownerd

bench: build
	$(BUILD_DIR)/bin/pageowner-bench memory

format:
	@clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD_DIR)
