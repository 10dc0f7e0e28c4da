#!/usr/bin/env bash
# Installs the Debian (bookworm) packages pageowner needs to build and test.
# Idempotent: installs only what is missing, runs `apt-get update` once when it must,
# and prints nothing when everything is already there. Runs as root or through sudo.
# --build-only: just what building pageownerd and pageowner takes (the Dockerfile's build stage),
# without the test, benchmark and tooling packages (prometheus, golang, chromium, clang, ...).
set -euo pipefail

build_only=false
[ "${1:-}" = "--build-only" ] && build_only=true

build_packages=(
  build-essential
  cmake
  make
  pkg-config
  libabsl-dev
  libgrpc++-dev
  liblzma-dev
  libunwind-dev
  libdw-dev
  zlib1g-dev
  libprotobuf-dev
  protobuf-compiler
  protobuf-compiler-grpc
  libcpp-httplib-dev
  nlohmann-json3-dev
  libdw-dev
  golang-github-google-pprof-dev
  git
)

packages=(
  build-essential
  cmake
  make
  pkg-config
  libabsl-dev
  libgtest-dev
  libgmock-dev
  libbenchmark-dev
  libgrpc++-dev
  liblzma-dev
  zlib1g-dev
  libprotobuf-dev
  protobuf-compiler
  protobuf-compiler-grpc
  libcpp-httplib-dev
  nlohmann-json3-dev
  prometheus
  python3-grpcio
  python3-protobuf
  python3-yaml
  xz-utils
  # pprof: profile.proto compiled into the daemon, the real `go tool pprof` for its tests, and
  # chromium to test the web page in a real browser.
  golang-github-google-pprof-dev
  golang-go
  chromium
  # clang-14 and its runtimes: libFuzzer, ASan/UBSan/TSan, -Wthread-safety (make fuzz, test-asan,
  # test-tsan, check-thread-safety); llvm-14 for llvm-symbolizer in sanitizer reports.
  clang-14
  libclang-rt-14-dev
  llvm-14
)

if $build_only; then
  packages=("${build_packages[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "install-deps: missing packages (${missing[*]}) and not root, no sudo" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
