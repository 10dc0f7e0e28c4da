#!/usr/bin/env bash
# `make install`'s rules (cmake --install), into a staging prefix: every file lands where the
# systemd unit and `pageowner record -- CMD` expect it, and the installed binaries run.
# Usage: install_test.sh BUILD_DIR
set -euo pipefail
build=$1
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cmake --install "$build" --prefix "$stage/usr/local" >/dev/null
want=(
  usr/local/bin/pageownerd
  usr/local/bin/pageowner
  usr/local/lib/pageowner/libpageowner_preload.so
  usr/local/lib/systemd/system/pageownerd.service
  usr/local/share/pageowner/systemd/pageownerd-tls.conf
  usr/local/share/pageowner/systemd/pageownerd.default
  usr/local/share/doc/pageowner/README.md
  usr/local/share/doc/pageowner/BENCHMARKS.md
  usr/local/share/doc/pageowner/REPLAY_FORMAT.md
)
fail=0
for f in "${want[@]}"; do
  if [[ ! -f "$stage/$f" ]]; then
    echo "install_test: missing $f" >&2
    fail=1
  fi
done
unit="$stage/usr/local/lib/systemd/system/pageownerd.service"
# The unit names what was installed: its binary and its documentation.
exec_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
doc_path=$(sed -n 's|^Documentation=file://||p' "$unit")
[[ -x "$stage$exec_path" ]] || { echo "install_test: ExecStart $exec_path not installed" >&2; fail=1; }
[[ -f "$stage$doc_path" ]] || { echo "install_test: Documentation $doc_path not installed" >&2; fail=1; }
"$stage/usr/local/bin/pageownerd" --version | grep -q '^pageownerd ' ||
  { echo "install_test: the installed pageownerd does not run" >&2; fail=1; }
"$stage/usr/local/bin/pageowner" --version | grep -q '^pageowner ' ||
  { echo "install_test: the installed pageowner does not run" >&2; fail=1; }
exit $fail
