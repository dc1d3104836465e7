package kernels

import (
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Tile sizes of the blocked product: a task is gemmMB rows × gemmNB columns of C, and the K loop
// is cut in gemmKB slices so that the B panel being reused (gemmKB×gemmNB floats, 128 KiB) stays
// in L2 while the rows of the task go by.
const (
	gemmMB = 16
	gemmNB = 128
	gemmKB = 256
)

func checkGemm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, bias []float32) {
	if m < 0 || n < 0 || k < 0 || lda < k || ldb < n || ldc < n {
		panic(fmt.Sprintf("kernels: bad gemm dims m=%d n=%d k=%d lda=%d ldb=%d ldc=%d", m, n, k, lda, ldb, ldc))
	}
	if m == 0 || n == 0 {
		return
	}
	switch {
	case k > 0 && len(a) < (m-1)*lda+k:
		panic(fmt.Sprintf("kernels: gemm A has %d values, want (%d-1)·%d+%d", len(a), m, lda, k))
	case k > 0 && len(b) < (k-1)*ldb+n:
		panic(fmt.Sprintf("kernels: gemm B has %d values, want (%d-1)·%d+%d", len(b), k, ldb, n))
	case len(c) < (m-1)*ldc+n:
		panic(fmt.Sprintf("kernels: gemm C has %d values, want (%d-1)·%d+%d", len(c), m, ldc, n))
	case bias != nil && len(bias) != n:
		panic(fmt.Sprintf("kernels: gemm bias has %d values, want %d", len(bias), n))
	}
}

// GemmNaive is the reference for Gemm, accumulating in float64:
//
//	C[i,j] = bias[j] + Σ_p A[i,p]·B[p,j]
func GemmNaive(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, bias []float32) {
	checkGemm(m, n, k, a, lda, b, ldb, c, ldc, bias)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			if bias != nil {
				s = float64(bias[j])
			}
			for p := 0; p < k; p++ {
				s += float64(a[i*lda+p]) * float64(b[p*ldb+j])
			}
			c[i*ldc+j] = float32(s)
		}
	}
}

// Gemm computes C = A·B (+ bias broadcast over the rows when bias is non-nil), overwriting C:
//
//	A: (M,K) row stride lda · B: (K,N) row stride ldb · C: (M,N) row stride ldc · bias: (N)
//
// B's layout is that of a Hugging Face Conv1D weight [in,out] and of an im2col matrix, so both
// use it untransposed. It panics when a dimension or slice length is inconsistent.
//
// Products of gemmMB rows or more (prefill, convolutions) go to the packed AVX2+FMA kernel when
// the CPU has it (6×16 register tile, measured 2–3× gonum's Sgemm at 64×768×3072), else to
// gonum's Sgemm (SSE; 1.3–1.7× faster than the pure-Go tiles). Fewer rows (decode) take the
// split-K path on the worker pool, which allocates nothing. With useSIMD and useGonum off,
// everything runs on the pure-Go tiles.
func Gemm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, bias []float32) {
	checkGemm(m, n, k, a, lda, b, ldb, c, ldc, bias)
	if m == 0 || n == 0 {
		return
	}
	gemmW(m, n, k, a, lda, weights{f32: b}, ldb, c, ldc, bias)
}

// gemmW is Gemm over weights of any storage type; int8 scales are per column of W.
func gemmW(m, n, k int, a []float32, lda int, w weights, ldb int, c []float32, ldc int, bias []float32) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		for i := 0; i < m; i++ {
			ci := c[i*ldc:][:n]
			setBias(ci, bias, 0)
		}
		return
	}
	// int8 panels with VNNI take the panel job at every size: a prefill runs the decode kernels'
	// integer products (gemmQ8), not a dequantized float GEMM.
	q8 := w.panels && w.i8 != nil && useVNNI
	if useSIMD && m >= gemmMB && !q8 {
		p := acquire()
		defer p.release()
		gemmPacked(p, m, n, k, a, lda, w, ldb, c, ldc, bias)
		return
	}
	if w.panels {
		p := acquire()
		defer p.release()
		p.pj = panelJob{m: m, n: n, k: k, a: a, w: w, c: c, bias: bias, ldc: ldc}
		if q8 {
			p.pj.lq = q8RowBytes(k)
			q8Scratch = growBytes(q8Scratch, m*p.pj.lq)
			p.pj.qa = q8Scratch
			quantizeQ8(p.pj.qa, p.pj.lq, a, lda, m, k)
		}
		p.run(&p.pj, (n+PanelWidth-1)/PanelWidth, panelGrain(m, k, w))
		p.pj = panelJob{}
		return
	}
	if w.f32 != nil {
		if useGonum && m >= gemmMB {
			gemmGonum(m, n, k, a, lda, w.f32, ldb, c, ldc, bias)
			return
		}
		if m >= gemmMB || !useSIMD && !useGonum {
			gemmPure(m, n, k, a, lda, w.f32, ldb, c, ldc, bias)
			return
		}
	}
	p := acquire()
	defer p.release()
	gemmSplitK(p, m, n, k, a, lda, w, ldb, c, ldc, bias)
}

