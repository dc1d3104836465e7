package kernels

import (
	"fmt"
	"sync"
)

// Conv2DShape describes a 2-D convolution over NCHW activations with weights [Cout,Cin,KH,KW].
// Padding is zero padding and may be asymmetric (diffusers' Downsample2D pads (0,1,0,1)).
type Conv2DShape struct {
	B, Cin, H, W int // input (B,Cin,H,W)
	Cout, KH, KW int // weight (Cout,Cin,KH,KW)
	Stride       int
	PadTop       int
	PadBottom    int
	PadLeft      int
	PadRight     int
}

// OutH is the output height ⌊(H+PadTop+PadBottom−KH)/Stride⌋+1.
func (s Conv2DShape) OutH() int { return (s.H+s.PadTop+s.PadBottom-s.KH)/s.Stride + 1 }

// OutW is the output width ⌊(W+PadLeft+PadRight−KW)/Stride⌋+1.
func (s Conv2DShape) OutW() int { return (s.W+s.PadLeft+s.PadRight-s.KW)/s.Stride + 1 }

// check panics when the slices do not match the shape: a programmer error, as in gonum.
func (s Conv2DShape) check(out, inp, weight, bias []float32) {
	if s.B <= 0 || s.Cin <= 0 || s.H <= 0 || s.W <= 0 || s.Cout <= 0 || s.KH <= 0 || s.KW <= 0 || s.Stride <= 0 ||
		s.PadTop < 0 || s.PadBottom < 0 || s.PadLeft < 0 || s.PadRight < 0 || s.OutH() <= 0 || s.OutW() <= 0 {
		panic(fmt.Sprintf("kernels: bad conv2d shape %+v", s))
	}
	switch {
	case len(inp) != s.B*s.Cin*s.H*s.W:
		panic(fmt.Sprintf("kernels: conv2d input has %d values, want %d", len(inp), s.B*s.Cin*s.H*s.W))
	case len(weight) != s.Cout*s.Cin*s.KH*s.KW:
		panic(fmt.Sprintf("kernels: conv2d weight has %d values, want %d", len(weight), s.Cout*s.Cin*s.KH*s.KW))
	case bias != nil && len(bias) != s.Cout:
		panic(fmt.Sprintf("kernels: conv2d bias has %d values, want %d", len(bias), s.Cout))
	case len(out) != s.B*s.Cout*s.OutH()*s.OutW():
		panic(fmt.Sprintf("kernels: conv2d output has %d values, want %d", len(out), s.B*s.Cout*s.OutH()*s.OutW()))
	}
}

// Conv2DNaive is the reference convolution, accumulating in float64:
//
//	out[b,co,y,x] = bias[co] + Σ_{ci,i,j} weight[co,ci,i,j] · inp[b,ci, y·S+i−PadTop, x·S+j−PadLeft]
//
// with inp zero outside (H,W). inp: (B,Cin,H,W); out: (B,Cout,OutH,OutW); bias may be nil.
// It panics when a slice length does not match s.
func Conv2DNaive(out, inp, weight, bias []float32, s Conv2DShape) {
	s.check(out, inp, weight, bias)
	oh, ow := s.OutH(), s.OutW()
	for b := 0; b < s.B; b++ {
		for co := 0; co < s.Cout; co++ {
			for y := 0; y < oh; y++ {
				for x := 0; x < ow; x++ {
					var acc float64
					if bias != nil {
						acc = float64(bias[co])
					}
					for ci := 0; ci < s.Cin; ci++ {
						for i := 0; i < s.KH; i++ {
							iy := y*s.Stride + i - s.PadTop
							if iy < 0 || iy >= s.H {
								continue
							}
							for j := 0; j < s.KW; j++ {
								ix := x*s.Stride + j - s.PadLeft
								if ix < 0 || ix >= s.W {
									continue
								}
								acc += float64(weight[((co*s.Cin+ci)*s.KH+i)*s.KW+j]) * float64(inp[((b*s.Cin+ci)*s.H+iy)*s.W+ix])
							}
						}
					}
					out[((b*s.Cout+co)*oh+y)*ow+x] = float32(acc)
				}
			}
		}
	}
}

// convColBudget bounds the im2col buffer (in float32 values, 4 MiB) so that large images are
// convolved in bands of output rows instead of materializing K×OutH·OutW at once (a 3×3 conv
// over 128 channels at 256×256 would otherwise need 300 MB).
const convColBudget = 1 << 20

var convColPool = sync.Pool{New: func() any { return new([]float32) }}

