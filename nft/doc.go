// Package nft is weir's nftables dataplane: it touches the kernel.
//
// NetlinkApplier implements dataplane.Applier: it writes a ruleset.Ruleset
// into the table `inet weir` through github.com/google/nftables, one
// netlink batch (one nf_tables transaction) per Apply: the whole table on
// the first call, ruleset.Diff afterwards, the whole table again when a
// batch of changes is refused. The caller's context bounds the wait for
// the kernel's answer.
//
// Files:
//   - netlink.go: the applier, what each batch holds and in which order;
//   - exprs.go: the ruleset as google/nftables values (pure);
//   - encode.go: the rule and element messages, encoded as google/nftables
//     encodes them, into shared buffers (pure);
//   - typeof.go: the typeof user data nft keeps for the sets keyed by a
//     rule id (pure);
//   - batch.go: the socket the batches go out on and the kernel's answer;
//   - workarounds.go: every workaround for google/nftables, with the
//     version it works around and the upstream change that would remove it;
//   - probe.go: whether the kernel has nf_tables, and removing the table;
//   - learned.go: the elements of the Dynamic sets a full apply carries
//     over (read through the query connection);
//   - learner.go: Learner, which adds and removes the elements of the
//     Dynamic sets the DNS proxy fills, on a socket of its own.
//
// The netlink layer is tested without root: the batches are captured
// through batchConn and compared with golden files (testdata/batches,
// `go test ./nft -update` rewrites them), and each workaround is pinned by
// a unit test. The kernel round trips are integration tests.
//
// Layer: it imports packages ruleset and dataplane only, never the
// compiler (policy).
package nft