// gemmGonum is Gemm through blas32: C is preset to the bias rows (or zero) and accumulated.
func gemmGonum(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, bias []float32) {
	beta := float32(0)
	if bias != nil {
		for i := 0; i < m; i++ {
			copy(c[i*ldc:i*ldc+n], bias)
		}
		beta = 1
	}
	blas32.Gemm(blas.NoTrans, blas.NoTrans, 1,
		blas32.General{Rows: m, Cols: k, Stride: lda, Data: a[:(m-1)*lda+k]},
		blas32.General{Rows: k, Cols: n, Stride: ldb, Data: b[:(k-1)*ldb+n]},
		beta, blas32.General{Rows: m, Cols: n, Stride: ldc, Data: c[:(m-1)*ldc+n]})
}

// gemmPure is the pure-Go blocked Gemm on the worker pool.
func gemmPure(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, bias []float32) {
	p := acquire()
	defer p.release()
	if m < gemmMB {
		gemmSplitK(p, m, n, k, a, lda, weights{f32: b}, ldb, c, ldc, bias)
		return
	}
	p.mm = gemmJob{m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, bias: bias}
	mt, nt := (m+gemmMB-1)/gemmMB, (n+gemmNB-1)/gemmNB
	p.run(&p.mm, mt*nt, 1)
	p.mm = gemmJob{}
}

// gemmSplitKParts is the number of K slices of a split-K product. It is fixed, not the number of
// workers, and the slices' partial sums are added in slice order, so the result does not depend
// on which worker ran what: the same inputs give the same bits on every run and machine.
const gemmSplitKParts = 8

// gemmSplitK computes a few-row product (a decode step) by splitting K: each slice streams whole
// rows of B — long sequential reads, which is what memory bandwidth rewards, where column strips
// would read short pieces of every row — into its own (M,N) partial sum, and the partial sums
// are added at the end (M·N·parts additions, nothing next to M·N·K).
func gemmSplitK(p *workPool, m, n, k int, a []float32, lda int, w weights, ldb int, c []float32, ldc int, bias []float32) {
	parts := gemmSplitKParts
	if m*n*k < rowsMinWork {
		parts = 1
	}
	parts = max(1, min(parts, k))
	p.parts = grow(p.parts, parts*m*n)
	p.sk = gemmSplitKJob{m: m, n: n, k: k, parts: parts, a: a, lda: lda, w: w, ldb: ldb, out: p.parts}
	p.run(&p.sk, parts, 1)
	p.sk = gemmSplitKJob{}
	for i := 0; i < m; i++ {
		ci := c[i*ldc:][:n]
		setBias(ci, bias, 0)
		if w.i8 == nil {
			for s := 0; s < parts; s++ {
				part := p.parts[(s*m+i)*n:][:n]
				for x := range ci {
					ci[x] += part[x]
				}
			}
			continue
		}
		// int8: the slices summed q unscaled; the per-column scale multiplies the total once.
		sum := p.parts[(0*m+i)*n:][:n]
		for s := 1; s < parts; s++ {
			part := p.parts[(s*m+i)*n:][:n]
			for x := range sum {
				sum[x] += part[x]
			}
		}
		for x := range ci {
			ci[x] += sum[x] * w.scale[x]
		}
	}
}