// Conv2D computes the same convolution as Conv2DNaive. A 3×3 stride-1 convolution of at least
// winogradMinChannels channels in and out takes Winograd's F(2×2,3×3) or F(4×4,3×3) on the AVX2
// path (winograd.go, winograd43.go); an unpadded stride-1 1×1 conv is one matrix product per
// batch item on the input itself; any other is a banded implicit GEMM on the AVX2 path
// (convBanded) and otherwise a matrix product per batch item and band of output rows:
// out[co, band] = weight[co, K] · col[K, band] + bias[co], where K = Cin·KH·KW and col is the
// im2col unfolding of the input. It panics when a slice length does not match s.
func Conv2D(out, inp, weight, bias []float32, s Conv2DShape) {
	conv2D(out, inp, weight, nil, bias, s)
}

// conv2D is Conv2D, reading the fast paths' derived weights from cw when it is not nil.
func conv2D(out, inp, weight []float32, cw *ConvWeights, bias []float32, s Conv2DShape) {
	s.check(out, inp, weight, bias)
	if useWinograd(s) {
		conv3x3WinogradW(out, inp, weight, cw, bias, s)
		return
	}
	oh, ow := s.OutH(), s.OutW()
	n := oh * ow
	k := s.Cin * s.KH * s.KW
	pointwise := s.KH == 1 && s.KW == 1 && s.Stride == 1 && s.PadTop == 0 && s.PadBottom == 0 && s.PadLeft == 0 && s.PadRight == 0
	if !pointwise && useConvDirect(s) {
		convDirect(out, inp, weight, cw, bias, s)
		return
	}
	if !pointwise && useSIMD && convImplicit {
		convBandedW(out, inp, weight, cw, bias, s)
		return
	}
	rows := oh
	if !pointwise && k*n > convColBudget {
		rows = max(1, convColBudget/(k*ow))
	}
	var col []float32
	if !pointwise {
		p := convColPool.Get().(*[]float32)
		defer convColPool.Put(p)
		if cap(*p) < k*rows*ow {
			*p = make([]float32, k*rows*ow)
		}
		col = (*p)[:k*rows*ow]
	}
	for b := 0; b < s.B; b++ {
		src := inp[b*s.Cin*s.H*s.W : (b+1)*s.Cin*s.H*s.W]
		dst := out[b*s.Cout*n : (b+1)*s.Cout*n]
		if pointwise {
			Gemm(s.Cout, n, k, weight, k, src, n, dst, n, nil)
			addBiasRows(dst, bias, n)
			continue
		}
		for y0 := 0; y0 < oh; y0 += rows {
			y1 := min(oh, y0+rows)
			bn := (y1 - y0) * ow
			c := col[:k*bn]
			im2col(c, src, s, y0, y1)
			Gemm(s.Cout, bn, k, weight, k, c, bn, dst[y0*ow:], n, nil)
		}
		addBiasRows(dst, bias, n)
	}
}

// im2col unfolds output rows [y0,y1) of one image: col[(ci·KH+i)·KW+j, (y−y0)·OutW+x] =
// src[ci, y·S+i−PadTop, x·S+j−PadLeft], zero outside. src: (Cin,H,W).
func im2col(col, src []float32, s Conv2DShape, y0, y1 int) {
	ow := s.OutW()
	bn := (y1 - y0) * ow
	k := s.Cin * s.KH * s.KW
	parallelRange(k, bn, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			ci, i, j := r/(s.KH*s.KW), (r/s.KW)%s.KH, r%s.KW
			dst := col[r*bn : (r+1)*bn]
			plane := src[ci*s.H*s.W : (ci+1)*s.H*s.W]
			for y := y0; y < y1; y++ {
				row := dst[(y-y0)*ow : (y-y0+1)*ow]
				iy := y*s.Stride + i - s.PadTop
				if iy < 0 || iy >= s.H {
					clear(row)
					continue
				}
				line := plane[iy*s.W : (iy+1)*s.W]
				ix := j - s.PadLeft
				if s.Stride == 1 {
					// Columns x with 0 ≤ x+ix < W copy a contiguous run; the rest is padding.
					lo := min(ow, max(0, -ix))
					hi := max(lo, min(ow, s.W-ix))
					clear(row[:lo])
					copy(row[lo:hi], line[lo+ix:hi+ix])
					clear(row[hi:])
					continue
				}
				for x := range row {
					if xx := x*s.Stride + ix; xx >= 0 && xx < s.W {
						row[x] = line[xx]
					} else {
						row[x] = 0
					}
				}
			}
		}
	})
}

// addBiasRows adds bias[c] to every value of row c of dst (rows of length n); bias may be nil.
func addBiasRows(dst, bias []float32, n int) {
	if bias == nil {
		return
	}
	for c, bv := range bias {
		row := dst[c*n : (c+1)*n]
		for i := range row {
			row[i] += bv
		}
	}
}

