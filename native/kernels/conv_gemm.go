package kernels

import (
	"runtime"
	"sync"
)

// convGemm computes c[m×n] = a[m×k] · b[k×n] (row-major with leading dimensions lda, ldb, ldc),
// overwriting c. Rows of c are split across GOMAXPROCS goroutines.
func convGemm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	parallelRange(m, n*k, func(i0, i1 int) {
		for i := i0; i < i1; i++ {
			ci := c[i*ldc : i*ldc+n]
			clear(ci)
			ai := a[i*lda : i*lda+k]
			for p, av := range ai {
				if av == 0 {
					continue
				}
				bp := b[p*ldb : p*ldb+n]
				for j := range ci {
					ci[j] += av * bp[j]
				}
			}
		}
	})
}

// parallelMinWork is the work (items × cost) below which parallelRange stays on the caller's
// goroutine: spawning costs about a microsecond.
const parallelMinWork = 1 << 15

// parallelRange calls fn on disjoint subranges covering [0,n), concurrently when n·cost is large
// enough to pay for the goroutines; cost is the approximate work per item.
func parallelRange(n, cost int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 || n*cost < parallelMinWork {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}
