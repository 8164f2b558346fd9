#!/bin/sh
# build-k8s.sh builds the etcd and kube-apiserver binaries the API-server
# tests (integration/kube) start, from Go modules only, and caches them by
# version under ${WEIR_CACHE:-$HOME/.cache/weir}/bin. It is idempotent: a
# binary already in the cache is not rebuilt, so only the first run on a
# machine pays. Measured on 2 cores: cold (empty Go build cache) etcd 2-5
# min, kube-apiserver 20-50 min (1.4 GB of modules, 5.5 GB of build cache);
# with a warm Go build cache 15 s and 90 s; binaries present: instant.
#
# `go install module@version` refuses both (their go.mod files carry replace
# directives), so each is built from a small wrapper module that requires
# the upstream module; for kubernetes the wrapper also replaces every
# ./staging/... module with its published v0.X.Y version, a list read from
# upstream's own go.mod as the module proxy serves it.
#
# Environment: WEIR_CACHE (cache root), ETCD_VERSION, K8S_VERSION,
# WEIR_BUILD_JOBS (go build -p; default: the go default).
set -eu

ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
K8S_VERSION=${K8S_VERSION:-v1.37.2}
CACHE=${WEIR_CACHE:-$HOME/.cache/weir}
BIN=$CACHE/bin
# k8s.io/kubernetes v1.X.Y publishes its staging modules as v0.X.Y.
STAGING_VERSION=v0.${K8S_VERSION#v1.}

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
}

# build DIR PKG OUT [LDFLAGS]
build() {
	start=$(date +%s)
	(cd "$1" && go mod tidy && go build -mod=mod $PFLAG -ldflags="${4:-}" -o "$3.tmp" "$2")
	mv "$3.tmp" "$3"
	log "built $3 in $(($(date +%s) - start))s"
}

mkdir -p "$BIN"

ETCD_BIN=$BIN/etcd-$ETCD_VERSION
if [ -x "$ETCD_BIN" ]; then
	log "have $ETCD_BIN"
else
	dir=$CACHE/etcdbuild-$ETCD_VERSION
	wrapper "$dir" weiretcdbuild go.etcd.io/etcd/server/v3
	printf '\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >>"$dir/go.mod.new"
	finish "$dir"
	log "building etcd $ETCD_VERSION in $dir"
	build "$dir" go.etcd.io/etcd/server/v3 "$ETCD_BIN"
fi

APISERVER_BIN=$BIN/kube-apiserver-$K8S_VERSION
if [ -x "$APISERVER_BIN" ]; then
	log "have $APISERVER_BIN"
else
	dir=$CACHE/k8sbuild-$K8S_VERSION
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
	log "building kube-apiserver $K8S_VERSION in $dir ($n staging modules at $STAGING_VERSION)"
	# Stamp the version /version reports (a plain go build says v0.0.0-master).
	minor=${K8S_VERSION#v1.}
	minor=${minor%%.*}
	v=k8s.io/component-base/version
	build "$dir" k8s.io/kubernetes/cmd/kube-apiserver "$APISERVER_BIN" \
		"-X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
fi

echo "$ETCD_BIN"
echo "$APISERVER_BIN"
