package kernels

import (
	"math"
	"time"
)

// bandwidthChunk is the piece of the buffer one task of ReadBandwidth sums (2^18 floats, 1 MiB).
const bandwidthChunk = 1 << 18

// ReadBandwidth measures the streaming read bandwidth of the kernels' worker pool, in bytes per
// second: it sums a buffer of at least the given bytes (rounded up to whole MiB; make it far
// larger than the last-level cache) with the same dot-product kernel and the same workers that
// decode uses, passes times, and returns the best pass — the ceiling that a memory-bound decode
// step is measured against (bytes read per token ÷ this = the fastest possible token). The
// buffer is the kind of memory a float32 GPT-2 keeps its weights in (NewHugeMem: huge pages
// where the system has them), so that the ceiling holds for the same page size; it is unmapped
// before returning. The first, untimed pass faults the pages in.
func ReadBandwidth(bytes, passes int) float64 {
	n := (max(bytes, 4*bandwidthChunk) + 4*bandwidthChunk - 1) / (4 * bandwidthChunk) * bandwidthChunk
	h := NewHugeMem(4 * n)
	defer h.Free()
	h.Populate()
	buf := HugeSlice[float32](h, n)
	for i := range buf {
		buf[i] = 1
	}
	return ReadBandwidthOf(buf, passes)
}

// ReadBandwidthOf is ReadBandwidth over a buffer the caller allocated (and filled: pages never
// written may all map the kernel's one zero page, which stays cached). It reads whole 1 MiB
// chunks: len(buf) is rounded down to a multiple of 2^18, and must be at least that.
func ReadBandwidthOf(buf []float32, passes int) float64 {
	n := len(buf) / bandwidthChunk * bandwidthChunk
	if n == 0 {
		panic("kernels: ReadBandwidthOf: buffer under 1 MiB")
	}
	chunks := n / bandwidthChunk
	p := acquire()
	defer p.release()
	sums := make([]float32, chunks)
	job := rangeJob(func(lo, hi int) {
		for c := lo; c < hi; c++ {
			x := buf[c*bandwidthChunk:][:bandwidthChunk]
			sums[c] = dotInner(x, x) // both operands are the same line: one read from memory
		}
	})
	best := 0.0
	for pass := 0; pass <= max(1, passes); pass++ {
		t0 := time.Now()
		p.run(job, chunks, 1)
		if d := time.Since(t0).Seconds(); pass > 0 && d > 0 {
			best = max(best, float64(4*n)/d)
		}
	}
	if s := sums[0]; math.IsNaN(float64(s)) { // keeps the sums observable
		return 0
	}
	return best
}
