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
// winogradMinChannels channels in and out takes Winograd's F(2×2,3×3) on the AVX2 path
// (winograd.go); any other is a matrix product per batch item and band of output rows: out[co, band] = weight[co, K] · col[K, band] + bias[co], where
// K = Cin·KH·KW and col is the im2col unfolding of the input. A 1×1 stride-1 unpadded conv skips
// the unfolding (col is the input itself). It panics when a slice length does not match s.
func Conv2D(out, inp, weight, bias []float32, s Conv2DShape) {
	s.check(out, inp, weight, bias)
	if useWinograd(s) {
		conv3x3Winograd(out, inp, weight, bias, s)
		return
	}
	oh, ow := s.OutH(), s.OutW()
	n := oh * ow
	k := s.Cin * s.KH * s.KW
	pointwise := s.KH == 1 && s.KW == 1 && s.Stride == 1 && s.PadTop == 0 && s.PadBottom == 0 && s.PadLeft == 0 && s.PadRight == 0
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
