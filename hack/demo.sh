#!/usr/bin/env bash
# The demo on a fresh Debian 12 machine, as root: installs missing Debian
# packages, then runs `make demo` (four pods in a node namespace and their
# connectivity matrix; everything is removed on exit).
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/deps.sh
export PATH="$PATH:/usr/local/go/bin"
exec make demo
