#!/usr/bin/env bash
# Installs the Debian packages weir's tests and demo need, only those missing.
# Debian 12, as root. Go itself is expected at /usr/local/go (or on PATH).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have make || need+=(make)
have ip || need+=(iproute2)
have nft || need+=(nftables)
have iptables || need+=(iptables)
have socat || need+=(socat)
have ipset || need+=(ipset) # bench-api-to-kernel -peer kube-router
have git || need+=(git)
[ -e /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)

if ((${#need[@]})); then
	echo "hack/deps.sh: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null
fi

export PATH="$PATH:/usr/local/go/bin"
if ! have go; then
	echo "hack/deps.sh: Go not found (expected /usr/local/go/bin/go, Go 1.26)" >&2
	exit 1
fi
