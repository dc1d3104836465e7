package kernels

import (
	"math"
	"sync"
)

// The direct convolution: an implicit GEMM whose B operand is never materialized. The input
// is copied once, zero-padded and split into its Stride² phases (every Stride-th row and
// column), so that kernel tap (i,j) of 16 neighbouring outputs of one row is a run of 16
// consecutive values of phase (i mod S, j mod S), shifted by (⌊i/S⌋, ⌊j/S⌋). The micro-kernel
// (convDirectRx64AVX512) reads those runs in place through a table of one element offset per
// depth step (input channel, tap) and multiplies them by the packed weight, as gemm6x64 does
// with packed panels. It replaces convBanded's unfolding (K values written and read again per
// output) for stride-2 convolutions and few-channel ones (conv_in, conv_out), which measured
// 41–63 GFLOP/s per core against the products' ~100.

// convDirectOn switches the direct convolution on; off, its shapes take convBanded (for A/B).
var convDirectOn = true

// convDirectKC is the depth block: the weight's strips for one block of input channels and taps
// (Cout·convDirectKC values, 256 KiB at 256 channels) stay in L2 while a chunk of tiles reads them.
const convDirectKC = 256

// convDirectTiles is how many 64-output tiles a worker takes at a time.
const convDirectTiles = 4

var convDirectPool = sync.Pool{New: func() any { return new([]float32) }}

// useConvDirect reports whether Conv2D computes s with convDirect: AVX-512, output rows of whole
// 16-value runs and whole tiles of four runs per image, offsets that fit int32.
func useConvDirect(s Conv2DShape) bool {
	oh, ow := s.OutH(), s.OutW()
	hph, wph := convDirectPhaseDims(s)
	return convDirectOn && useAVX512 && ow%16 == 0 && (oh*ow/16)%4 == 0 &&
		s.Cin*s.Stride*s.Stride*hph*wph < math.MaxInt32
}

// convDirectPhaseDims is the size of one phase plane: every read of the outputs' runs is inside.
func convDirectPhaseDims(s Conv2DShape) (hph, wph int) {
	return s.OutH() + (s.KH-1)/s.Stride, s.OutW() + (s.KW-1)/s.Stride
}

// convDirectPhases writes the Cin·S² phase planes of one image src (Cin,H,W): plane
// (ci·S+pi)·S+pj at ph[((ci·S+pi)·S+pj)·hph·wph:] holds, at (a,b), the input value at
// (S·a+pi−PadTop, S·b+pj−PadLeft), zero outside the image.
func convDirectPhases(ph, src []float32, s Conv2DShape, hph, wph int) {
	st := s.Stride
	parallelRange(s.Cin*st*st, hph*wph, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			ci, pi, pj := p/(st*st), (p/st)%st, p%st
			plane := src[ci*s.H*s.W : (ci+1)*s.H*s.W]
			dst := ph[p*hph*wph : (p+1)*hph*wph]
			// Columns b in [b0,b1) read the input at x = S·b + pj − PadLeft, inside [0,W).
			x0 := pj - s.PadLeft
			b0 := min(wph, max(0, (-x0+st-1)/st))
			b1 := max(b0, min(wph, (s.W-1-x0)/st+1))
			if s.W-1-x0 < 0 {
				b1 = b0
			}
			for a := 0; a < hph; a++ {
				row := dst[a*wph : (a+1)*wph]
				iy := st*a + pi - s.PadTop
				if iy < 0 || iy >= s.H {
					clear(row)
					continue
				}
				clear(row[:b0])
				clear(row[b1:])
				if b1 == b0 {
					continue
				}
				line := plane[iy*s.W+st*b0+x0 : iy*s.W+st*(b1-1)+x0+1]
				in := row[b0:b1]
				if st == 1 {
					copy(in, line)
					continue
				}
				for b := range in {
					in[b] = line[st*b]
				}
			}
		}
	})
}

