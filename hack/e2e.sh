#!/usr/bin/env bash
# hack/e2e.sh [--keep] [--down] [weir-e2e run flags]
#
# Brings up a real multi-node Kubernetes cluster on this machine (control
# plane and two worker nodes in namespaces of their own, containerd +
# kubelet + kube-proxy in nftables mode per node), installs weir with
# `kubectl apply -f deploy/weir.yaml`, runs the upstream NetworkPolicy e2e,
# the Pods networking and Service specs and weir's own checks, prints a
# results table, tears everything down and compares the machine's own
# namespaces with their state before. Exits non-zero if anything failed.
# With the upstream suites it runs the ClusterNetworkPolicy conformance
# suite of sigs.k8s.io/network-policy-api (at the version weir's go.mod
# requires; its experimental CRD applied from the module as it is).
#
#   --keep   leave the cluster up and print how to reach it
#   --down   remove a kept cluster
#
# Root, Debian 12. The first run on a machine builds every Kubernetes binary
# from Go modules (hack/build-k8s.sh all: about an hour on 2 cores); later
# runs reuse the cache. Results: /var/tmp/weir-e2e/runs/<time>/ (JUnit XML,
# logs, summary.md). Too long for CI: run it by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
[ "$(id -u)" = 0 ] || { echo "hack/e2e.sh: run as root" >&2; exit 1; }

mode=run
args=()
for a in "$@"; do
	case $a in
	--keep) args+=(-keep) ;;
	--down) mode=down ;;
	*) args+=("$a") ;;
	esac
done

if [ "$mode" = down ]; then
	[ -x bin/weir-e2e ] || go build -o bin/weir-e2e ./cmd/weir-e2e
	exec bin/weir-e2e down "${args[@]}"
fi

start=$(date +%s)
source hack/deps.sh
need=()
for p in containerd runc busybox-static dash bash curl netcat-openbsd; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
	echo "hack/e2e.sh: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null
fi

# Kubernetes binaries (cached by version), weir's binaries, the node's
# loopback CNI plugin and the ginkgo CLI at the version e2e.test uses.
hack/build-k8s.sh all >/dev/null
make --no-print-directory build
# The cluster's DNS add-on (CoreDNS, as kubeadm and kind install it).
COREDNS_VERSION=v1.15.0
coredns=${WEIR_CACHE:-$HOME/.cache/weir}/bin/coredns-$COREDNS_VERSION
if [ ! -x "$coredns" ]; then
	tmp=$(mktemp -d)
	GOBIN=$tmp CGO_ENABLED=0 go install "github.com/coredns/coredns@$COREDNS_VERSION"
	mv "$tmp/coredns" "$coredns"
	rm -rf "$tmp"
fi
PLUGINS_VERSION=$(sed -n 's/^PLUGINS_VERSION *:= *//p' Makefile)
[ -x bin/tools/loopback ] || GOBIN=$PWD/bin/tools go install "github.com/containernetworking/plugins/plugins/main/loopback@$PLUGINS_VERSION"
K8S_VERSION=${K8S_VERSION:-v1.37.2}
gomod=$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/go.mod
ginkgo_version=$(awk '$1 == "github.com/onsi/ginkgo/v2" { print $2; exit }' "$gomod")
ginkgo=bin/tools/ginkgo-$ginkgo_version
if [ -n "$ginkgo_version" ] && [ ! -x "$ginkgo" ]; then
	tmp=$(mktemp -d)
	GOBIN=$tmp go install "github.com/onsi/ginkgo/v2/ginkgo@$ginkgo_version" && mv "$tmp/ginkgo" "$ginkgo"
	rm -rf "$tmp"
fi
ginkgo_flag=()
[ -x "$ginkgo" ] && ginkgo_flag=(-ginkgo "$PWD/$ginkgo")

# The ClusterNetworkPolicy conformance suite (built above) and the CRD
# from the same module, as the module cache holds it.
cnp_test=$(hack/build-k8s.sh cnp-conformance.test)
cnp_crd=$(go list -m -f '{{.Dir}}' sigs.k8s.io/network-policy-api)/config/crd/experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml

build=$(($(date +%s) - start))
exec bin/weir-e2e run -build-seconds "$build" -k8s-version "$K8S_VERSION" \
	-coredns "$coredns" -weir-bin "$PWD/bin" -cni-bin "$PWD/bin/tools" -manifest "$PWD/deploy/weir.yaml" \
	-cnp-test "$cnp_test" -cnp-crd "$cnp_crd" "${ginkgo_flag[@]}" "${args[@]}"
