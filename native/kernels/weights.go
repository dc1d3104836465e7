package kernels

import (
	"fmt"

	"github.com/modelrt/modelrt/sdk/safetensors"
)

// weights is the right-hand operand of a product in one of three storage types: float32;
// int8 with one float32 scale per output channel, W = q·scale; or IEEE float16 bits. Exactly one
// of f32, i8 and f16 is set.
type weights struct {
	f32   []float32
	i8    []int8
	scale []float32 // i8 only: per output channel (column of a (K,N) operand, row of an (N,K) one)
	f16   []uint16
	// panels: the slice holds PackPanels' layout (16-column panels, K rows each) instead of
	// row-major (K,N).
	panels bool
}

func (w *weights) len() int { return max(len(w.f32), len(w.i8), len(w.f16)) }

// at returns element i as float32, int8 values unscaled.
func (w *weights) at(i int) float32 {
	switch {
	case w.f32 != nil:
		return w.f32[i]
	case w.i8 != nil:
		return float32(w.i8[i])
	}
	return safetensors.F16ToF32(w.f16[i])
}

// axpy adds Σ_{p<len(a)} a[p]·W[off+p·ld+j] to c[j] for j < len(c) (int8 unscaled).
func (w *weights) axpy(c, a []float32, off, ld int) {
	switch {
	case w.f32 != nil:
		axpyPanelF32(c, a, w.f32[off:], ld)
	case w.i8 != nil:
		axpyPanelI8(c, a, w.i8[off:], ld)
	default:
		axpyPanelF16(c, a, w.f16[off:], ld)
	}
}

// dot returns Σ_i a[i]·W[off+i] over len(a) (int8 unscaled).
func (w *weights) dot(a []float32, off int) float32 {
	switch {
	case w.f32 != nil:
		return dotInner(a, w.f32[off:])
	case w.i8 != nil:
		return dotI8(a, w.i8[off:])
	}
	return dotF16(a, w.f16[off:])
}

// dotRows sets s[q·lds+x] = Σ_{i<k8} a[q·lda+i]·W[(x0+x)·lda+i] for q < r (2 or 3 rows of a; 1
// for float32),
// x < rows of W from row x0 (k8 a multiple of 8, int8 unscaled), with the dot*xNAVX2 kernels:
// only on the assembly path. W's rows have a's length, lda.
func (w *weights) dotRows(s []float32, lds int, a []float32, lda, r, x0, rows, k8 int) {
	a = a[:(r-1)*lda+k8]
	s = s[:(r-1)*lds+rows]
	lo, hi := x0*lda, (x0+rows-1)*lda+k8
	switch {
	case w.f32 != nil && r == 1:
		dotF32x1(s, lds, a, lda, w.f32[lo:hi], lda, k8, rows)
	case w.f32 != nil && r == 2:
		dotF32x2AVX2(s, lds, a, lda, w.f32[lo:hi], lda, k8, rows)
	case w.f32 != nil:
		dotF32x3AVX2(s, lds, a, lda, w.f32[lo:hi], lda, k8, rows)
	case w.i8 != nil && r == 2:
		dotI8x2AVX2(s, lds, a, lda, w.i8[lo:hi], lda, k8, rows)
	case w.i8 != nil:
		dotI8x3AVX2(s, lds, a, lda, w.i8[lo:hi], lda, k8, rows)
	case r == 2:
		dotF16x2AVX2(s, lds, a, lda, w.f16[lo:hi], lda, k8, rows)
	default:
		dotF16x3AVX2(s, lds, a, lda, w.f16[lo:hi], lda, k8, rows)
	}
}

// dotTail returns s + Σ_{k8≤i<len(a)} a[i]·W[off+i] (int8 unscaled), added one term at a time
// onto s as dotF32, dotI8 and dotF16 add their tails onto the assembly's sum.
func (w *weights) dotTail(s float32, a []float32, off, k8 int) float32 {
	for i := k8; i < len(a); i++ {
		s += a[i] * w.at(off+i)
	}
	return s
}

// scaleOf returns the factor of output channel j: the int8 scale, or 1.
func (w *weights) scaleOf(j int) float32 {
	if w.i8 != nil {
		return w.scale[j]
	}
	return 1
}

func checkQuant(what string, m, k, n, la, ldst, lw, lscale, lbias int, perChannel bool) {
	if m < 0 || k < 0 || n < 0 || la != m*k || ldst != m*n || lw != k*n || (lbias != 0 && lbias != n) || (perChannel && lscale != n) {
		panic(fmt.Sprintf("kernels: %s lengths dst=%d a=%d w=%d scale=%d bias=%d for m=%d k=%d n=%d", what, ldst, la, lw, lscale, lbias, m, k, n))
	}
}

// MatMulI8 computes dst = a·W + bias with W stored as int8 with a float32 scale per column
// (per output channel, symmetric), W[p,j] = q[p,j]·scale[j]:
//
//	dst: (M,N) · a: (M,K) · q: (K,N) · scale: (N) · bias: (N) or nil
//
// It panics when a length is inconsistent.
func MatMulI8(dst, a []float32, q []int8, scale, bias []float32, m, k, n int) {
	checkQuant("MatMulI8", m, k, n, len(a), len(dst), len(q), len(scale), len(bias), true)
	gemmW(m, n, k, a, k, weights{i8: q, scale: scale}, n, dst, n, bias)
}

// MatMulF16 computes dst = a·W + bias with W stored as IEEE float16 bits:
//
//	dst: (M,N) · a: (M,K) · h: (K,N) · bias: (N) or nil
func MatMulF16(dst, a []float32, h []uint16, bias []float32, m, k, n int) {
	checkQuant("MatMulF16", m, k, n, len(a), len(dst), len(h), 0, len(bias), false)
	gemmW(m, n, k, a, k, weights{f16: h}, n, dst, n, bias)
}

// MatMulTI8 computes dst = a·Wᵀ + bias with W stored one output channel per row as int8 with a
// float32 scale per row, W[j,p] = q[j,p]·scale[j] (the LM head on quantized token embeddings):
//
//	dst: (M,N) · a: (M,K) · q: (N,K) · scale: (N) · bias: (N) or nil
func MatMulTI8(dst, a []float32, q []int8, scale, bias []float32, m, k, n int) {
	checkQuant("MatMulTI8", m, k, n, len(a), len(dst), len(q), len(scale), len(bias), true)
	matMulTW(dst, a, weights{i8: q, scale: scale}, bias, m, k, n)
}

// MatMulTF16 computes dst = a·Wᵀ + bias with W (N,K) stored as IEEE float16 bits.
func MatMulTF16(dst, a []float32, h []uint16, bias []float32, m, k, n int) {
	checkQuant("MatMulTF16", m, k, n, len(a), len(dst), len(h), 0, len(bias), false)
	matMulTW(dst, a, weights{f16: h}, bias, m, k, n)
}
