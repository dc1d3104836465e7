package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
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
	done    sync.WaitGroup

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
	attn  attentionJob
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

func (p *workPool) helper(w int) {
	for range p.wake[w] {
		p.loop(w)
		p.done.Done()
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
	p.done.Add(helpers)
	for w := 1; w <= helpers; w++ {
		p.wake[w] <- struct{}{}
	}
	p.loop(0)
	p.done.Wait()
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
