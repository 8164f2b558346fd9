package dnsproxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// Defaults of Config's zero fields.
const (
	DefaultPort            = 15353
	DefaultMinTTL          = 5 * time.Second
	DefaultMaxTTL          = time.Hour
	DefaultUpstreamTimeout = 5 * time.Second
	// DefaultMaxMessage is the largest query taken by default: EDNS0's
	// usual buffer size, far above any real question.
	DefaultMaxMessage = 4096
)

// maxInFlight bounds the UDP queries being answered plus the TCP
// connections being served; beyond it a query or connection is dropped.
const maxInFlight = 1024

// Config is what a Proxy is. Zero fields take the Default values above;
// Learner is required.
type Config struct {
	// Port is where the tproxy rules send the pods' queries, on every
	// address (UDP and TCP, IPv4 and IPv6).
	Port int
	// MinTTL and MaxTTL bound the timeout of a learned pair (the answer's
	// TTL).
	MinTTL, MaxTTL time.Duration
	// UpstreamTimeout bounds one exchange with the resolver.
	UpstreamTimeout time.Duration
	// MaxMessage is the largest query (bytes) taken from a pod; larger
	// ones are dropped.
	MaxMessage int
	// Learner writes the learned pairs into the kernel's sets.
	Learner Learner
	// Registerer, when not nil, gets the proxy's metrics (weir_dns_*:
	// queries, learned and expired pairs, drops by reason, set-full and
	// learn failures, answers held, added latency).
	Registerer prometheus.Registerer
	// Log gets set-full and failure reports; nil is slog.Default().
	Log *slog.Logger
	// Upstream, when not nil, says where the query a pod sent to orig
	// goes instead of orig: tests use it to answer from a server of
	// their own without tproxy.
	Upstream func(orig netip.AddrPort) netip.AddrPort
}

func (c *Config) setDefaults() error {
	c.Port = cmp.Or(c.Port, DefaultPort)
	c.MinTTL = cmp.Or(c.MinTTL, DefaultMinTTL)
	c.MaxTTL = cmp.Or(c.MaxTTL, DefaultMaxTTL)
	c.UpstreamTimeout = cmp.Or(c.UpstreamTimeout, DefaultUpstreamTimeout)
	c.MaxMessage = cmp.Or(c.MaxMessage, DefaultMaxMessage)
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Upstream == nil {
		c.Upstream = func(orig netip.AddrPort) netip.AddrPort { return orig }
	}
	switch {
	case c.Learner == nil:
		return errors.New("dns proxy: no Learner")
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("dns proxy: port %d out of range", c.Port)
	case c.MinTTL < 0 || c.MinTTL > c.MaxTTL:
		return fmt.Errorf("dns proxy: minimum TTL %v not between 0 and the maximum %v", c.MinTTL, c.MaxTTL)
	case c.UpstreamTimeout < 0 || c.MaxMessage < 0 || c.MaxMessage > dns.MaxMsgSize:
		return fmt.Errorf("dns proxy: upstream timeout %v or maximum message %d out of range", c.UpstreamTimeout, c.MaxMessage)
	}
	return nil
}

// Proxy is the transparent DNS proxy: Serve runs it, SetRules tells it the
// ruleset's domainNames rules (Hold and Release bracket the change),
// Explain says what it learned. Its methods are safe for concurrent use.
type Proxy struct {
	cfg      Config
	metrics  *metrics
	now      func() time.Time
	index    index
	inFlight chan struct{}

	// gate lets answers out: an answer takes one unit of it from before
	// it is learned until it is written to its pod, a Hold all
	// maxInFlight units (the most answers under way at once). holding
	// says a Hold has them; holdMu guards it.
	gate    *semaphore.Weighted
	holdMu  sync.Mutex
	holding bool

	// mu guards rules. A query holds it for reading from matching its
	// answer to the last Learn, so that SetRules, holding it for writing,
	// waits for those Learns and forgets what they learned for pods
	// that left.
	mu    sync.RWMutex
	rules rules
}

