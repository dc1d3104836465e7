package kernels

import (
	"fmt"
	"math"
)

// rowOp selects the row-wise kernel a rowsJob runs.
type rowOp int

const (
	opLayerNorm rowOp = iota
	opAddLayerNorm
	opGeluNew
	opSoftmax
)

// rowsMinWork is the element count below which a row-wise kernel stays on the calling goroutine:
// waking a helper costs a few microseconds, as much as a few thousand elements of work.
const rowsMinWork = 1 << 14

type rowsJob struct {
	op          rowOp
	dst, x, y   []float32
	gamma, beta []float32
	c           int
	eps         float32
}

func (j *rowsJob) chunk(_, lo, hi int) {
	switch j.op {
	case opLayerNorm:
		for r := lo; r < hi; r++ {
			layerNormRow(j.dst[r*j.c:][:j.c], j.x[r*j.c:][:j.c], j.gamma, j.beta, j.eps)
		}
	case opAddLayerNorm:
		for r := lo; r < hi; r++ {
			x, y := j.x[r*j.c:][:j.c], j.y[r*j.c:][:j.c]
			for i := range x {
				x[i] += y[i]
			}
			layerNormRow(j.dst[r*j.c:][:j.c], x, j.gamma, j.beta, j.eps)
		}
	case opGeluNew:
		geluNew(j.dst[lo*j.c:hi*j.c], j.x[lo*j.c:hi*j.c])
	case opSoftmax:
		for r := lo; r < hi; r++ {
			softmaxRow(j.dst[r*j.c:][:j.c], j.x[r*j.c:][:j.c])
		}
	}
}

// runRows applies op to rows of width c, in parallel when the tensor is large enough.
func runRows(j rowsJob, rows int) {
	if rows*j.c < rowsMinWork {
		j.chunk(0, 0, rows)
		return
	}
	p := acquire()
	defer p.release()
	p.rows = j
	p.run(&p.rows, rows, max(1, rowsMinWork/(4*j.c)))
	p.rows = rowsJob{}
}

func checkRows(name string, dst, x []float32, c int) int {
	if c <= 0 || len(x)%c != 0 || len(dst) != len(x) {
		panic(fmt.Sprintf("kernels: %s: len(dst)=%d len(x)=%d not rows of %d", name, len(dst), len(x), c))
	}
	return len(x) / c
}

// LayerNormNaive is the reference for LayerNorm, in float64.
func LayerNormNaive(dst, x, gamma, beta []float32, c int, eps float32) {
	rows := checkRows("LayerNorm", dst, x, c)
	if len(gamma) != c || len(beta) != c {
		panic(fmt.Sprintf("kernels: LayerNorm: gamma %d beta %d, want %d", len(gamma), len(beta), c))
	}
	for r := 0; r < rows; r++ {
		xr := x[r*c : (r+1)*c]
		var mean, v float64
		for _, e := range xr {
			mean += float64(e)
		}
		mean /= float64(c)
		for _, e := range xr {
			d := float64(e) - mean
			v += d * d
		}
		v /= float64(c)
		inv := 1 / math.Sqrt(v+float64(eps))
		for i, e := range xr {
			dst[r*c+i] = float32((float64(e)-mean)*inv*float64(gamma[i]) + float64(beta[i]))
		}
	}
}

// LayerNorm normalizes each row of x over its c values (biased variance, as torch.nn.LayerNorm):
//
//	dst[r,i] = (x[r,i] − mean_r) / sqrt(var_r + eps) · gamma[i] + beta[i]
//
// x, dst: (R,C) (dst may alias x) · gamma, beta: (C).
func LayerNorm(dst, x, gamma, beta []float32, c int, eps float32) {
	rows := checkRows("LayerNorm", dst, x, c)
	if len(gamma) != c || len(beta) != c {
		panic(fmt.Sprintf("kernels: LayerNorm: gamma %d beta %d, want %d", len(gamma), len(beta), c))
	}
	runRows(rowsJob{op: opLayerNorm, dst: dst, x: x, gamma: gamma, beta: beta, c: c, eps: eps}, rows)
}

// AddLayerNorm adds y to x and normalizes the sum, row by row on the worker pool — a
// transformer's residual add and the next LayerNorm in one pass:
//
//	x[r,i] += y[r,i]; dst[r,:] = LayerNorm(x[r,:])
//
// x, y, dst: (R,C) (dst must not alias x or y) · gamma, beta: (C). Each row has the bits of the
// add followed by LayerNorm.
func AddLayerNorm(dst, x, y, gamma, beta []float32, c int, eps float32) {
	rows := checkRows("AddLayerNorm", dst, x, c)
	if len(y) != len(x) || len(gamma) != c || len(beta) != c {
		panic(fmt.Sprintf("kernels: AddLayerNorm: y %d gamma %d beta %d, want %d, %d, %d", len(y), len(gamma), len(beta), len(x), c, c))
	}
	runRows(rowsJob{op: opAddLayerNorm, dst: dst, x: x, y: y, gamma: gamma, beta: beta, c: c, eps: eps}, rows)
}

