package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/weir-cni/weir/nft"
)

type nopApplier struct{}

func (nopApplier) Apply(context.Context, nft.Ruleset) error { return nil }

// BenchmarkAgentSyncOneLabel10k is one worker sync (read, snapshot, compile,
// no kernel) after one pod's labels changed, at 10,000 pods.
func BenchmarkAgentSyncOneLabel10k(b *testing.B) {
	o := benchObjects(10000)
	src := &memSource{objs: o}
	a := &Agent{Node: "n1", Source: src, Applier: nopApplier{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.init()
	if err := a.sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := o.Pods[7].DeepCopy()
		p.Labels["tier"] = fmt.Sprint(i)
		o.Pods[7] = p
		src.objs = o
		if err := a.sync(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
