package controller

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-cni/weir/ruleset"
)

// This file exports the kernel's named counters (ruleset.Ruleset.Counters) as
// Prometheus metrics, read at scrape time: the connections each policy rule
// allowed, and the packets isolation (or the default verdict of pods the
// agent has not classified) dropped.

// readCounters reads the named counters of the applied ruleset
// (dataplane.Applier.Counters).
type readCounters func(context.Context) (map[string]ruleset.CounterValue, error)

// countersMaxAge is how long one read of the counters serves scrapes: a
// scraper in a loop costs one read a second (with the iptables backend, an
// iptables-save per family).
const countersMaxAge = time.Second

// countersTimeout bounds one read of the counters.
const countersTimeout = 10 * time.Second

// cachedCounters reads the counters through read at most once per maxAge,
// each read bounded by countersTimeout. Callers within maxAge of the end
// of the last read get its result (values or error); callers that come
// while a read runs wait for it and share it. The values are shared: do
// not modify them.
type cachedCounters struct {
	read   readCounters
	maxAge time.Duration
	now    func() time.Time

	mu     sync.Mutex // held during a read
	at     time.Time  // when the last read ended; zero before the first
	values map[string]ruleset.CounterValue
	err    error
}

func (c *cachedCounters) Counters() (map[string]ruleset.CounterValue, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && c.now().Sub(c.at) < c.maxAge {
		return c.values, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), countersTimeout)
	defer cancel()
	c.values, c.err = c.read(ctx)
	c.at = c.now()
	return c.values, c.err
}

// ruleCounters is a Prometheus collector over the counters, read through
// a cache (see cachedCounters). ruleset returns the last applied
// ruleset: its counters' owners say what each counter counts, and label
// it.
type ruleCounters struct {
	read    *cachedCounters
	ruleset func() ruleset.Ruleset
	log     *slog.Logger

	packets, bytes, clusterPackets, clusterBytes, denied, spoofed, unclassified *prometheus.Desc
}

func newRuleCounters(read readCounters, ruleset func() ruleset.Ruleset, log *slog.Logger) *ruleCounters {
	return &ruleCounters{
		read:    &cachedCounters{read: read, maxAge: countersMaxAge, now: time.Now},
		ruleset: ruleset, log: log,
		packets: prometheus.NewDesc("weir_policy_rule_packets_total",
			"Packets a policy rule accepted: the first packet of each connection it allowed.",
			[]string{"policy", "direction", "rule"}, nil),
		bytes: prometheus.NewDesc("weir_policy_rule_bytes_total",
			"Bytes of the packets a policy rule accepted.", []string{"policy", "direction", "rule"}, nil),
		clusterPackets: prometheus.NewDesc("weir_cluster_policy_rule_packets_total",
			"Packets a ClusterNetworkPolicy rule decided (accepted, denied or passed): the first packet of each connection.",
			clusterRuleLabels, nil),
		clusterBytes: prometheus.NewDesc("weir_cluster_policy_rule_bytes_total",
			"Bytes of the packets a ClusterNetworkPolicy rule decided.", clusterRuleLabels, nil),
		denied: prometheus.NewDesc("weir_denied_packets_total",
			"Packets dropped because no policy selecting the pod allowed them.", []string{"direction"}, nil),
		spoofed: prometheus.NewDesc("weir_spoofed_packets_total",
			"Packets dropped because their source address is not routed back through the pod interface they came in on.", nil, nil),
		unclassified: prometheus.NewDesc("weir_unclassified_denied_packets_total",
			"Packets of local pods the agent has not classified, dropped because their namespace has a policy of that direction.",
			[]string{"direction"}, nil),
	}
}

// clusterRuleLabels label the counters of ClusterNetworkPolicy rules:
// rule is the index in the policy's ingress or egress list, rule_name its
// name (empty when unset).
var clusterRuleLabels = []string{"tier", "policy", "direction", "rule", "rule_name", "action"}

func (c *ruleCounters) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.packets
	ch <- c.bytes
	ch <- c.clusterPackets
	ch <- c.clusterBytes
	ch <- c.denied
	ch <- c.spoofed
	ch <- c.unclassified
}

func (c *ruleCounters) Collect(ch chan<- prometheus.Metric) {
	values, err := c.read.Counters()
	if err != nil {
		c.log.Warn("read rule counters", "err", err)
		return
	}
	rs := c.ruleset()
	for name, v := range values {
		ctr, ok := rs.Counter(name)
		if !ok {
			continue
		}
		switch o := ctr.Owner(); o.Kind {
		case ruleset.OwnerIsolation:
			ch <- prometheus.MustNewConstMetric(c.denied, prometheus.CounterValue, float64(v.Packets), string(o.Direction))
		case ruleset.OwnerSpoof:
			ch <- prometheus.MustNewConstMetric(c.spoofed, prometheus.CounterValue, float64(v.Packets))
		case ruleset.OwnerUnclassified:
			ch <- prometheus.MustNewConstMetric(c.unclassified, prometheus.CounterValue, float64(v.Packets), string(o.Direction))
		case ruleset.OwnerPolicyRule:
			if o.Tier != ruleset.TierNetworkPolicy {
				labels := []string{string(o.Tier), o.Policy, string(o.Direction), strconv.Itoa(o.Rule), o.RuleName, o.Action}
				ch <- prometheus.MustNewConstMetric(c.clusterPackets, prometheus.CounterValue, float64(v.Packets), labels...)
				ch <- prometheus.MustNewConstMetric(c.clusterBytes, prometheus.CounterValue, float64(v.Bytes), labels...)
				continue
			}
			labels := []string{o.PolicyKey(), string(o.Direction), strconv.Itoa(o.Rule)}
			ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(v.Packets), labels...)
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(v.Bytes), labels...)
		}
	}
}

// RegisterCounters exports read's counters, explained by the ruleset that
// ruleset returns, in m. Scrapes share reads: read runs at most once per
// countersMaxAge.
func (m *Metrics) RegisterCounters(read func(context.Context) (map[string]ruleset.CounterValue, error), ruleset func() ruleset.Ruleset, log *slog.Logger) {
	if m != nil {
		m.reg.MustRegister(newRuleCounters(read, ruleset, log))
	}
}

// RegisterDeniedLogger exports how many denied packets d logged, in m.
func (m *Metrics) RegisterDeniedLogger(d *DeniedLogger) {
	if m != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weir_denied_packets_logged_total",
			Help: "Denied packets read from the NFLOG group and logged (rate-limited in the kernel).",
		}, func() float64 { return float64(d.Logged()) }))
	}
}