type gemmSplitKJob struct {
	m, n, k, parts int
	a              []float32
	w              weights
	lda, ldb       int
	out            []float32 // (parts,M,N) partial sums
}

// chunk computes the partial sums of K slices [lo,hi).
func (j *gemmSplitKJob) chunk(_, lo, hi int) {
	for s := lo; s < hi; s++ {
		p0, p1 := s*j.k/j.parts, (s+1)*j.k/j.parts
		part := j.out[s*j.m*j.n:][:j.m*j.n]
		clear(part)
		for i := 0; i < j.m; i++ {
			ci := part[i*j.n:][:j.n]
			if j.w.f32 != nil {
				axpyInner(ci, j.a[i*j.lda:], j.w.f32, j.ldb, 0, p0, p1)
			} else {
				j.w.axpy(ci, j.a[i*j.lda+p0:i*j.lda+p1], p0*j.ldb, j.ldb)
			}
		}
	}
}

// MatMul computes dst = a·b + bias for contiguous row-major operands:
//
//	dst: (M,N) · a: (M,K) · b: (K,N) · bias: (N) or nil
func MatMul(dst, a, b, bias []float32, m, k, n int) {
	if len(dst) != m*n || len(a) != m*k || len(b) != k*n {
		panic(fmt.Sprintf("kernels: MatMul lengths dst=%d a=%d b=%d for m=%d k=%d n=%d", len(dst), len(a), len(b), m, k, n))
	}
	Gemm(m, n, k, a, k, b, n, dst, n, bias)
}

// MatMulNaive is the reference for MatMul.
func MatMulNaive(dst, a, b, bias []float32, m, k, n int) {
	if len(dst) != m*n || len(a) != m*k || len(b) != k*n {
		panic(fmt.Sprintf("kernels: MatMul lengths dst=%d a=%d b=%d for m=%d k=%d n=%d", len(dst), len(a), len(b), m, k, n))
	}
	GemmNaive(m, n, k, a, k, b, n, dst, n, bias)
}

// MatVec computes dst = x·w + bias, one row through a Conv1D-layout weight (the decode step):
//
//	dst: (N) · x: (K) · w: (K,N) · bias: (N) or nil
func MatVec(dst, x, w, bias []float32, k, n int) { MatMul(dst, x, w, bias, 1, k, n) }

// MatVecNaive is the reference for MatVec.
func MatVecNaive(dst, x, w, bias []float32, k, n int) { MatMulNaive(dst, x, w, bias, 1, k, n) }

type gemmJob struct {
	m, n, k       int
	a, b, c, bias []float32
	lda, ldb, ldc int
}

// chunk computes tiles [lo,hi) of C; tile t covers rows (t/nt)·MB.. and columns (t%nt)·NB.. .
func (j *gemmJob) chunk(_, lo, hi int) {
	nt := (j.n + gemmNB - 1) / gemmNB
	for t := lo; t < hi; t++ {
		i0, j0 := (t/nt)*gemmMB, (t%nt)*gemmNB
		j.tile(i0, min(i0+gemmMB, j.m), j0, min(j0+gemmNB, j.n))
	}
}

