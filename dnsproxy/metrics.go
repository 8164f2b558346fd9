package dnsproxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a message is dropped (label reason of
// weir_dns_dropped_messages_total).
const (
	dropMalformed  = "malformed"    // a query that does not unpack
	dropOversized  = "oversized"    // a query larger than Config.MaxMessage
	dropNotQuery   = "not_query"    // a response, another opcode, or not one question
	dropNotSteered = "not_steered"  // sent to the proxy's own port, or with no original destination
	dropBusy       = "busy"         // more queries or TCP connections in flight than the proxy takes
	dropUpstream   = "upstream"     // the resolver did not answer in time, or the exchange failed
	dropBadAnswer  = "bad_answer"   // the resolver's answer does not unpack or does not answer the query
	dropReply      = "reply_failed" // the answer could not be written to the pod
	dropHeld       = "held"         // the answer was held (Proxy.Hold) past the upstream timeout
)

// metrics are the proxy's Prometheus metrics.
type metrics struct {
	queries      *prometheus.CounterVec
	learned      prometheus.Counter
	expired      prometheus.Counter
	dropped      *prometheus.CounterVec
	setFull      prometheus.Counter
	learnErrors  prometheus.Counter
	held         prometheus.Counter
	addedLatency prometheus.Histogram
}

// newMetrics makes the metrics and registers them on reg, when not nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_dns_queries_total",
			Help: "DNS queries of pods the proxy forwarded, by transport (udp, tcp)."}, []string{"transport"}),
		learned: counter("weir_dns_learned_addresses_total", "Pod . address pairs written (added or refreshed) into domainNames sets."),
		expired: counter("weir_dns_expired_addresses_total", "Learned pod . address pairs whose timeout ran out."),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_dns_dropped_messages_total",
			Help: "DNS messages the proxy dropped, by reason."}, []string{"reason"}),
		setFull:     counter("weir_dns_set_full_total", "Addresses not learned because the rule's set was full: they stay denied."),
		learnErrors: counter("weir_dns_learn_errors_total", "Addresses not learned because writing the set failed otherwise: they stay denied."),
		held: counter("weir_dns_held_answers_total",
			"Answers that waited, neither learned nor released, while the agent applied a ruleset whose domainNames rules changed."),
		addedLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weir_dns_added_latency_seconds",
			Help:    "Time the proxy added to a DNS answer: from the query's arrival to the answer's release, less the resolver's time.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 2, 16)}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.queries, m.learned, m.expired, m.dropped, m.setFull, m.learnErrors, m.held, m.addedLatency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register dns proxy metrics: %w", err)
		}
	}
	return m, nil
}