// parallelMinWork is the work (items × cost) below which parallelRange stays on the caller's
// goroutine: waking a helper costs a few microseconds.
const parallelMinWork = 1 << 15

// rangeJob adapts a function over an item range to the worker pool.
type rangeJob func(lo, hi int)

func (f rangeJob) chunk(_, lo, hi int) { f(lo, hi) }

// parallelRange calls fn on disjoint subranges covering [0,n) on the worker pool, or on the
// caller's goroutine when n·cost (cost: approximate work per item) is too small to pay for it.
// fn must not call another parallel kernel.
func parallelRange(n, cost int, fn func(lo, hi int)) {
	if n*cost < parallelMinWork {
		fn(0, n)
		return
	}
	p := acquire()
	defer p.release()
	// About four chunks per worker, so a core slowed by other work does not hold up the rest.
	p.run(rangeJob(fn), n, max(1, n/(4*p.workers)))
}

// convImplicit selects convBanded for the convolutions Conv2D does not take to Winograd or to a
// plain product (stride 2, 1–8 channels, …). Off, they take the whole-image im2col + Gemm path,
// which the benchmarks compare against (BenchmarkConv2D's im2col subtests).
var convImplicit = true

// convBandBudget bounds each worker's unfolded band (float32 values, 1 MiB) unless a band of
// gemmNP·gemmNR columns needs more: the band is unfolded, multiplied and given its bias by one
// worker while it is still in that core's L2 (2 MiB here).
const convBandBudget = 1 << 18

// convBanded computes Conv2D as an implicit GEMM per worker band of output rows: the weight is
// packed once (packA's strips of gemmMR output channels); then each worker unfolds a band of
// output rows straight into the micro-kernels' panel layout (convPanels), multiplies it in place
// (gemmPackedJob, no B packing) into the output rows and adds the bias, with no barrier between
// the steps. It replaces whole-image im2col + Gemm, which wrote K·OutH·OutW values to memory,
// read them back to pack them and synchronized both workers per band.
func convBanded(out, inp, weight, bias []float32, s Conv2DShape) {
	convBandedW(out, inp, weight, nil, bias, s)
}

// convBandedW is convBanded taking the packed weight from cw when it is not nil.
func convBandedW(out, inp, weight []float32, cw *ConvWeights, bias []float32, s Conv2DShape) {
	oh, ow := s.OutH(), s.OutW()
	k := s.Cin * s.KH * s.KW
	ap, done := packedConvA(weight, cw, s.Cout, k)
	defer done()

	p := acquire()
	defer p.release()
	rows, bands := bandRows(oh, ow, convBandBudget/(k*ow), p.workers)
	j := &convJob{p: p, out: out, inp: inp, ap: ap, bias: bias, s: s, oh: oh, ow: ow, rows: rows, bands: bands,
		bufs: make([]*[]float32, p.workers)}
	p.run(j, s.B*bands, 1)
	putAll(&convColPool, j.bufs)
}

// bandRows splits n rows of w columns each into bands of rows: budget rows, but at least one
// group of gemmNP panels (gemmNP·gemmNR columns: the packed A, streamed once per band, is then
// used for at least 64 columns) and at most so many that there are two bands per worker.
func bandRows(n, w, budget, workers int) (rows, bands int) {
	rows = max(1, (gemmNP*gemmNR+w-1)/w, budget)
	rows = max(1, min(rows, (n+2*workers-1)/(2*workers)))
	return rows, (n + rows - 1) / rows
}

// putAll returns the non-nil buffers of bufs to pool.
func putAll(pool *sync.Pool, bufs []*[]float32) {
	for _, b := range bufs {
		if b != nil {
			pool.Put(b)
		}
	}
}

// convJob is convBanded's work: item i is band i%bands of batch item i/bands.
type convJob struct {
	p                  *workPool
	out, inp, ap, bias []float32
	s                  Conv2DShape
	oh, ow             int
	rows, bands        int
	bufs               []*[]float32 // per worker: the unfolded band and a padded input row
}