// tile computes C[i0:i1, j0:j1] with rows in pairs and K in steps of 4: each pass over a strip
// of columns reads four rows of B once and updates two rows of C, which keeps the loop within the
// 16 SSE registers while halving the loads of B per multiply-add.
func (j *gemmJob) tile(i0, i1, j0, j1 int) {
	w := j1 - j0
	for i := i0; i < i1; i++ {
		ci := j.c[i*j.ldc+j0:][:w]
		setBias(ci, j.bias, j0)
	}
	a, b, lda, ldb := j.a, j.b, j.lda, j.ldb
	for p0 := 0; p0 < j.k; p0 += gemmKB {
		p1 := min(p0+gemmKB, j.k)
		i := i0
		for ; i+2 <= i1; i += 2 {
			c0 := j.c[i*j.ldc+j0:][:w]
			c1 := j.c[(i+1)*j.ldc+j0:][:w]
			ar0, ar1 := a[i*lda:], a[(i+1)*lda:]
			p := p0
			for ; p+4 <= p1; p += 4 {
				a00, a01, a02, a03 := ar0[p], ar0[p+1], ar0[p+2], ar0[p+3]
				a10, a11, a12, a13 := ar1[p], ar1[p+1], ar1[p+2], ar1[p+3]
				b0 := b[p*ldb+j0:][:w]
				b1 := b[(p+1)*ldb+j0:][:w]
				b2 := b[(p+2)*ldb+j0:][:w]
				b3 := b[(p+3)*ldb+j0:][:w]
				for x := range c0 {
					v0, v1, v2, v3 := b0[x], b1[x], b2[x], b3[x]
					c0[x] += a00*v0 + a01*v1 + a02*v2 + a03*v3
					c1[x] += a10*v0 + a11*v1 + a12*v2 + a13*v3
				}
			}
			for ; p < p1; p++ {
				a0, a1 := ar0[p], ar1[p]
				bp := b[p*ldb+j0:][:w]
				for x := range c0 {
					c0[x] += a0 * bp[x]
					c1[x] += a1 * bp[x]
				}
			}
		}
		if i < i1 {
			axpyRow(j.c[i*j.ldc+j0:][:w], a[i*lda:], b, ldb, j0, p0, p1)
		}
	}
}

// axpyRow adds Σ_{p0≤p<p1} a[p]·B[p, j0:j0+len(c)] to c, four rows of B per pass.
func axpyRow(c, a, b []float32, ldb, j0, p0, p1 int) {
	w := len(c)
	p := p0
	for ; p+4 <= p1; p += 4 {
		a0, a1, a2, a3 := a[p], a[p+1], a[p+2], a[p+3]
		b0 := b[p*ldb+j0:][:w]
		b1 := b[(p+1)*ldb+j0:][:w]
		b2 := b[(p+2)*ldb+j0:][:w]
		b3 := b[(p+3)*ldb+j0:][:w]
		for x := range c {
			c[x] += a0*b0[x] + a1*b1[x] + a2*b2[x] + a3*b3[x]
		}
	}
	for ; p < p1; p++ {
		a0 := a[p]
		bp := b[p*ldb+j0:][:w]
		for x := range c {
			c[x] += a0 * bp[x]
		}
	}
}

// MatMulTNaive is the reference for MatMulT, accumulating in float64.
func MatMulTNaive(dst, a, b, bias []float32, m, k, n int) {
	checkMatMulT(dst, a, b, bias, m, k, n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			if bias != nil {
				s = float64(bias[j])
			}
			for p := 0; p < k; p++ {
				s += float64(a[i*k+p]) * float64(b[j*k+p])
			}
			dst[i*n+j] = float32(s)
		}
	}
}

func checkMatMulT(dst, a, b, bias []float32, m, k, n int) {
	if m < 0 || k < 0 || n < 0 || len(dst) != m*n || len(a) != m*k || len(b) != n*k || (bias != nil && len(bias) != n) {
		panic(fmt.Sprintf("kernels: MatMulT lengths dst=%d a=%d b=%d bias=%d for m=%d k=%d n=%d", len(dst), len(a), len(b), len(bias), m, k, n))
	}
}

// MatMulT computes dst = a·bᵀ + bias, for weights stored one output per row (nn.Linear, a tied
// embedding used as the LM head, attention keys):
//
//	dst: (M,N) · a: (M,K) · b: (N,K) · bias: (N) or nil
func MatMulT(dst, a, b, bias []float32, m, k, n int) {
	checkMatMulT(dst, a, b, bias, m, k, n)
	if m == 0 || n == 0 {
		return
	}
	matMulTW(dst, a, weights{f32: b}, bias, m, k, n)
}

// matMulTW is MatMulT over weights of any storage type; int8 scales are per row of W.
func matMulTW(dst, a []float32, w weights, bias []float32, m, k, n int) {
	if m == 0 || n == 0 {
		return
	}
	p := acquire()
	defer p.release()
	p.mmt = gemmTJob{m: m, n: n, k: k, a: a, w: w, c: dst, bias: bias}
	if w.i8 != nil && useVNNI {
		p.mmt.lq = q8RowBytesT(k)
		p.mmt.qa = quantizeQ8T(a, m, k)
	}
	p.run(&p.mmt, n, 64)
	p.mmt = gemmTJob{}
}

