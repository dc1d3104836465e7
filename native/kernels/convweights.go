package kernels

import (
	"fmt"
	"sync"
)

// ConvWeights is a convolution weight (Cout,Cin,KH,KW) together with the forms Conv2D's fast
// paths derive from it — Winograd's transformed matrices U (F(2×2,3×3) and F(4×4,3×3)) and the
// implicit GEMM's and direct convolution's packed strips — each computed on first use and then
// kept, so that a model that runs the same layer again skips the transforms. Each kept form
// costs its size in memory: U is 16/9 (F(2×2,3×3)) or 4 (F(4×4,3×3)) times the weight, the
// packed strips about 1× (the 256² VAE plugin's peak RSS: 306 → 644 MiB). It is safe for
// concurrent use.
type ConvWeights struct {
	w                 []float32
	cout, cin, kh, kw int
	u22, u43, packed  lazyWeights
	recomputeU        bool // Winograd transforms are computed per call, not kept
}

// RecomputeWinograd makes w compute its Winograd transforms on every call instead of keeping
// them (4× the weight's memory for F(4×4,3×3)); results are the same bits. Call it before
// first use.
func (w *ConvWeights) RecomputeWinograd() { w.recomputeU = true }

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
// Computed per call (winogradWeightsGemm), U cost 3.5–5 CPU-ms more per 256×256 layer than the
// kept copy at 32×32 outputs (BenchmarkConv2D 3x3_256ch_32: 5.0–5.6 → 9.7–11 cpu-ms/op).
func winogradU(weight []float32, cw *ConvWeights, cout, cin, tile int) (u []float32, done func()) {
	nx := 16
	if tile == 4 {
		nx = 36
	}
	n := nx * winogradStripLen(cout, cin)
	fill := func(u []float32) { winogradWeightsGemm(u, weight, cout, cin, tile) }
	if cw != nil && !cw.recomputeU {
		l := &cw.u22
		if tile == 4 {
			l = &cw.u43
		}
		return l.get(n, fill), func() {}
	}
	pu := winogradUPool.Get().(*[]float32)
	u = growTo(pu, n)
	fill(u)
	return u, func() { winogradUPool.Put(pu) }
}

// winogradUPool holds U buffers and winogradKPool the kernels' 9×L layout, apart from
// winogradPool's per-worker buffers: sharing one pool, a small buffer drawn for U was grown
// (allocated and zeroed, 9.4 MiB at 256×256) on most calls.
var (
	winogradUPool = sync.Pool{New: func() any { return new([]float32) }}
	winogradKPool = sync.Pool{New: func() any { return new([]float32) }}
)

// winogradKron returns G⊗G (nx×9, row ξ = tile·i+j, column 3a+b: G[i][a]·G[j][b]) for the
// weight transform U[ξ] = Σ G[i][a]·g[a][b]·G[j][b], in float64 then rounded.
func winogradKron(tile int) []float32 {
	g := [][3]float64{{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}}
	if tile == 4 {
		g = [][3]float64{{0.25, 0, 0}, {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
			{1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}}
	}
	n := len(g)
	kr := make([]float32, n*n*9)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			for a := 0; a < 3; a++ {
				for b := 0; b < 3; b++ {
					kr[(i*n+j)*9+3*a+b] = float32(g[i][a] * g[j][b])
				}
			}
		}
	}
	return kr
}

var winogradKrons = [5][]float32{2: winogradKron(2), 4: winogradKron(4)}

// winogradWeightsGemm writes U as winogradWeights (tile 2) or winograd43Weights (tile 4) do, as
// one product U = (G⊗G)·Wᵀ: the 3×3 kernels are first laid out as the columns of a 9×L matrix in
// U's packed order (L = winogradStripLen, zero columns for rows past Cout), so the product writes
// each U[ξ] straight into packA's layout. The float32 product rounds U a little differently from
// the float64 transforms (within winogradTol and winograd43Tol); it replaced per-call transforms
// that took 10.8 CPU-ms for a 256×256 F(4×4,3×3) layer.
func winogradWeightsGemm(u, weight []float32, cout, cin, tile int) {
	kr := winogradKrons[tile]
	nx := len(kr) / 9
	l := winogradStripLen(cout, cin)
	pw := winogradKPool.Get().(*[]float32)
	defer winogradKPool.Put(pw)
	wt := growTo(pw, 9*l)
	strips := (cout + gemmMR - 1) / gemmMR
	parallelRange(strips, gemmMR*cin*9, func(lo, hi int) {
		for st := lo; st < hi; st++ {
			for r := 0; r < gemmMR; r++ {
				co := st*gemmMR + r
				for ci := 0; ci < cin; ci++ {
					p := st*gemmMR*cin + ci*gemmMR + r
					if co >= cout {
						for k := 0; k < 9; k++ {
							wt[k*l+p] = 0
						}
						continue
					}
					g := weight[(co*cin+ci)*9:][:9]
					for k, x := range g {
						wt[k*l+p] = x
					}
				}
			}
		}
	})
	Gemm(nx, l, 9, kr, 9, wt, l, u, l, nil)
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
