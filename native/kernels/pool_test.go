package kernels

import (
	"sync/atomic"
	"testing"
	"time"
)

// countJob counts how often each item is processed.
type countJob struct{ seen []atomic.Int32 }

func (j *countJob) chunk(_, lo, hi int) {
	for i := lo; i < hi; i++ {
		j.seen[i].Add(1)
	}
}

// TestPoolWakesParkedHelpers runs jobs back to back (helpers polling) and after pauses longer
// than spinFor (helpers parked on their channels, woken by the caller): every item of every job
// must be processed exactly once, and run must return (a lost wake-up hangs it).
func TestPoolWakesParkedHelpers(t *testing.T) {
	const n = 257
	for round := range 60 {
		if round%3 == 0 {
			time.Sleep(2 * spinFor) // let the helpers park
		}
		j := &countJob{seen: make([]atomic.Int32, n)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			p := acquire()
			defer p.release()
			p.run(j, n, 3)
		}()
		select {
		case <-done:
		case <-time.After(lostWakeup):
			t.Fatalf("round %d: run did not return within %v: a helper missed its wake-up", round, lostWakeup)
		}
		for i := range j.seen {
			if c := j.seen[i].Load(); c != 1 {
				t.Fatalf("round %d: item %d processed %d times, want 1", round, i, c)
			}
		}
	}
}

// lostWakeup bounds one tiny job; far above any scheduling delay, far below the test timeout.
const lostWakeup = 20 * time.Second