// layerNormRow keeps the statistics in float64 (two passes): the row is short and the cost is
// negligible next to the matrix products, while float32 sums lose digits when |mean| ≫ spread.
//
// With useSIMD the two sums run eight values at a time (sumF64AVX2, sumSqDevF64AVX2: float64
// lanes, a fixed order, so a row's result does not depend on the rows beside it), and with
// useAVX512 the last pass too (layerNormAffineAVX512, with this loop's roundings).
func layerNormRow(dst, x, gamma, beta []float32, eps float32) {
	gamma, beta, dst = gamma[:len(x)], beta[:len(x)], dst[:len(x)]
	n8 := 0
	if useSIMD {
		n8 = len(x) &^ 7
	}
	var s float64
	if n8 > 0 {
		s = sumF64AVX2(x[:n8])
	}
	for _, e := range x[n8:] {
		s += float64(e)
	}
	mean := s / float64(len(x))
	var v float64
	if n8 > 0 {
		v = sumSqDevF64AVX2(x[:n8], mean)
	}
	for _, e := range x[n8:] {
		d := float64(e) - mean
		v += d * d
	}
	inv := 1 / math.Sqrt(v/float64(len(x))+float64(eps))
	i := 0
	if n8 > 0 && useAVX512 {
		p := [2]float64{mean, inv}
		layerNormAffineAVX512(dst[:n8], x[:n8], gamma[:n8], beta[:n8], p[:])
		i = n8
	}
	for ; i < len(x); i++ {
		// the centring in float64: in float32, x − mean drops digits when |mean| ≫ spread
		dst[i] = float32((float64(x[i])-mean)*inv)*gamma[i] + beta[i]
	}
}

// geluC is sqrt(2/π), the constant of the tanh approximation.
const geluC = 0.7978845608028654

// GeluNewNaive is the reference for GeluNew, in float64.
func GeluNewNaive(dst, x []float32) {
	if len(dst) != len(x) {
		panic(fmt.Sprintf("kernels: GeluNew: len(dst)=%d len(x)=%d", len(dst), len(x)))
	}
	for i, e := range x {
		v := float64(e)
		dst[i] = float32(0.5 * v * (1 + math.Tanh(geluC*(v+0.044715*v*v*v))))
	}
}

// GeluNew applies GPT-2's tanh approximation of GELU ("gelu_new") element-wise:
//
//	dst[i] = 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))
//
// dst may alias x.
func GeluNew(dst, x []float32) {
	if len(dst) != len(x) {
		panic(fmt.Sprintf("kernels: GeluNew: len(dst)=%d len(x)=%d", len(dst), len(x)))
	}
	const width = 256 // treat the vector as rows so runRows can split it
	n := len(x) / width * width
	if n > 0 {
		runRows(rowsJob{op: opGeluNew, dst: dst[:n], x: x[:n], c: width}, n/width)
	}
	geluNew(dst[n:], x[n:])
}

// geluNew evaluates tanh through exp: tanh(u) = 1 − 2/(exp(2u)+1), which is exact in float64
// at the ends (±1) and is about twice as fast as math.Tanh.
// With useSIMD, whole groups of eight go through geluAVX2 (the same formula on a float32
// polynomial exp), and with useAVX512 too whole groups of sixteen through geluAVX512 (the same
// operations on ZMM registers, so the same bits).
func geluNew(dst, x []float32) {
	dst = dst[:len(x)]
	if useSIMD && useAVX512 {
		// Sixteen lanes at a time, each with geluAVX2's operations: the same bits.
		if n16 := len(x) &^ 15; n16 > 0 {
			geluAVX512(dst[:n16], x[:n16])
			dst, x = dst[n16:], x[n16:]
		}
	}
	if useSIMD {
		n8 := len(x) &^ 7
		if n8 > 0 {
			geluAVX2(dst[:n8], x[:n8])
		}
		dst, x = dst[n8:], x[n8:]
	}
	for i, e := range x {
		v := float64(e)
		u := geluC * (v + 0.044715*v*v*v)
		t := 1 - 2/(math.Exp(2*u)+1)
		dst[i] = float32(0.5 * v * (1 + t))
	}
}

// SoftmaxNaive is the reference for Softmax, in float64.
func SoftmaxNaive(dst, x []float32, c int) {
	rows := checkRows("Softmax", dst, x, c)
	for r := 0; r < rows; r++ {
		xr := x[r*c : (r+1)*c]
		m := math.Inf(-1)
		for _, e := range xr {
			m = math.Max(m, float64(e))
		}
		var s float64
		for _, e := range xr {
			s += math.Exp(float64(e) - m)
		}
		for i, e := range xr {
			dst[r*c+i] = float32(math.Exp(float64(e)-m) / s)
		}
	}
}

// Softmax normalizes each row of width c:
//
//	dst[r,i] = exp(x[r,i] − max_r) / Σ_j exp(x[r,j] − max_r)
//
// x, dst: (R,C); dst may alias x. A row of −Inf only yields NaN, as in torch.
func Softmax(dst, x []float32, c int) {
	rows := checkRows("Softmax", dst, x, c)
	runRows(rowsJob{op: opSoftmax, dst: dst, x: x, c: c}, rows)
}

func softmaxRow(dst, x []float32) {
	dst = dst[:len(x)]
	m := float32(math.Inf(-1))
	for _, e := range x {
		m = max(m, e)
	}
	var s float64
	for i, e := range x {
		v := float32(math.Exp(float64(e - m)))
		dst[i] = v
		s += float64(v)
	}
	inv := float32(1 / s)
	for i := range dst {
		dst[i] *= inv
	}
}
