package dnsproxy

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkProxyAddedLatency: the latency of a UDP lookup of a name the
// proxy learns (with a Learner that costs nothing) through the proxy
// against the same lookup sent to the same loopback resolver directly,
// alternated; it reports the p50 and p99 of both and their differences,
// the latency the proxy adds per answer.
func BenchmarkProxyAddedLatency(b *testing.B) {
	upstream := startUpstream(b)
	_, port := startProxy(b, Config{Learner: &fakeLearner{}}, upstream)
	c := dns.Client{Net: "udp", Timeout: 2 * time.Second}
	q := new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)
	proxy := netip.AddrPortFrom(pod4, uint16(port)).String()
	var direct, proxied []time.Duration
	b.ResetTimer()
	for range b.N {
		for _, x := range []struct {
			server string
			into   *[]time.Duration
		}{{upstream.String(), &direct}, {proxy, &proxied}} {
			start := time.Now()
			if _, _, err := c.Exchange(q, x.server); err != nil {
				b.Fatal(err)
			}
			*x.into = append(*x.into, time.Since(start))
		}
	}
	b.StopTimer()
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50", 0.50}, {"p99", 0.99}} {
		d, pr := quantile(direct, p.q), quantile(proxied, p.q)
		b.ReportMetric(micros(d), "direct-"+p.name+"-us")
		b.ReportMetric(micros(pr), "proxy-"+p.name+"-us")
		b.ReportMetric(micros(pr-d), "added-"+p.name+"-us")
	}
}

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
