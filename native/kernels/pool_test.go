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

// TestPoolIgnoresStaleWake wakes a parked helper with a token but no new job, as a token left
// over from an earlier job does. The helper must park again without touching the finished job:
// running its loop again would decrement pending for a job that did not count it, and the next
// job's caller could then return while the helper still works on it.
func TestPoolIgnoresStaleWake(t *testing.T) {
	p := acquire()
	defer p.release()
	if p.workers < 2 {
		t.Skipf("needs a helper goroutine; the pool has %d worker (GOMAXPROCS=1)", p.workers)
	}
	parked := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !p.parked[1].Load(); {
			if time.Now().After(deadline) {
				t.Fatal("helper 1 did not park within 10 s")
			}
			time.Sleep(time.Millisecond)
		}
	}
	var ran atomic.Int64
	p.run(rangeJob(func(lo, hi int) { ran.Add(int64(hi - lo)) }), 64, 1)
	parked()
	if !p.parked[1].CompareAndSwap(true, false) {
		t.Fatal("helper 1 left its park before the stale token was sent")
	}
	p.wake[1] <- struct{}{}
	parked() // it woke, found no new job, and parked again
	time.Sleep(5 * time.Millisecond)
	if got := p.pending.Load(); got != 0 {
		t.Fatalf("pending = %d after a stale wake-up, want 0: the helper ran the finished job again", got)
	}
	p.run(rangeJob(func(lo, hi int) { ran.Add(int64(hi - lo)) }), 64, 1)
	if got := ran.Load(); got != 128 {
		t.Fatalf("two jobs of 64 items ran %d items, want 128", got)
	}
}

// TestLingerKeepsHelpersPolling runs a job right after Linger(MaxLinger): within the linger the
// helpers must not park (they poll for the next job), and once it has passed they must park
// again (a linger that never ended would burn a core for good). The 3 ms check sits well inside
// the 10 ms linger; a helper that is merely descheduled still counts as polling.
func TestLingerKeepsHelpersPolling(t *testing.T) {
	p := acquire()
	workers := p.workers
	p.release()
	if workers < 2 {
		t.Skipf("needs a helper goroutine; the pool has %d worker (GOMAXPROCS=1)", workers)
	}
	runJob := func() {
		p := acquire()
		defer p.release()
		p.run(&countJob{seen: make([]atomic.Int32, 64)}, 64, 1)
	}
	parked := func() bool { return thePool.parked[1].Load() }
	// Linger first: the helper takes part in the job and then polls until the linger ends. A
	// round whose sleep overran most of the linger (a descheduled test) proves nothing and is
	// not counted.
	checked := 0
	for range 20 {
		t0 := time.Now()
		Linger(MaxLinger)
		runJob()
		time.Sleep(2 * time.Millisecond) // > spinFor: without the linger the helper would park
		p := parked()
		if time.Since(t0) > MaxLinger/2 {
			continue
		}
		if p {
			t.Fatalf("helper parked within %v of Linger(%v)", time.Since(t0), MaxLinger)
		}
		checked++
	}
	if checked == 0 {
		t.Fatalf("every round overran %v: the machine is too loaded to check the linger", MaxLinger/2)
	}
	deadline := time.Now().Add(lostWakeup)
	for !parked() {
		if time.Now().After(deadline) {
			t.Fatalf("helper still polling %v after Linger(%v)", lostWakeup, MaxLinger)
		}
		time.Sleep(time.Millisecond)
	}
	runJob() // a parked helper still wakes for the next job
}