// New makes a Proxy of cfg, with no rules (it learns nothing until
// SetRules) and its metrics registered.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Proxy{cfg: cfg, metrics: m, now: time.Now, inFlight: make(chan struct{}, maxInFlight),
		gate: semaphore.NewWeighted(maxInFlight), rules: newRules(nil)}, nil
}

// Hold stops the release of answers until Release: an answer that comes
// from the resolver from now on waits, neither learned nor written to its
// pod, until Release or the end of its upstream timeout (then it is
// dropped and counted, and the pod asks again). Hold returns once the
// answers already being learned or written are out, or with ctx's error,
// holding nothing, when ctx ends first; holding already, it does nothing.
//
// The agent holds answers while it applies a ruleset whose domainNames
// rules changed, and releases them after SetRules with those rules: so no
// answer reaches a pod after the new sets and steering are in the kernel
// that was learned under the old rules (into a set the apply deleted, or
// not at all for a pod the old rules did not select).
func (p *Proxy) Hold(ctx context.Context) error {
	p.holdMu.Lock()
	defer p.holdMu.Unlock()
	if p.holding {
		return nil
	}
	if err := p.gate.Acquire(ctx, maxInFlight); err != nil {
		return fmt.Errorf("dns proxy: hold answers: %w", err)
	}
	p.holding = true
	return nil
}

// Release lets the answers a Hold kept go on, learned under the rules the
// proxy has now; without a Hold it does nothing.
func (p *Proxy) Release() {
	p.holdMu.Lock()
	defer p.holdMu.Unlock()
	if p.holding {
		p.gate.Release(maxInFlight)
		p.holding = false
	}
}

// SetRules makes rs the rules answers are learned for. At once it forgets
// (Learner.Forget) the pairs of pods a rule no longer selects, so that a
// pod address reused by another pod inherits nothing, and drops from its
// index the pairs of sets no rule has any more (the applier deletes those
// sets). Pairs whose Forget failed stay indexed and are retried by the
// next SetRules; the error joins those failures.
func (p *Proxy) SetRules(rs []Rule) error {
	t := newRules(rs)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = t
	var errs []error
	for k, addrs := range p.index.stale(t) {
		if err := p.cfg.Learner.Forget(k.set, k.pod, addrs); err != nil {
			errs = append(errs, fmt.Errorf("forget %d addresses of pod %s in set %s: %w", len(addrs), k.pod, k.set, err))
			continue
		}
		p.index.drop(k.set, k.pod, addrs)
	}
	return errors.Join(errs...)
}

// Explain returns what let addr in for pod and has not expired: one entry
// per rule set holding the pair, by set.
func (p *Proxy) Explain(pod, addr netip.Addr) []Learned {
	return p.index.explain(pod.Unmap(), addr.Unmap(), p.now())
}

// expire drops the expired index entries and counts them.
func (p *Proxy) expire() {
	p.metrics.expired.Add(float64(p.index.expire(p.now())))
}

// exchange is one round trip with the resolver: the query's bytes out, the
// answer's back.
type exchange func(ctx context.Context, query []byte) ([]byte, error)

