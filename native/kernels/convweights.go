package kernels

import (
	"fmt"
	"sync"
)

// ConvWeights is a convolution weight (Cout,Cin,KH,KW) together with the forms Conv2D's fast
// paths derive from it — Winograd's transformed matrices U (F(2×2,3×3) and F(4×4,3×3)) and the
// implicit GEMM's packed strips — each computed on first use and then kept, so that a model
// that runs the same layer again skips the transforms (F(4×4,3×3)'s U of a 256×256 3×3 conv
// took 10.8 CPU-ms of a 28 CPU-ms call at 64×64). Each kept form costs its size in memory:
// U is 16/9 (F(2×2,3×3)) or 4 (F(4×4,3×3)) times the weight, the packed strips about 1×.
// It is safe for concurrent use.
type ConvWeights struct {
	w                 []float32
	cout, cin, kh, kw int
	u22, u43, packed  lazyWeights
}

// lazyWeights is one derived form, computed once.
type lazyWeights struct {
	once sync.Once
	v    []float32
}

func (l *lazyWeights) get(n int, fill func(v []float32)) []float32 {
	l.once.Do(func() {
		l.v = make([]float32, n)
		fill(l.v)
	})
	return l.v
}

// NewConvWeights wraps weight, (cout,cin,kh,kw) in row-major order; weight must not change
// afterwards. It panics when the length does not match.
func NewConvWeights(weight []float32, cout, cin, kh, kw int) *ConvWeights {
	if cout <= 0 || cin <= 0 || kh <= 0 || kw <= 0 || len(weight) != cout*cin*kh*kw {
		panic(fmt.Sprintf("kernels: conv weights of %d values for shape (%d,%d,%d,%d)", len(weight), cout, cin, kh, kw))
	}
	return &ConvWeights{w: weight, cout: cout, cin: cin, kh: kh, kw: kw}
}

// Conv2DWeights is Conv2D with a prepared weight (whose shape must match s's Cout, Cin, KH,
// KW); its results are bit-identical to Conv2D's.
func Conv2DWeights(out, inp []float32, w *ConvWeights, bias []float32, s Conv2DShape) {
	if w.cout != s.Cout || w.cin != s.Cin || w.kh != s.KH || w.kw != s.KW {
		panic(fmt.Sprintf("kernels: conv weights (%d,%d,%d,%d) for shape %+v", w.cout, w.cin, w.kh, w.kw, s))
	}
	conv2D(out, inp, w.w, w, bias, s)
}

// winogradU returns U for F(2×2,3×3) (tile 2, 16 matrices) or F(4×4,3×3) (tile 4, 36): cw's
// kept copy, or, when cw is nil, one computed into a pooled buffer that done must return.
func winogradU(weight []float32, cw *ConvWeights, cout, cin, tile int) (u []float32, done func()) {
	nx, fill := 16, func(u []float32) { winogradWeights(u, weight, cout, cin) }
	if tile == 4 {
		nx, fill = 36, func(u []float32) { winograd43Weights(u, weight, cout, cin) }
	}
	n := nx * winogradStripLen(cout, cin)
	if cw != nil {
		l := &cw.u22
		if tile == 4 {
			l = &cw.u43
		}
		return l.get(n, fill), func() {}
	}
	pu := winogradPool.Get().(*[]float32)
	u = growTo(pu, n)
	fill(u)
	return u, func() { winogradPool.Put(pu) }
}

// packedConvA returns the weight as packA's strips (Cout rows of K = Cin·KH·KW): cw's kept
// copy, or, when cw is nil, one packed into a pooled buffer that done must return.
func packedConvA(weight []float32, cw *ConvWeights, cout, k int) (ap []float32, done func()) {
	n := (cout + gemmMR - 1) / gemmMR * gemmMR * k
	fill := func(ap []float32) { packA(ap, cout, k, weight, k) }
	if cw != nil {
		return cw.packed.get(n, fill), func() {}
	}
	pa := convColPool.Get().(*[]float32)
	ap = growTo(pa, n)
	fill(ap)
	return ap, func() { convColPool.Put(pa) }
}
