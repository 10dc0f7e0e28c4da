# The two set-up commands: `make run` and `make test`. Everything else is CMake in build/.
SHELL := /bin/bash
BUILD_DIR ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps configure build test run bench soak clean format crash-test install

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

# `make run ARGS="--memory=1GiB --tracking=false"`: ARGS go to pageownerd after the defaults.
ARGS ?=
run: build
	$(BUILD_DIR)/bin/pageownerd --data_dir=$(BUILD_DIR)/pageownerd-data $(ARGS)

# The long kill -9 / power-cut run of issue 12 (`make test` runs 20 cycles).
CYCLES ?= 1000
crash-test: build
	PAGEOWNER_CRASH_CYCLES=$(CYCLES) $(BUILD_DIR)/tests/crash_test --gtest_filter='*KillNineCycles*'

bench: build
	$(BUILD_DIR)/bin/pageowner-bench memory

# The soak of issue 10: SOAK_STREAMS streams flat out for SOAK_SECONDS, then 10x the limits.
SOAK_SECONDS ?= 600
SOAK_STREAMS ?= 64
soak: build
	$(BUILD_DIR)/bin/pageowner-bench soak --seconds=$(SOAK_SECONDS) --streams=$(SOAK_STREAMS)

# `make install` (PREFIX=/usr/local, where the systemd unit expects the binaries; DESTDIR for
# staging): see CMakeLists.txt's install rules.
PREFIX ?= /usr/local
install: build
	@DESTDIR=$(DESTDIR) cmake --install $(BUILD_DIR) --prefix $(PREFIX)

format:
	@clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD_DIR)

# ---- Fuzzing, sanitizers and thread-safety analysis (issue 14; clang-14 from Debian) ----
# Each builds with -j$(SAN_JOBS), beside the normal build.
CLANG_CC ?= clang-14
CLANG_CXX ?= clang++-14
SAN_JOBS ?= 2
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= dump_import ftrace sort tracepoint_format kallsyms replay wire
# -O1 and line tables only: faster to build, and what OSS-Fuzz uses.
SAN_CMAKE = -DCMAKE_C_COMPILER=$(CLANG_CC) -DCMAKE_CXX_COMPILER=$(CLANG_CXX) \
  -DPAGEOWNER_BUILD_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only"
SAN_ENV = ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1 \
  LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp:print_suppressions=0 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
UBSAN_FLAGS = -fsanitize=undefined -fno-sanitize-recover=undefined

.PHONY: san-configure fuzz-build fuzz test-asan test-tsan check-thread-safety

# One clang build directory, build-asan/, serves three legs, so that the sources are compiled
# with clang once and not three times: everything in it is built with ASan + UBSan, with
# libFuzzer's coverage instrumentation (fuzzer-no-link; in the test executables the sanitizer
# runtime supplies its hooks) and with -Wthread-safety as errors. `make check-thread-safety`
# builds the libraries there, `make fuzz` the *_fuzzer targets, `make test-asan` everything.
TSA_FLAGS = -Wthread-safety -Wthread-safety-beta -Werror=thread-safety -Werror=thread-safety-beta
ASAN_FLAGS = -fsanitize=address,fuzzer-no-link $(UBSAN_FLAGS) -fno-omit-frame-pointer $(TSA_FLAGS)
san-configure: deps
	@cmake -S . -B build-asan $(SAN_CMAKE) -DPAGEOWNER_FUZZ=ON \
	  -DCMAKE_CXX_FLAGS="$(ASAN_FLAGS)" -DCMAKE_C_FLAGS="$(ASAN_FLAGS)" >/dev/null

# Every fuzz target, in build-asan/fuzz/.
fuzz-build: san-configure
	@cmake --build build-asan -j$(SAN_JOBS) --target $(FUZZ_TARGETS:%=%_fuzzer) -- --no-print-directory

# Runs each target for FUZZ_SECONDS from its seed corpus and dictionary; prints exec/s, edges
# and corpus size a target. A crash fails it and leaves the input in build-asan/artifacts/.
fuzz: fuzz-build
	@$(SAN_ENV) fuzz/run_fuzzers.sh build-asan $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The whole ctest suite under ASan + UBSan (leaks included); any report fails the test. Left
# out: KernelRecordE2eTest.MirrorsTheLiveKernel, which compares the daemon with the live kernel
# read after the recorder exits; the sanitized recorder drains and exits seconds later, and what
# other processes free meanwhile pushes its agreement (b) under the 0.97 it asserts (0.74 and
# 0.88 measured; no sanitizer report in those runs). The normal `make test` runs it.
ASAN_EXCLUDE ?= ^KernelRecordE2eTest\.MirrorsTheLiveKernel$$
test-asan: san-configure
	@cmake --build build-asan -j$(SAN_JOBS) -- --no-print-directory
	@cd build-asan && $(SAN_ENV) ctest -j$(SAN_JOBS) -E '$(ASAN_EXCLUDE)' --output-on-failure --timeout 1800 | \
	  tee ctest.log | grep -vE "^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* +Passed +[0-9.]+ sec$$|^ *Start +[0-9]+: " ; \
	  exit $${PIPESTATUS[0]}

# TSan over the tests whose concurrency is ours: the depot's lock-free readers, the shared
# machine, the ingest writer and its streams. Abseil comes from Debian uninstrumented:
# PAGEOWNER_TSAN links tests/support/tsan_absl_mutex.cc into each test, which tells TSan what
# absl::Mutex orders (without it every guarded member used by two threads is reported), and
# tsan_absl_mutex_test checks that it does. gRPC and protobuf are uninstrumented too, and their
# own synchronization cannot be annotated from outside: tests that run through gRPC's threads
# are left out (session_test: 123 reports, every one inside gRPC's slices, arenas and sockets).
TSAN_TESTS ?= tsan_absl_mutex_test stack_depot_test shared_machine_test ingest_test
test-tsan: deps
	@cmake -S . -B build-tsan $(SAN_CMAKE) -DPAGEOWNER_TSAN=ON -DCMAKE_CXX_FLAGS="-fsanitize=thread" \
	  -DCMAKE_C_FLAGS="-fsanitize=thread" >/dev/null
	@cmake --build build-tsan -j$(SAN_JOBS) --target $(TSAN_TESTS) -- --no-print-directory
	@for t in $(TSAN_TESTS); do \
	  $(SAN_ENV) build-tsan/tests/$$t --gtest_brief=1 >build-tsan/$$t.log 2>&1 || \
	    { cat build-tsan/$$t.log; echo "test-tsan: $$t FAILED"; exit 1; }; \
	  echo "test-tsan: $$t: $$(grep -oE '[0-9]+ tests? from [0-9]+ test suites? ran' build-tsan/$$t.log), 0 reports"; \
	done

# Clang's -Wthread-safety over every library (ABSL_GUARDED_BY and friends), as errors, in
# build-asan/ (its tests and fuzz targets are compiled with the same flags).
check-thread-safety: san-configure
	@cmake --build build-asan -j$(SAN_JOBS) --target pageowner_core pageowner_wire pageowner_server \
	  pageowner_client pageowner_cli pageowner_kernel_recorder -- --no-print-directory
	@echo "check-thread-safety: clean"
