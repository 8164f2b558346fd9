package kube

import (
	"context"
	"errors"
	"sync"
)

// Parallel calls fn(ctx, i) for i in [0, n) from workers goroutines and
// returns the errors joined (it stops handing out work after the first).
// Benchmarks use it to register thousands of pods and policies: the API
// server takes concurrent writes far faster than one client's sequence.
func Parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	if workers < 1 {
		workers = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
feed:
	for i := range n {
		if ctx.Err() != nil {
			break // a ready worker must not win over a cancellation
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if len(errs) == 0 && ctx.Err() != nil && !errors.Is(context.Cause(ctx), context.Canceled) {
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}
