#!/bin/sh
# build-k8s.sh [COMPONENT...] builds Kubernetes binaries from Go modules only
# and caches them by version under ${WEIR_CACHE:-$HOME/.cache/weir}/bin as
# NAME-VERSION. With no argument it builds what the API-server tests
# (integration/kube) start: etcd and kube-apiserver. hack/e2e.sh asks for
# `all`: those plus kubelet, kube-controller-manager, kube-scheduler,
# kube-proxy, kubectl, e2e.test (the upstream e2e suite), agnhost (the
# e2e tests' server image) and cnp-conformance.test (the ClusterNetworkPolicy
# conformance suite of sigs.k8s.io/network-policy-api). It is idempotent: a binary already in the cache
# is not rebuilt, so only the first run on a machine pays. Measured on 2
# cores: cold (empty Go build cache) etcd 2-5 min, kube-apiserver 20-50 min
# (1.4 GB of modules, 5.5 GB of build cache), each further binary 5-8 min;
# with a warm Go build cache seconds to 90 s; binaries present: instant.
# It prints the path of each binary it was asked for.
#
# `go install module@version` refuses these (their go.mod files carry
# replace directives), so each is built from a small wrapper module that
# requires the upstream module; for kubernetes the wrapper also replaces
# every ./staging/... module with its published v0.X.Y version, a list read
# from upstream's own go.mod as the module proxy serves it.
#
# Environment: WEIR_CACHE (cache root), ETCD_VERSION, K8S_VERSION,
# WEIR_BUILD_JOBS (go build -p; default: the go default).
set -eu

# weir's own go.mod: the network-policy-api version and the k8s.io/*
# versions the conformance suite is built against.
GOMOD=$(cd "$(dirname "$0")/.." && pwd)/go.mod

ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
K8S_VERSION=${K8S_VERSION:-v1.37.2}
CACHE=${WEIR_CACHE:-$HOME/.cache/weir}
BIN=$CACHE/bin
# k8s.io/kubernetes v1.X.Y publishes its staging modules as v0.X.Y.
STAGING_VERSION=v0.${K8S_VERSION#v1.}
K8S_COMPONENTS="kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy kubectl e2e.test agnhost"

export CGO_ENABLED=0 GOTOOLCHAIN=local
PFLAG=""
if [ -n "${WEIR_BUILD_JOBS:-}" ]; then PFLAG="-p ${WEIR_BUILD_JOBS}"; fi

log() { printf 'build-k8s: %s\n' "$*" >&2; }

# wrapper DIR MODULE IMPORT: write a module that blank-imports IMPORT.
wrapper() {
	mkdir -p "$1"
	printf 'module %s\n\ngo %s\n' "$2" "$(go env GOVERSION | sed 's/^go//')" >"$1/go.mod.new"
	printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$3" >"$1/tools.go"
}

# finish DIR: install the generated go.mod; tidy fills in the rest.
finish() {
	mv "$1/go.mod.new" "$1/go.mod"
	rm -f "$1/go.sum"
	(cd "$1" && go mod tidy)
}

# build DIR PKG OUT [LDFLAGS]: go build, or go test -c for a test binary.
build() {
	start=$(date +%s)
	case $3 in
	*/e2e.test-* | */cnp-conformance.test-*) (cd "$1" && go test -c -mod=mod $PFLAG -ldflags="${4:-}" -o "$3.tmp" "$2") ;;
	*) (cd "$1" && go build -mod=mod $PFLAG -ldflags="${4:-}" -o "$3.tmp" "$2") ;;
	esac
	mv "$3.tmp" "$3"
	log "built $3 in $(($(date +%s) - start))s"
}

etcd() {
	out=$BIN/etcd-$ETCD_VERSION
	if [ ! -x "$out" ]; then
		dir=$CACHE/etcdbuild-$ETCD_VERSION
		wrapper "$dir" weiretcdbuild go.etcd.io/etcd/server/v3
		printf '\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >>"$dir/go.mod.new"
		finish "$dir"
		log "building etcd $ETCD_VERSION in $dir"
		build "$dir" go.etcd.io/etcd/server/v3 "$out"
	fi
	echo "$out"
}

