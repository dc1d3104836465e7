package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// job is one parallel kernel invocation: chunk processes items [lo,hi) on worker w
// (0 ≤ w < workers), which may use the worker's scratch buffer.
type job interface {
	chunk(w, lo, hi int)
}

// workPool is a fixed set of helper goroutines that, with the calling goroutine, share out the
// items of one job at a time in chunks taken from an atomic counter. Dynamic chunks keep both
// cores busy even when the machine is shared and one of them runs something else. The job
// arguments live in the pool itself (fields mm, attn, ...), filled under mu, so that starting a
// job allocates nothing.
type workPool struct {
	mu      sync.Mutex
	workers int
	wake    []chan struct{}
	// parked[w]: helper w is blocked (or about to block) on wake[w]; whoever turns it false
	// owns the wake-up (the caller sends, or the helper takes the token the caller sent).
	parked []atomic.Bool

	// epoch is bumped once per job; helpers 1…active take part in it, and pending counts
	// those not yet finished.
	epoch   atomic.Uint64
	active  atomic.Int64
	pending atomic.Int64

	cur   job
	n     int
	grain int
	next  atomic.Int64

	// The spin budget follows the work: see spinBudget. burstStart and lastEnd belong to the
	// caller (under mu); spin is read by the helpers.
	burstStart, lastEnd time.Time
	spin                atomic.Int64 // nanoseconds a helper polls before it parks

	scratch [][]float32 // per worker, grown on demand
	parts   []float32   // split-K partial sums

	mm    gemmJob
	sk    gemmSplitKJob
	mmt   gemmTJob
	pk    gemmPackedJob
	pj    panelJob
	apack []float32 // packed A of gemmPacked
	pa    packAJob
	attn  attentionJob
	split splitJob
	rows  rowsJob
}

var (
	thePool  workPool
	poolOnce sync.Once
)

// acquire locks the shared pool, starting its helpers on first use.
func acquire() *workPool {
	poolOnce.Do(func() {
		p := &thePool
		p.workers = max(1, runtime.GOMAXPROCS(0))
		p.scratch = make([][]float32, p.workers)
		p.wake = make([]chan struct{}, p.workers)
		p.parked = make([]atomic.Bool, p.workers)
		p.spin.Store(int64(spinFor))
		for w := 1; w < p.workers; w++ {
			p.wake[w] = make(chan struct{}, 1)
			go p.helper(w)
		}
	})
	thePool.mu.Lock()
	return &thePool
}

func (p *workPool) release() {
	p.cur = nil
	p.mu.Unlock()
}

// spinFor is the least a helper polls for the next job before it parks on its channel, and
// spinPolls how often the caller polls for its helpers before it yields. A decode step is ~60
// parallel kernels with serial work between them; waking a parked goroutine costs tens of
// microseconds each time, which left the second core idle for a large part of an int8 step
// (BenchmarkDecodeInt8 on the 2-core Xeon: 68 tokens/s parking at once, 108 polling ~80 µs,
// 112 polling 100 or 200 µs, 117 never parking).
//
// Between two steps of a generation served through the plugin there is a gap of ~1.5 ms (the
// logits go to the host, which samples and sends the next token). A helper that parks in that
// gap made an int8 step at batch 1 take 13 ms in the plugin against 7 ms in a test process;
// polling 3 ms instead gave 1.28× the tokens/s — but with a small model, whose steps are short
// and whose host work (HTTP, sampling for many streams) is large, polling that long took the
// core from the host (the demo's 16-stream serving fell from 2.9× to 2.3× its 1-stream rate).
// So the budget adapts: a helper polls for a quarter of the length of the last burst of jobs
// (jobs closer than spinFor to each other), between spinFor and spinMax. Polling therefore
// costs at most a quarter of the compute it keeps fed.
const (
	spinFor   = 100 * time.Microsecond
	spinMax   = 3 * time.Millisecond
	spinPolls = 1 << 12
)

// spinBudget is how long helpers poll after a burst of jobs that lasted burst.
func spinBudget(burst time.Duration) time.Duration {
	return min(spinMax, max(spinFor, burst/4))
}

func (p *workPool) helper(w int) {
	var seen uint64
	for {
		e := p.epoch.Load()
		if e == seen {
			budget := time.Duration(p.spin.Load())
			for start := time.Now(); ; {
				for i := 0; e == seen && i < spinPolls; i++ {
					e = p.epoch.Load()
				}
				if e != seen || time.Since(start) > budget {
					break
				}
			}
		}
		if e == seen {
			p.parked[w].Store(true)
			if e = p.epoch.Load(); e == seen {
				<-p.wake[w] // the caller cleared parked and sent
				e = p.epoch.Load()
			} else if !p.parked[w].CompareAndSwap(true, false) {
				<-p.wake[w] // the caller saw us parked and sent: take its token
			}
		}
		if e == seen {
			// Woken with no new job: the token was left from a job this helper had already
			// taken part in. Without this check the helper would run the finished job's loop
			// again, uncounted, and its decrement of pending could end the next job early.
			continue
		}
		seen = e
		if int64(w) <= p.active.Load() {
			p.loop(w)
			p.pending.Add(-1)
		}
	}
}

func (p *workPool) loop(w int) {
	n, g := int64(p.n), int64(p.grain)
	for {
		lo := p.next.Add(g) - g
		if lo >= n {
			return
		}
		p.cur.chunk(w, int(lo), int(min(lo+g, n)))
	}
}

// run processes items [0,n) of j in chunks of grain items; small jobs stay on the caller.
func (p *workPool) run(j job, n, grain int) {
	grain = max(1, grain)
	if n <= grain || p.workers == 1 {
		j.chunk(0, 0, n)
		return
	}
	if now := time.Now(); now.Sub(p.lastEnd) > spinFor {
		p.burstStart = now
	}
	p.cur, p.n, p.grain = j, n, grain
	p.next.Store(0)
	helpers := min(p.workers-1, (n+grain-1)/grain-1)
	p.active.Store(int64(helpers))
	p.pending.Store(int64(helpers))
	p.epoch.Add(1)
	for w := 1; w <= helpers; w++ {
		if p.parked[w].CompareAndSwap(true, false) {
			p.wake[w] <- struct{}{}
		}
	}
	p.loop(0)
	for i := 0; p.pending.Load() > 0; i++ {
		if i >= spinPolls {
			runtime.Gosched()
		}
	}
	p.lastEnd = time.Now()
	p.spin.Store(int64(spinBudget(p.lastEnd.Sub(p.burstStart))))
}

// buf returns worker w's scratch buffer with at least n elements.
func (p *workPool) buf(w, n int) []float32 {
	if cap(p.scratch[w]) < n {
		p.scratch[w] = make([]float32, n)
	}
	return p.scratch[w][:n]
}

// Workers returns the number of goroutines the parallel kernels use.
func Workers() int {
	p := acquire()
	defer p.release()
	return p.workers
}

// grow returns s resized to n, reallocating only when its capacity is short.
func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
