package kernels

import "fmt"

// AddNaive is the reference element-wise sum: dst[i] += src[i]. It panics when the lengths
// differ.
func AddNaive(dst, src []float32) {
	if len(dst) != len(src) {
		panic(fmt.Sprintf("kernels: add of %d values to %d", len(src), len(dst)))
	}
	for i, v := range src {
		dst[i] += v
	}
}

// Add computes the same as AddNaive (bit for bit) on the worker pool: a residual connection
// over a 16 MiB activation is memory-bound, and on one core it left the other idle for ~4 ms
// per resnet at 256².
func Add(dst, src []float32) {
	if len(dst) != len(src) {
		panic(fmt.Sprintf("kernels: add of %d values to %d", len(src), len(dst)))
	}
	parallelRange(len(dst), 1, func(lo, hi int) {
		d, s := dst[lo:hi], src[lo:hi]
		for i, v := range s {
			d[i] += v
		}
	})
}