# k8swrapper: the one wrapper module every Kubernetes binary builds from,
# so they share one module graph and build cache.
k8swrapper() {
	dir=$CACHE/k8sbuild-$K8S_VERSION
	[ -f "$dir/go.mod" ] && return 0
	wrapper "$dir" weirk8sbuild k8s.io/kubernetes/cmd/kube-apiserver
	# go mod download fetches through whatever GOPROXY is configured and
	# names the cached .mod file; the replace list comes from it.
	upstream=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
	if [ ! -f "$upstream" ]; then
		log "cannot find the go.mod of k8s.io/kubernetes@$K8S_VERSION"
		exit 1
	fi
	printf '\nrequire k8s.io/kubernetes %s\n\n' "$K8S_VERSION" >>"$dir/go.mod.new"
	n=$(awk -v v="$STAGING_VERSION" '$2 == "=>" && $3 ~ /^\.\/staging\// {
		printf "replace %s => %s %s\n", $1, $1, v; n++ } END { print n + 0 > "/dev/stderr" }' \
		"$upstream" 2>&1 >>"$dir/go.mod.new")
	if [ "$n" -eq 0 ]; then
		log "no ./staging replaces found in $upstream"
		exit 1
	fi
	finish "$dir"
	log "wrapper module $dir ($n staging modules at $STAGING_VERSION)"
}

k8s() {
	out=$BIN/$1-$K8S_VERSION
	if [ ! -x "$out" ]; then
		k8swrapper
		case $1 in
		e2e.test) pkg=k8s.io/kubernetes/test/e2e ;;
		agnhost) pkg=k8s.io/kubernetes/test/images/agnhost ;;
		*) pkg=k8s.io/kubernetes/cmd/$1 ;;
		esac
		log "building $1 $K8S_VERSION"
		# Stamp the version /version and the nodes report (a plain go
		# build says v0.0.0-master).
		minor=${K8S_VERSION#v1.}
		minor=${minor%%.*}
		v=k8s.io/component-base/version
		build "$CACHE/k8sbuild-$K8S_VERSION" "$pkg" "$out" \
			"-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
	fi
	echo "$out"
}

# modversion MODULE: MODULE's version in weir's go.mod.
modversion() {
	awk -v m="$1" '($1 == "require" ? $2 : $1) == m { print ($1 == "require" ? $3 : $2); exit }' "$GOMOD"
}

# cnpconformance: the test binary of sigs.k8s.io/network-policy-api's
# conformance package at the version weir's go.mod requires, with k8s.io/*
# at weir's versions (apiextensions-apiserver, which weir does not use, at
# k8s.io/api's). Its own wrapper module keeps controller-runtime and the
# rest of the suite's dependencies out of weir's go.mod. No go mod tidy:
# the main module imports nothing of the suite, so tidy would drop the
# pins; go test -mod=mod adds the rest at the versions the graph names.
cnpconformance() {
	v=$(modversion sigs.k8s.io/network-policy-api)
	if [ -z "$v" ]; then
		log "sigs.k8s.io/network-policy-api is not in $GOMOD"
		exit 1
	fi
	out=$BIN/cnp-conformance.test-$v
	if [ ! -x "$out" ]; then
		dir=$CACHE/cnpbuild-$v
		wrapper "$dir" weircnpbuild sigs.k8s.io/network-policy-api/conformance
		printf '\nrequire sigs.k8s.io/network-policy-api %s\n' "$v" >>"$dir/go.mod.new"
		awk '($1 == "require" ? $2 : $1) ~ /^k8s\.io\// {
			print "require", ($1 == "require" ? $2 " " $3 : $1 " " $2) }' "$GOMOD" >>"$dir/go.mod.new"
		printf 'require k8s.io/apiextensions-apiserver %s\n' "$(modversion k8s.io/api)" >>"$dir/go.mod.new"
		mv "$dir/go.mod.new" "$dir/go.mod"
		log "building the network-policy-api $v conformance suite in $dir"
		build "$dir" sigs.k8s.io/network-policy-api/conformance "$out"
	fi
	echo "$out"
}

mkdir -p "$BIN"
[ $# -gt 0 ] || set -- etcd kube-apiserver
[ "$*" = all ] && set -- etcd $K8S_COMPONENTS cnp-conformance.test
for c in "$@"; do
	case " etcd $K8S_COMPONENTS cnp-conformance.test " in
	*" $c "*) ;;
	*)
		log "unknown component $c (etcd $K8S_COMPONENTS cnp-conformance.test, or all)"
		exit 2
		;;
	esac
done
for c in "$@"; do
	case $c in
	etcd) etcd ;;
	cnp-conformance.test) cnpconformance ;;
	*) k8s "$c" ;;
	esac
done
