package kernels

import "gonum.org/v1/gonum/blas/blas32"

// useGonum routes the compute to gonum's blas32, which runs SSE assembly on amd64: Sgemm for
// products of many rows, and Axpy/Dot for the innermost loops of the others. On the decode step
// the inner loops alone cut CPU time per token from ~53 ms to ~22 ms against the unrolled pure-Go
// loops (GPT-2 124M, 2-core EPYC). The pure-Go loops stay as the portable reference path; tests
// run both. A later SIMD kernel (avo) replaces axpyInner, dotInner and axpyVec.
var useGonum = true

// axpyInner adds Σ_{p0≤p<p1} a[p]·B[p, j0:j0+len(c)] to c (B with row stride ldb).
func axpyInner(c, a, b []float32, ldb, j0, p0, p1 int) {
	if !useGonum {
		axpyRow(c, a, b, ldb, j0, p0, p1)
		return
	}
	n := len(c)
	y := blas32.Vector{N: n, Inc: 1, Data: c}
	for p := p0; p < p1; p++ {
		blas32.Axpy(a[p], blas32.Vector{N: n, Inc: 1, Data: b[p*ldb+j0:][:n]}, y)
	}
}

// dotInner returns Σ a[i]·b[i] over len(a) (b at least as long).
func dotInner(a, b []float32) float32 {
	if !useGonum {
		return dot(a, b)
	}
	n := len(a)
	return blas32.Dot(blas32.Vector{N: n, Inc: 1, Data: a}, blas32.Vector{N: n, Inc: 1, Data: b[:n]})
}

// axpyVec adds alpha·x to y (len(x) ≥ len(y)).
func axpyVec(alpha float32, x, y []float32) {
	x = x[:len(y)]
	if !useGonum {
		for i := range y {
			y[i] += alpha * x[i]
		}
		return
	}
	blas32.Axpy(alpha, blas32.Vector{N: len(y), Inc: 1, Data: x}, blas32.Vector{N: len(y), Inc: 1, Data: y})
}