func (j *convJob) chunk(w, lo, hi int) {
	s := j.s
	k := s.Cin * s.KH * s.KW
	maxNT := j.rows * j.ow
	wp := s.W + s.PadLeft + s.PadRight + s.Stride*(s.KW+1)
	if j.bufs[w] == nil {
		j.bufs[w] = convColPool.Get().(*[]float32)
	}
	buf := growTo(j.bufs[w], (maxNT+gemmNR-1)/gemmNR*gemmNR*k+2*wp)
	n := j.oh * j.ow
	for i := lo; i < hi; i++ {
		b, band := i/j.bands, i%j.bands
		y0 := band * j.rows
		y1 := min(j.oh, y0+j.rows)
		nt := (y1 - y0) * j.ow
		v := buf[:(nt+gemmNR-1)/gemmNR*gemmNR*k]
		src := j.inp[b*s.Cin*s.H*s.W : (b+1)*s.Cin*s.H*s.W]
		dst := j.out[b*s.Cout*n : (b+1)*s.Cout*n]
		convPanels(v, src, s, y0, y1, buf[len(buf)-2*wp:])
		groups := (nt + gemmNP*gemmNR - 1) / (gemmNP * gemmNR)
		mblocks := (s.Cout + gemmMC - 1) / gemmMC
		g := gemmPackedJob{p: j.p, m: s.Cout, n: nt, k: k, ap: j.ap, w: weights{f32: v, panels: true}, ldb: nt,
			c: dst[y0*j.ow:], ldc: n, groups: groups, mblocks: mblocks, batch: packedBatch{n: 1}}
		g.chunk(w, 0, mblocks*groups)
		if j.bias != nil {
			for co, bv := range j.bias {
				row := dst[co*n+y0*j.ow:][:nt]
				for x := range row {
					row[x] += bv
				}
			}
		}
	}
}

// convPanels unfolds output rows [y0,y1) of one image (src: (Cin,H,W)) into the GEMM's panel
// layout: element (q,t) of the im2col matrix — q = (ci·KH+i)·KW+j, t = (y−y0)·OutW+x, value
// src[ci, y·S+i−PadTop, x·S+j−PadLeft], zero outside — at ((t/16)·K + q)·16 + t%16, zero past
// the last column. Each input row is zero-padded once into scratch and split into its S
// phases (every S-th value), so that tap j of every output column is the contiguous run
// phase[j%S][j/S : j/S+OutW]. scratch holds 2·(W+PadLeft+PadRight+S·(KW+1)) values.
func convPanels(v, src []float32, s Conv2DShape, y0, y1 int, scratch []float32) {
	ow := s.OutW()
	k := s.Cin * s.KH * s.KW
	nt := (y1 - y0) * ow
	st := s.Stride
	wp := len(scratch) / 2
	pad, ph := scratch[:wp], scratch[wp:]
	plen := wp / st // length of one phase: its last value pad[st−1+(plen−1)·st] is inside pad
	if r := nt % gemmNR; r != 0 {
		last := v[(nt/gemmNR)*gemmNR*k:]
		for q := 0; q < k; q++ {
			clear(last[q*gemmNR+r : (q+1)*gemmNR])
		}
	}
	for y := y0; y < y1; y++ {
		t0 := (y - y0) * ow
		for ci := 0; ci < s.Cin; ci++ {
			plane := src[ci*s.H*s.W : (ci+1)*s.H*s.W]
			for i := 0; i < s.KH; i++ {
				q0 := (ci*s.KH + i) * s.KW
				iy := y*st + i - s.PadTop
				if iy < 0 || iy >= s.H {
					for q := q0; q < q0+s.KW; q++ {
						panelRow(v, k, q, t0, ow, nil)
					}
					continue
				}
				line := plane[iy*s.W : (iy+1)*s.W]
				clear(pad[:s.PadLeft])
				copy(pad[s.PadLeft:], line)
				clear(pad[s.PadLeft+s.W:])
				phases := pad
				if st > 1 {
					for p := 0; p < st; p++ {
						d := ph[p*plen:][:plen]
						for x := range d {
							d[x] = pad[p+x*st]
						}
					}
					phases = ph
				}
				for j := 0; j < s.KW; j++ {
					panelRow(v, k, q0+j, t0, ow, phases[(j%st)*plen+j/st:][:ow])
				}
			}
		}
	}
}

// panelRow writes row[x] (zeros when row is nil) to column t0+x of row q of a panel-layout
// matrix of k rows (convPanels' layout).
func panelRow(v []float32, k, q, t0, n int, row []float32) {
	for x := 0; x < n; {
		t := t0 + x
		off := ((t/gemmNR)*k+q)*gemmNR + t%gemmNR
		if t%gemmNR == 0 && x+gemmNR <= n {
			if row == nil {
				*(*[gemmNR]float32)(v[off:]) = [gemmNR]float32{}
			} else {
				*(*[gemmNR]float32)(v[off:]) = *(*[gemmNR]float32)(row[x:])
			}
			x += gemmNR
			continue
		}
		m := min(n-x, gemmNR-t%gemmNR)
		d := v[off:][:m]
		if row == nil {
			clear(d)
		} else {
			copy(d, row[x:x+m])
		}
		x += m
	}
}