// convDirectOffsets returns the element offset of depth step q = (ci·KH+i)·KW+j (the weight's
// order) in the phase planes of one image: plane (ci, i mod S, j mod S), row ⌊i/S⌋, column ⌊j/S⌋.
func convDirectOffsets(s Conv2DShape, hph, wph int) []int32 {
	st := s.Stride
	offs := make([]int32, 0, s.Cin*s.KH*s.KW)
	for ci := 0; ci < s.Cin; ci++ {
		for i := 0; i < s.KH; i++ {
			for j := 0; j < s.KW; j++ {
				p := (ci*st+i%st)*st + j%st
				offs = append(offs, int32(p*hph*wph+(i/st)*wph+j/st))
			}
		}
	}
	return offs
}

// convDirect computes Conv2D for a shape useConvDirect takes, the packed weight from cw when it
// is not nil.
func convDirect(out, inp, weight []float32, cw *ConvWeights, bias []float32, s Conv2DShape) {
	oh, ow := s.OutH(), s.OutW()
	k := s.Cin * s.KH * s.KW
	ap, done := packedConvA(weight, cw, s.Cout, k)
	defer done()
	hph, wph := convDirectPhaseDims(s)
	plane := s.Cin * s.Stride * s.Stride * hph * wph
	pp := convDirectPool.Get().(*[]float32)
	defer convDirectPool.Put(pp)
	ph := growTo(pp, plane)
	offs := convDirectOffsets(s, hph, wph)
	tiles := oh * ow / 64
	for b := 0; b < s.B; b++ {
		convDirectPhases(ph, inp[b*s.Cin*s.H*s.W:(b+1)*s.Cin*s.H*s.W], s, hph, wph)
		j := &convDirectJob{out: out[b*s.Cout*oh*ow : (b+1)*s.Cout*oh*ow], ph: ph, ap: ap, offs: offs, bias: bias,
			cout: s.Cout, k: k, n: oh * ow, ow: ow, wph: wph, tiles: tiles}
		p := acquire()
		p.run(j, (tiles+convDirectTiles-1)/convDirectTiles, 1)
		p.release()
	}
}

// convDirectJob is convDirect's work over one image: item i is tiles
// [i·convDirectTiles, (i+1)·convDirectTiles) of 64 outputs (four runs of 16, in row-major order).
type convDirectJob struct {
	out, ph, ap, bias []float32
	offs              []int32
	cout, k, n        int // n: outputs per channel
	ow, wph, tiles    int
}

func (j *convDirectJob) chunk(_, lo, hi int) {
	n := j.n
	var xo, co [4]int
	var bv [gemmMR]float32
	for item := lo; item < hi; item++ {
		t0, t1 := item*convDirectTiles, min(j.tiles, (item+1)*convDirectTiles)
		for k0 := 0; k0 < j.k; k0 += convDirectKC {
			k1 := min(j.k, k0+convDirectKC)
			offs := j.offs[k0:k1]
			for t := t0; t < t1; t++ {
				for q := range 4 {
					o := (4*t + q) * 16 // first output of run q
					y, x := o/j.ow, o%j.ow
					xo[q], co[q] = y*j.wph+x, o
				}
				for r0 := 0; r0 < j.cout; r0 += gemmMR {
					rows := min(gemmMR, j.cout-r0)
					a := j.ap[r0*j.k+k0*gemmMR : r0*j.k+k1*gemmMR]
					var init []float32
					if k0 == 0 {
						bv = [gemmMR]float32{}
						if j.bias != nil {
							copy(bv[:rows], j.bias[r0:r0+rows])
						}
						init = bv[:]
					}
					c := j.out[r0*n:]
					switch rows {
					case 6:
						convDirect6x64AVX512(a, offs, j.ph, xo[:], c, co[:], n, init)
					case 5:
						convDirect5x64AVX512(a, offs, j.ph, xo[:], c, co[:], n, init)
					case 4:
						convDirect4x64AVX512(a, offs, j.ph, xo[:], c, co[:], n, init)
					case 3:
						convDirect3x64AVX512(a, offs, j.ph, xo[:], c, co[:], n, init)
					case 2:
						convDirect2x64AVX512(a, offs, j.ph, xo[:], c, co[:], n, init)
					default:
						convDirect1x64AVX512(a, offs, j.ph, xo[:], c, co[:], n, init)
					}
				}
			}
		}
	}
}
