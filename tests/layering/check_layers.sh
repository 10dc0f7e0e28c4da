#!/usr/bin/env bash
# The layering as a check: each folder includes only what is below it.
#   core/   no gRPC, no protobuf, nothing of wire/, server/, client/
#   wire/   core and the generated proto only (no server/, client/)
#   server/ and client/ never include each other
# Usage: check_layers.sh SOURCE_DIR. Prints every offending include; exit 1 when there is one.
set -uo pipefail
if [[ "${1:-}" == "--self-test" ]]; then  # the check must catch a core header that includes gRPC
  d=$(mktemp -d)
  mkdir "$d/core" "$d/wire" "$d/server" "$d/client"
  echo '#include "grpcpp/grpcpp.h"' >"$d/core/x.h"
  "$0" "$d" >/dev/null
  rc=$?
  rm -rf "$d"
  [[ $rc -eq 1 ]] && echo "self-test: caught" && exit 0
  echo "self-test: a core file including grpcpp/grpcpp.h was not caught"
  exit 1
fi
root="${1:?source dir}"
bad=0
check() {  # folder, extended regex of forbidden includes, why
  local hits
  hits=$(grep -RnE --include='*.h' --include='*.cc' "^#include [<\"]($2)" "$root/$1" 2>/dev/null)
  if [[ -n "$hits" ]]; then
    echo "$1/ must not include $3:"
    echo "$hits"
    bad=1
  fi
}
check core 'server/|client/|wire/|grpc|grpcpp/|google/protobuf/|pageowner/v1/|.*\.pb\.h' \
  'gRPC, protobuf, or a layer above it'
check wire 'server/|client/' 'the server or the client'
check server 'client/' 'the client'
check client 'server/' 'the server'
exit $bad