// handle answers one query of pod that arrived over transport ("udp" or
// "tcp"): it checks the query, forwards it, learns from the answer what
// the rules allow the pod, and only then writes the answer back through
// reply; learning and reply wait while the proxy is held (see Hold). It
// returns false when it dropped the query (counted); an oversized query
// is the caller's to see and count.
func (p *Proxy) handle(ctx context.Context, transport string, pod netip.Addr, query []byte, forward exchange, reply func([]byte) error) bool {
	start := time.Now()
	q := new(dns.Msg)
	if err := q.Unpack(query); err != nil {
		return p.drop(dropMalformed)
	}
	if q.Response || q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 {
		return p.drop(dropNotQuery)
	}
	p.metrics.queries.WithLabelValues(transport).Inc()
	ctx, cancel := context.WithTimeout(ctx, p.cfg.UpstreamTimeout)
	defer cancel()
	up := time.Now()
	raw, err := forward(ctx, query)
	upstream := time.Since(up)
	if err != nil {
		p.cfg.Log.Debug("dns proxy: no answer from the resolver", "pod", pod, "name", q.Question[0].Name, "err", err)
		return p.drop(dropUpstream)
	}
	// A truncated UDP answer goes to the pod as it is (the pod asks again
	// over TCP), though cut inside a record; nothing is learned from that.
	a := new(dns.Msg)
	err = a.Unpack(raw)
	if !a.Response || a.Id != q.Id || err != nil && !a.Truncated {
		return p.drop(dropBadAnswer)
	}
	if !p.pass(ctx) {
		p.cfg.Log.Debug("dns proxy: answer held past its upstream timeout", "pod", pod, "name", q.Question[0].Name)
		return p.drop(dropHeld)
	}
	defer p.gate.Release(1)
	if err == nil {
		p.learn(pod, q.Question[0].Name, a)
	}
	if err := reply(raw); err != nil {
		p.cfg.Log.Debug("dns proxy: answer not delivered", "pod", pod, "err", err)
		return p.drop(dropReply)
	}
	p.metrics.addedLatency.Observe((time.Since(start) - upstream).Seconds())
	return true
}

// pass takes a unit of the gate for one answer, waiting (counted) while
// the proxy is held, until ctx ends: false then.
func (p *Proxy) pass(ctx context.Context) bool {
	if p.gate.TryAcquire(1) {
		return true
	}
	p.metrics.held.Inc()
	return p.gate.Acquire(ctx, 1) == nil
}

func (p *Proxy) drop(reason string) bool {
	p.metrics.dropped.WithLabelValues(reason).Inc()
	return false
}

// learn writes into the sets of every rule that selects pod and allows
// qname the pairs of pod and the answer's addresses of pod's family, and
// indexes them. (The rules do not say which addresses of the other family
// belong to the same pod: those stay denied.)
func (p *Proxy) learn(pod netip.Addr, qname string, a *dns.Msg) {
	if a.Rcode != dns.RcodeSuccess {
		return
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	name := dns.CanonicalName(qname)
	var final string
	var addrs []found
	for _, r := range p.rules.byPod[pod] {
		if !r.allows(name) {
			continue
		}
		if final == "" {
			final, addrs = addresses(a.Answer, name)
		}
		set := r.set(pod)
		for _, f := range addrs {
			if f.addr.Is4() == pod.Is4() && set != "" {
				p.learnOne(r, pod, Learned{Owner: r.Owner, Set: set, Name: bare(name), Answer: bare(final), Addr: f.addr}, f.ttl)
			}
		}
	}
}

func (p *Proxy) learnOne(r *rule, pod netip.Addr, l Learned, ttl uint32) {
	timeout := clampTTL(ttl, p.cfg.MinTTL, p.cfg.MaxTTL)
	err := p.cfg.Learner.Learn(l.Set, pod, l.Addr, timeout)
	switch {
	case err == nil:
		l.At = p.now()
		l.Expires = l.At.Add(timeout)
		p.index.put(pod, l)
		p.metrics.learned.Inc()
	case setFull(err):
		p.metrics.setFull.Inc()
		p.cfg.Log.Warn("dns proxy: set full, address stays denied", "rule", r.Owner.String(), "set", l.Set, "pod", pod, "name", l.Name, "addr", l.Addr, "err", err)
	default:
		p.metrics.learnErrors.Inc()
		p.cfg.Log.Error("dns proxy: learning failed, address stays denied", "rule", r.Owner.String(), "set", l.Set, "pod", pod, "name", l.Name, "addr", l.Addr, "err", err)
	}
}
