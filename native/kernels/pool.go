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

// spinFor is how long a helper polls for the next job before it parks on its channel (and
// spinPolls how often the caller polls for its helpers before it yields). A decode step is ~60
// parallel kernels with serial work between them; waking a parked goroutine costs tens of
// microseconds each time, which left the second core idle for a large part of an int8 step
// (BenchmarkDecodeInt8 on the 2-core Xeon: 68 tokens/s parking at once, 108 polling ~80 µs,
// 112 polling 100 or 200 µs, 117 never parking). Short, because the plugin shares the cores
// with its host: a helper that polls on after a step takes CPU from the host's sampling.
const (
	spinFor   = 100 * time.Microsecond
	spinPolls = 1 << 12
)

// lingerUntil (Unix nanoseconds) extends the helpers' polling past spinFor: see Linger.
var lingerUntil atomic.Int64

// MaxLinger bounds Linger's d.
const MaxLinger = 10 * time.Millisecond

// Linger asks the pool's helpers to keep polling for the next job for d (at most MaxLinger)
// from now instead of parking after spinFor. A caller that knows the next parallel kernel
// follows shortly, though not within spinFor (the next decode step of a generation loop whose
// host is in another process, one gRPC round trip away), spends up to d of one core's time to
// spare each helper a wake-up per kernel of the next step. Helpers already parked stay parked
// until the next job wakes them.
func Linger(d time.Duration) {
	lingerUntil.Store(time.Now().Add(min(d, MaxLinger)).UnixNano())
}

// LingerDeadline returns when the helpers' current linger ends (a time in the past when none
// is in force).
func LingerDeadline() time.Time { return time.Unix(0, lingerUntil.Load()) }

func (p *workPool) helper(w int) {
	var seen uint64
	for {
		e := p.epoch.Load()
		if e == seen {
			for start := time.Now(); ; {
				for i := 0; e == seen && i < spinPolls; i++ {
					e = p.epoch.Load()
				}
				if e != seen || time.Since(start) > spinFor && time.Now().UnixNano() > lingerUntil.Load() {
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