type gemmTJob struct {
	m, n, k    int
	a, c, bias []float32
	w          weights
	qa         []byte // int8 decode rows on the VNNI path: a quantized (quantizeQ8T), row i at qa[i·lq:]
	lq         int
}

// chunk computes columns [lo,hi) of every row of C. On the pure-Go path it takes four columns
// (rows of W) at a time so that each load of A feeds four independent sums.
func (j *gemmTJob) chunk(_, lo, hi int) {
	if j.qa != nil {
		j.chunkQ8(lo, hi)
		return
	}
	k := j.k
	if (j.m > 1 || j.w.f32 != nil && lmHeadRows) && useSIMD && (j.w.f16 == nil || haveF16C) {
		j.chunkRows(lo, hi)
		return
	}
	for i := 0; i < j.m; i++ {
		ai := j.a[i*k:][:k]
		ci := j.c[i*j.n:][:j.n]
		x := lo
		if f := j.w.f32; f != nil && !useSIMD && !useGonum {
			for ; x+4 <= hi; x += 4 {
				r0 := f[x*k:][:len(ai)]
				r1 := f[(x+1)*k:][:len(ai)]
				r2 := f[(x+2)*k:][:len(ai)]
				r3 := f[(x+3)*k:][:len(ai)]
				var s0, s1, s2, s3 float32
				for p, v := range ai {
					s0 += v * r0[p]
					s1 += v * r1[p]
					s2 += v * r2[p]
					s3 += v * r3[p]
				}
				ci[x], ci[x+1], ci[x+2], ci[x+3] = s0, s1, s2, s3
			}
			for ; x < hi; x++ {
				ci[x] = dot(ai, f[x*k:][:len(ai)])
			}
		}
		for ; x < hi; x++ {
			ci[x] = j.w.dot(ai, x*k) * j.w.scaleOf(x)
		}
		if j.bias != nil {
			for x := lo; x < hi; x++ {
				ci[x] += j.bias[x]
			}
		}
	}
}

// chunkRows is chunk on the assembly path for several rows: one call of dot*x{2,3}AVX2 takes
// up to gemvRows rows of A through all the rows [lo,hi) of W (a chunk of 64 rows of GPT-2's LM
// head, 192 KiB, stays in L2 for the next group of rows), so each row of W is loaded once per
// three rows of A and the per-row call overhead is gone. The kernels form each row's sum as
// dot*AVX2 does and the tail and scale are applied as the one-row path applies them, so every
// output has the bits of the one-row product.
func (j *gemmTJob) chunkRows(lo, hi int) {
	k := j.k
	k8 := k &^ 7
	for i := 0; i < j.m; {
		r := min(gemvRows, j.m-i)
		if k8 == 0 || r == 1 && j.w.f32 == nil {
			r = 1
			ci := j.c[i*j.n:][:j.n]
			for x := lo; x < hi; x++ {
				ci[x] = j.w.dot(j.a[i*k:][:k], x*k)
			}
		} else {
			j.w.dotRows(j.c[i*j.n+lo:], j.n, j.a[i*k:], k, r, lo, hi-lo, k8)
			if k8 < k {
				for q := 0; q < r; q++ {
					cq, aq := j.c[(i+q)*j.n:][:j.n], j.a[(i+q)*k:][:k]
					for x := lo; x < hi; x++ {
						cq[x] = j.w.dotTail(cq[x], aq, x*k, k8)
					}
				}
			}
		}
		for q := 0; q < r; q++ {
			cq := j.c[(i+q)*j.n:][:j.n]
			for x := lo; x < hi; x++ {
				v := cq[x] * j.w.scaleOf(x)
				if j.bias != nil {
					v += j.bias[x]
				}
				cq[x] = v
			}
		}
		i += r
	}
}

// dot returns Σ a[i]·b[i] with four partial sums; len(b) must be ≥ len(a).
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// setBias starts a row of C: ci = bias[j0:j0+len(ci)], or zeros when bias is nil.
func setBias(ci, bias []float32, j0 int) {
	if bias != nil {
		copy(ci, bias[j0:j0+len(ci)])
	} else {
		clear(ci)
	}
}
