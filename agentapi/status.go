package agentapi

import "time"

// SyncTimes are the moments of one sync, as the status answer reports
// them: when the oldest change it applied was signalled (zero for a sync
// no change started, such as a retry), when it started, and when it had
// read the cluster's state, compiled the ruleset and had the kernel hold
// it. They break the latency from an API write to the kernel down
// (weirctl status, benchmarks).
type SyncTimes struct {
	FirstEvent, Start, Read, Compiled, Applied time.Time
}
