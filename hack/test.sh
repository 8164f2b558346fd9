#!/usr/bin/env bash
# The full test suite on a fresh Debian 12 machine, as root: installs what is
# missing (Debian packages; cnitool, bridge and host-local at fixed versions
# into bin/tools; etcd and kube-apiserver via hack/build-k8s.sh), then runs
# `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/deps.sh
export PATH="$PATH:/usr/local/go/bin"
make tools
# The API-server tests (integration/kube) need etcd and kube-apiserver built
# from Go modules; the script caches them, so only a machine's first run pays.
if [ -x hack/build-k8s.sh ]; then
	hack/build-k8s.sh
fi
exec make test
