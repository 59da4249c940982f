#!/usr/bin/env bash
# Build (once) the real KEDA — the baseline the autoscaling benchmarks race — from its Go
# module github.com/kedacore/keda/v2 through the wrapper module hack/tools/keda-bins:
#   keda          the operator (scale loop 0<->1, ScaledObject -> HPA, gRPC metrics service)
#   keda-adapter  the metrics API server behind v1beta1.external.metrics.k8s.io
#   crds/         KEDA's CustomResourceDefinitions, copied from the module's config/crd/bases
#   keda-certs    issues the certificate both share (hack/tools/keda-bins/keda-certs, stdlib)
# into .cache/bin/keda-<KEDA_VERSION>_<go version>/, beside the control-plane binaries.
# Built only when missing. Not part of `make bins`: a cold build costs ~15 min of 2 cores
# (docs/autoscaling.md has the measured figures); `make keda` runs it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"
MOD="$HERE/tools/keda-bins"
if ! grep -Eq "^(require )?[[:space:]]*github.com/kedacore/keda/v2 ${KEDA_VERSION}( |\$)" "$MOD/go.mod"; then
  echo "hack/tools/keda-bins/go.mod does not require github.com/kedacore/keda/v2 ${KEDA_VERSION}" \
    "(KEDA_VERSION in hack/versions.env): change both together, then run 'go mod tidy' there" >&2
  exit 2
fi
GOVER=$(go env GOVERSION)
CACHE=${JOBQUEUE_CACHE:-$ROOT/.cache}
OUT="$CACHE/bin/keda-${KEDA_VERSION}_${GOVER}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath

TOTAL=4
# shellcheck source=lib/build-steps.sh
source "$HERE/lib/build-steps.sh"

begin "KEDA ${KEDA_VERSION} operator + metrics API server (~15 min cold on 2 cores)"
if [ -x "$OUT/keda" ] && [ -x "$OUT/keda-adapter" ] && [ -d "$OUT/crds" ]; then say "  cached"; else
  # Build into a scratch directory and move into place at the end, so an interrupted build
  # never leaves a half-filled cache directory that a later run would take as complete.
  tmp="$OUT.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp/crds"
  trap 'rm -rf "$tmp"' EXIT
  # What KEDA's own Makefile stamps (GO_LDFLAGS); -s -w as the control plane.
  ldf="-s -w -X=github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION#v}"
  ldf="$ldf -X=github.com/kedacore/keda/v2/version.GitCommit=module-${KEDA_VERSION}"
  (cd "$MOD" && with_heartbeat keda go build -p 2 -ldflags "$ldf" -o "$tmp/" \
    github.com/kedacore/keda/v2/cmd/operator github.com/kedacore/keda/v2/cmd/adapter)
  mv "$tmp/operator" "$tmp/keda"
  mv "$tmp/adapter" "$tmp/keda-adapter"
  src=$(cd "$MOD" && go list -m -f '{{.Dir}}' github.com/kedacore/keda/v2)
  install -m 0644 "$src"/config/crd/bases/*.yaml "$tmp/crds/"
  rm -rf "$OUT"
  mv "$tmp" "$OUT"
  trap - EXIT
fi

begin "keda-certs (the dev cluster's certificate for KEDA, seconds)"
if [ -x "$OUT/keda-certs" ]; then say "  cached"; else
  (cd "$MOD" && go build -ldflags "-s -w" -o "$OUT/keda-certs.tmp" ./keda-certs)
  mv "$OUT/keda-certs.tmp" "$OUT/keda-certs"
fi

begin "verify"
"$OUT/keda" --help >/dev/null 2>&1 || { echo "$OUT/keda --help failed" >&2; exit 1; }
"$OUT/keda-adapter" --help >/dev/null 2>&1 || { echo "$OUT/keda-adapter --help failed" >&2; exit 1; }
ls "$OUT/crds"

begin "done: KEDA in $OUT ($(du -sh "$OUT" | cut -f1))"
