# weir — build, test, bench and demo. `make help` lists the targets.
# test, bench and demo need root (they create network namespaces).

SHELL       := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO          ?= go
# Static binaries; no VCS stamping, so a tree without git still builds.
export CGO_ENABLED := 0
export GOFLAGS     ?= -buildvcs=false

BIN       := $(CURDIR)/bin
TOOLS_BIN := $(BIN)/tools
# cmd/<name> is built when it holds a main package.
CMDS := $(shell for c in weir weir-agent weirctl weir-install pause weir-e2e; do grep -qs '^package main' cmd/$$c/*.go && echo $$c; done)

CNITOOL_VERSION := v1.3.1
PLUGINS_VERSION := v1.10.0
TEST_TIMEOUT    ?= 40m
FUZZ_TIME       ?= 20s

.PHONY: help build weir test unit integration fuzz bench demo tools clean

help:
	@echo "build        static binaries into bin/: $(CMDS)"
	@echo "test         vet, unit tests, fuzz (conf), root netns integration tests"
	@echo "bench        plugin ADD/DEL vs bridge+host-local, ruleset sync, datapath and API-to-kernel latency, beside kube-router (root)"
	@echo "demo         wire 6 pods, print a connectivity matrix, enforce the talk policies, print it again with reasons (root)"
	@echo "tools        install cnitool $(CNITOOL_VERSION), bridge and host-local $(PLUGINS_VERSION) into bin/tools"
	@echo "clean        remove bin/"

build:
	@mkdir -p $(BIN)
	@for c in $(CMDS); do \
		echo "$(GO) build -trimpath -o bin/$$c ./cmd/$$c"; \
		$(GO) build -trimpath -o $(BIN)/$$c ./cmd/$$c || exit 1; \
	done

# Just the plugin, for bench and demo.
weir:
	$(GO) build -trimpath -o $(BIN)/weir ./cmd/weir

# Every step runs even when an earlier one fails, so one report shows all
# failures; the exit status is non-zero if any step failed.
TEST_STEPS = \
	"$(GO) vet ./..." \
	"$(GO) vet -tags integration ./..." \
	"$(GO) test -count=1 ./..." \
	"$(MAKE) --no-print-directory fuzz" \
	"PATH=$(TOOLS_BIN):$$PATH $(GO) test -tags integration -p 1 -count=1 -timeout $(TEST_TIMEOUT) ./..."

test: build tools
	@[ "$$(id -u)" = 0 ] || { echo "make test: run as root (the integration tests create network namespaces)"; exit 1; }
	@failed=(); \
	for step in $(TEST_STEPS); do \
		echo "$$step"; \
		eval "$$step" || failed+=("$$step"); \
	done; \
	if (( $${#failed[@]} )); then printf 'make test: FAILED: %s\n' "$${failed[@]}"; exit 1; fi

fuzz:
	@if grep -qs 'func FuzzLoad' conf/*_test.go; then \
		echo "$(GO) test -run='^$$' -fuzz=FuzzLoad -fuzztime=$(FUZZ_TIME) ./conf"; \
		$(GO) test -run='^$$' -fuzz=FuzzLoad -fuzztime=$(FUZZ_TIME) ./conf; \
	fi

# The benchmark peer (bench/kube-router/go.mod: never shipped), built once
# (about 4 minutes) into the cache hack/build-k8s.sh uses. Defined before
# bench, whose prerequisites make expands as it reads them.
KUBE_ROUTER := $(or $(WEIR_CACHE),$(HOME)/.cache/weir)/bin/kube-router-v2.1.0

# Each benchmark prints its ratios against a baseline measured in the same run.
bench: build tools $(KUBE_ROUTER)
	@[ "$$(id -u)" = 0 ] || { echo "make bench: run as root"; exit 1; }
	@echo "== plugin ADD/DEL: weir vs bridge + host-local"
	$(GO) build -o $(BIN)/bench-cni-add ./cmd/bench-cni-add
	$(BIN)/bench-cni-add -weir $(BIN)/weir -ref $(TOOLS_BIN)
	@echo "== ruleset compile and apply: 10,000 pods / 1,000 policies, full sync and one change; worst-shaped policies"
	$(GO) test -tags integration -run XXX -bench . -benchtime 8x ./policy
	@echo "== DNS proxy: added latency per answer (p50, p99) against direct lookups, learning into a fake set and into a kernel set"
	$(GO) test -tags integration -run XXX -bench ProxyAddedLatency -benchtime 5000x ./dnsproxy
	@echo "== datapath: throughput, latency, connection rate with the table vs none, vs the conntrack floor (15 interleaved pairs) and iptables"
	$(GO) build -o $(BIN)/bench-datapath ./cmd/bench-datapath
	$(BIN)/bench-datapath -weir $(BIN)/weir -iptables -breakdown -parts nat,spoof -rounds 15
	@echo "== datapath with 1,000 ClusterNetworkPolicies (both tiers) besides the 1,000 NetworkPolicies"
	$(BIN)/bench-datapath -weir $(BIN)/weir -cluster-policies 1000 -breakdown
	@echo "== datapath with a domainNames rule holding 10,000 learned addresses; the test connection is allowed by its set"
	$(BIN)/bench-datapath -weir $(BIN)/weir -learned 10000 -breakdown
	@echo "== agent against a real kube-apiserver, 10,000 then 50,000 pods (~1 + ~5 min): API write -> kernel latency by phase, memory; then kube-router's firewall on the 10,000-pod cluster, its sync and changes, then its datapath beside weir's and the conntrack floor (15 interleaved rounds)"
	hack/build-k8s.sh
	$(GO) build -o $(BIN)/bench-api-to-kernel ./cmd/bench-api-to-kernel
	$(BIN)/bench-api-to-kernel -agent $(BIN)/weir-agent -plugin $(BIN)/weir -sizes 10k,50k -peer kube-router=$(KUBE_ROUTER) -peer-datapath-rounds 15

$(KUBE_ROUTER):
	cd bench/kube-router && $(GO) build -trimpath -o $@ github.com/cloudnativelabs/kube-router/v2/cmd/kube-router

demo: build
	@[ "$$(id -u)" = 0 ] || { echo "make demo: run as root"; exit 1; }
	$(GO) build -o $(BIN)/weir-demo ./cmd/weir-demo
	$(BIN)/weir-demo -plugin $(BIN)/weir -agent $(BIN)/weir-agent

tools: $(TOOLS_BIN)/cnitool $(TOOLS_BIN)/bridge $(TOOLS_BIN)/host-local

$(TOOLS_BIN)/cnitool:
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/containernetworking/cni/cnitool@$(CNITOOL_VERSION)

$(TOOLS_BIN)/bridge:
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/containernetworking/plugins/plugins/main/bridge@$(PLUGINS_VERSION)

$(TOOLS_BIN)/host-local:
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/containernetworking/plugins/plugins/ipam/host-local@$(PLUGINS_VERSION)

clean:
	rm -rf $(BIN)
