package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// fastVsNaiveTol bounds the difference between a fast kernel and its float64 naive reference:
// a value passes when |fast−naive| ≤ fastVsNaiveTol·max(1, |naive|). Float32 accumulation over
// a few thousand terms stays well inside it.
const fastVsNaiveTol = 1e-5

// randomVec returns n values uniform in [lo, hi) from a fixed seed.
func randomVec(seed uint64, n int, lo, hi float32) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n)
	for i := range v {
		v[i] = lo + (hi-lo)*r.Float32()
	}
	return v
}

// reportClose fails t when got and want differ by more than tol·max(1,|want|) anywhere, printing
// max abs and rel error and the first mismatching indices.
func reportClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", what, len(got), len(want))
	}
	var maxAbs, maxRel float64
	var bad []string
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		maxAbs = max(maxAbs, d)
		if w := math.Abs(float64(want[i])); w > 0 {
			maxRel = max(maxRel, d/w)
		}
		if !(d <= tol*max(1, math.Abs(float64(want[i])))) && len(bad) < 5 {
			bad = append(bad, fmt.Sprintf("[%d] got %g want %g", i, got[i], want[i]))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%s: max abs %.3g, max rel %.3g (tol %g); first mismatches: %v", what, maxAbs, maxRel, tol, bad)
	} else {
		t.Logf("%s: max abs %.3g, max rel %.3g", what, maxAbs, maxRel)
	}
}

func TestConv2DMatchesNaive(t *testing.T) {
	shapes := []Conv2DShape{
		{B: 2, Cin: 3, H: 7, W: 5, Cout: 4, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1},
		{B: 1, Cin: 5, H: 9, W: 6, Cout: 3, KH: 3, KW: 3, Stride: 2, PadBottom: 1, PadRight: 1}, // diffusers Downsample2D
		{B: 2, Cin: 6, H: 5, W: 3, Cout: 7, KH: 1, KW: 1, Stride: 1},                            // pointwise, no unfolding
		{B: 1, Cin: 2, H: 11, W: 13, Cout: 3, KH: 3, KW: 2, Stride: 3, PadTop: 2, PadLeft: 1, PadRight: 3},
		{B: 1, Cin: 1, H: 4, W: 4, Cout: 1, KH: 5, KW: 5, Stride: 1, PadTop: 2, PadBottom: 2, PadLeft: 2, PadRight: 2},
		{B: 1, Cin: 3, H: 3, W: 2, Cout: 2, KH: 1, KW: 1, Stride: 2, PadTop: 1, PadRight: 1}, // padded 1×1
		// K·OutH·OutW exceeds convColBudget: exercises the banded path.
		{B: 1, Cin: 16, H: 91, W: 89, Cout: 5, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1},
	}
	for i, s := range shapes {
		t.Run(fmt.Sprintf("%d", i), func(t *testing.T) {
			inp := randomVec(uint64(10*i+1), s.B*s.Cin*s.H*s.W, -1, 1)
			w := randomVec(uint64(10*i+2), s.Cout*s.Cin*s.KH*s.KW, -0.5, 0.5)
			var bias []float32
			if i%2 == 0 {
				bias = randomVec(uint64(10*i+3), s.Cout, -1, 1)
			}
			n := s.B * s.Cout * s.OutH() * s.OutW()
			want, got := make([]float32, n), make([]float32, n)
			for j := range got {
				got[j] = float32(math.NaN()) // every output must be written
			}
			Conv2DNaive(want, inp, w, bias, s)
			Conv2D(got, inp, w, bias, s)
			reportClose(t, fmt.Sprintf("conv %+v", s), got, want, fastVsNaiveTol)
		})
	}
}

// TestConv2DNaiveKnownValues pins the reference itself on a hand-computed case: a 2×2 all-ones
// kernel with stride 2 after diffusers' (0,1,0,1) pad over a 3×3 input 1..9.
func TestConv2DNaiveKnownValues(t *testing.T) {
	s := Conv2DShape{B: 1, Cin: 1, H: 3, W: 3, Cout: 1, KH: 2, KW: 2, Stride: 2, PadBottom: 1, PadRight: 1}
	inp := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	out := make([]float32, 4)
	Conv2DNaive(out, inp, []float32{1, 1, 1, 1}, []float32{0.5}, s)
	want := []float32{1 + 2 + 4 + 5 + 0.5, 3 + 6 + 0.5, 7 + 8 + 0.5, 9 + 0.5}
	reportClose(t, "conv known values", out, want, 0)
}

func TestConv2DPanicsOnShapeMismatch(t *testing.T) {
	s := Conv2DShape{B: 1, Cin: 2, H: 3, W: 3, Cout: 1, KH: 3, KW: 3, Stride: 1}
	defer func() {
		if recover() == nil {
			t.Fatal("Conv2D with a short weight did not panic")
		}
	}()
	Conv2D(make([]float32, 1), make([]float32, 18), make([]float32, 17), nil, s)
}

// winogradTol bounds Winograd F(2×2,3×3) against the float64 direct convolution, relative as in
// reportClose. Its transforms add and halve up to 16 terms before and after the products, so it
// rounds a few times more than the direct sum: max abs 3.6e-7 (Cin 3) to 2.2e-5 (Cin 256, outputs
// up to ~15) on these shapes with inputs in [−1,1] and weights in [−0.5,0.5].
const winogradTol = 5e-5

// TestConv2DWinogradMatchesNaive runs conv3x3Winograd (directly, whatever the channel counts,
// and through Conv2D where it dispatches to it) on odd sizes, every padding the VAE uses, a band
// split (tiles beyond winogradBudget) and batch 2.
func TestConv2DWinogradMatchesNaive(t *testing.T) {
	if !haveAVX2 {
		t.Skip("the Winograd path runs its products on the AVX2 GEMM; this CPU or build has none")
	}
	pad := func(s Conv2DShape, tp, b, l, r int) Conv2DShape {
		s.PadTop, s.PadBottom, s.PadLeft, s.PadRight = tp, b, l, r
		return s
	}
	base := Conv2DShape{B: 1, KH: 3, KW: 3, Stride: 1}
	shapes := []Conv2DShape{
		pad(Conv2DShape{B: 2, Cin: 3, H: 7, W: 5, Cout: 4, KH: 3, KW: 3, Stride: 1}, 1, 1, 1, 1),
		pad(Conv2DShape{B: 1, Cin: 16, H: 9, W: 6, Cout: 17, KH: 3, KW: 3, Stride: 1}, 1, 1, 1, 1),
		pad(Conv2DShape{B: 1, Cin: 20, H: 8, W: 11, Cout: 16, KH: 3, KW: 3, Stride: 1}, 0, 0, 0, 0),
		pad(Conv2DShape{B: 1, Cin: 17, H: 5, W: 4, Cout: 18, KH: 3, KW: 3, Stride: 1}, 2, 0, 0, 1),
		pad(Conv2DShape{B: 1, Cin: 64, H: 33, W: 31, Cout: 32, KH: 3, KW: 3, Stride: 1}, 1, 1, 1, 1),
	}
	// Whole groups of 16 tiles per row (the AVX-512 transforms), an odd last output row.
	shapes = append(shapes, pad(Conv2DShape{B: 2, Cin: 32, H: 61, W: 64, Cout: 24, KH: 3, KW: 3, Stride: 1}, 1, 1, 1, 1))
	// Patches read in place inside the image and copied at its borders; unpadded.
	shapes = append(shapes, pad(Conv2DShape{B: 1, Cin: 16, H: 21, W: 96, Cout: 16, KH: 3, KW: 3, Stride: 1}, 1, 1, 1, 1),
		pad(Conv2DShape{B: 1, Cin: 16, H: 66, W: 66, Cout: 20, KH: 3, KW: 3, Stride: 1}, 0, 0, 0, 0))
	// Many bands (winogradBandBudget), Cout not a multiple of the 6-row strips.
	big := base
	big.Cin, big.Cout, big.H, big.W = 256, 16, 70, 66
	shapes = append(shapes, pad(big, 1, 1, 1, 1))
	// F(4×4,3×3) (OutW a multiple of 64, ≤ 128 channels): two groups of 16 tiles per row, a
	// last tile row of 1–3 outputs, asymmetric padding, batch 2, several bands.
	shapes = append(shapes, pad(Conv2DShape{B: 2, Cin: 128, H: 22, W: 128, Cout: 128, KH: 3, KW: 3, Stride: 1}, 1, 1, 1, 1),
		pad(Conv2DShape{B: 1, Cin: 64, H: 67, W: 129, Cout: 70, KH: 3, KW: 3, Stride: 1}, 0, 1, 0, 1),
		pad(Conv2DShape{B: 1, Cin: 16, H: 40, W: 64, Cout: 16, KH: 3, KW: 3, Stride: 1}, 2, 0, 1, 1))
	// F(4×4,3×3) past winograd43WholeCout: output channels in blocks of winograd43CoutBlock, the
	// last block not a whole number of 6-row strips.
	shapes = append(shapes, pad(Conv2DShape{B: 1, Cin: 256, H: 9, W: 64, Cout: 200, KH: 3, KW: 3, Stride: 1}, 1, 1, 1, 1))
	// F(4×4,3×3) on pairs of 8-tile rows (OutW 32), one band split over output channels
	// (winograd43Split): the VAE's 256 channels at 32², batch 2 with a last pair past OutH,
	// asymmetric padding with an odd OutH.
	shapes = append(shapes, pad(Conv2DShape{B: 1, Cin: 256, H: 32, W: 32, Cout: 256, KH: 3, KW: 3, Stride: 1}, 1, 1, 1, 1),
		pad(Conv2DShape{B: 2, Cin: 40, H: 30, W: 32, Cout: 50, KH: 3, KW: 3, Stride: 1}, 1, 1, 1, 1),
		pad(Conv2DShape{B: 1, Cin: 24, H: 29, W: 32, Cout: 16, KH: 3, KW: 3, Stride: 1}, 2, 0, 0, 2))
	for i, s := range shapes {
		inp, w, bias, want := convCase(uint64(70*i), s, i%2 == 1)
		for _, f43 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/f43=%v", i, f43), func(t *testing.T) {
				defer func(old bool) { winograd43 = old }(winograd43)
				winograd43 = f43
				tol := winogradTol
				if useWinograd43(s) {
					tol = winograd43Tol
				} else if f43 {
					t.Skip("F(4×4,3×3) does not take this shape (or CPU)")
				}
				got := nanVec(len(want))
				conv3x3Winograd(got, inp, w, bias, s)
				reportClose(t, fmt.Sprintf("winograd %+v", s), got, want, tol)
				if useWinograd(s) {
					got = nanVec(len(want))
					Conv2D(got, inp, w, bias, s)
					reportClose(t, fmt.Sprintf("Conv2D(winograd) %+v", s), got, want, tol)
				}
			})
		}
	}
}

// winograd43Tol bounds Winograd F(4×4,3×3) against the float64 direct convolution, relative as
// in reportClose. Its transforms multiply by up to 5 (input) and 8 (output) and its weight
// transform by 1/6 and 1/24, so it rounds about 20× more than F(2×2,3×3): measured max abs
// 6.5e-5 (Cin 32), 1.4e-4 (Cin 64, outputs up to ~8), 4.4e-4 at Cin 256 (outputs up to ~30;
// F(2×2,3×3): 6e-6, 2.7e-5), inputs in [−1,1] and weights in [−0.5,0.5].
const winograd43Tol = 1e-3

// TestConv2DBandedMatchesNaive holds convBanded (the implicit GEMM behind Conv2D's stride-2,
// few-channel and odd-kernel convolutions) and the im2col path it replaced to Conv2DNaive on
// the VAE's shapes at reduced size: the (0,1,0,1) stride-2 downsampling at 16–128 channels,
// conv_in (3 channels in), conv_out (3 out), several bands, rows that are and are not whole
// 16-column panels, batch 2.
func TestConv2DBandedMatchesNaive(t *testing.T) {
	if !haveAVX2 {
		t.Skip("convBanded runs its products on the AVX2 GEMM; this CPU or build has none")
	}
	same := func(b, cin, h, w, cout int) Conv2DShape {
		return Conv2DShape{B: b, Cin: cin, H: h, W: w, Cout: cout, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1}
	}
	down := func(b, c, h, w int) Conv2DShape {
		return Conv2DShape{B: b, Cin: c, H: h, W: w, Cout: c, KH: 3, KW: 3, Stride: 2, PadBottom: 1, PadRight: 1}
	}
	shapes := []Conv2DShape{
		down(1, 64, 64, 64), down(2, 16, 33, 30), down(1, 128, 32, 32), down(1, 24, 70, 96),
		same(1, 3, 64, 64, 64), same(2, 3, 17, 21, 16), same(1, 64, 48, 64, 3), same(1, 256, 16, 16, 8),
		{B: 1, Cin: 7, H: 40, W: 37, Cout: 13, KH: 5, KW: 4, Stride: 3, PadTop: 2, PadBottom: 1, PadLeft: 3},
	}
	for i, s := range shapes {
		inp, w, bias, want := convCase(uint64(90*i), s, i%3 == 1)
		n := len(want)
		for _, implicit := range []bool{true, false} {
			t.Run(fmt.Sprintf("%d/implicit=%v", i, implicit), func(t *testing.T) {
				defer func(old, direct bool) { convImplicit, convDirectOn = old, direct }(convImplicit, convDirectOn)
				convImplicit, convDirectOn = implicit, false
				got := nanVec(n)
				if implicit {
					convBanded(got, inp, w, bias, s)
				} else {
					Conv2D(got, inp, w, bias, s)
				}
				reportClose(t, fmt.Sprintf("conv %+v", s), got, want, convBandedTol)
			})
		}
	}
}

// TestConv2DDirectMatchesNaive holds convDirect (and Conv2D where it dispatches to it) to
// Conv2DNaive: stride-2 downsampling with an odd input height, depth past convDirectKC (several
// depth blocks), Cout not a multiple of the 6-row strips (1–5 row kernels), conv_in and
// conv_out shapes, runs of 16 outputs spanning two output rows, batch 2, a 5×4 stride-3 kernel.
func TestConv2DDirectMatchesNaive(t *testing.T) {
	if !useAVX512 {
		t.Skip("the direct convolution's micro-kernels need AVX-512; this CPU or build has none")
	}
	same := func(b, cin, h, w, cout int) Conv2DShape {
		return Conv2DShape{B: b, Cin: cin, H: h, W: w, Cout: cout, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1}
	}
	down := func(b, c, h, w, cout int) Conv2DShape {
		return Conv2DShape{B: b, Cin: c, H: h, W: w, Cout: cout, KH: 3, KW: 3, Stride: 2, PadBottom: 1, PadRight: 1}
	}
	shapes := []Conv2DShape{
		down(1, 64, 64, 64, 64), down(2, 20, 33, 64, 13), down(1, 256, 32, 32, 256), down(1, 128, 64, 32, 130),
		same(1, 3, 64, 64, 64), same(2, 3, 16, 32, 16), same(1, 64, 48, 64, 3), same(1, 256, 16, 16, 8), same(1, 9, 8, 16, 1),
		{B: 1, Cin: 7, H: 49, W: 94, Cout: 11, KH: 5, KW: 4, Stride: 3, PadTop: 2, PadBottom: 1, PadLeft: 3},
	}
	for i, s := range shapes {
		t.Run(fmt.Sprintf("%d", i), func(t *testing.T) {
			if !useConvDirect(s) {
				t.Fatalf("useConvDirect(%+v) is false; the test wants every shape on the direct path", s)
			}
			inp, w, bias, want := convCase(uint64(110*i), s, i%3 == 1)
			got := nanVec(len(want))
			convDirect(got, inp, w, nil, bias, s)
			reportClose(t, fmt.Sprintf("direct %+v", s), got, want, convDirectTol)
			got = nanVec(len(want))
			Conv2D(got, inp, w, bias, s)
			reportClose(t, fmt.Sprintf("Conv2D(direct) %+v", s), got, want, convDirectTol)
		})
	}
}

// convDirectTol bounds the direct convolution against the float64 one, relative as in
// reportClose: one float32 FMA chain over K = Cin·KH·KW terms per output, as convBanded's.
const convDirectTol = 1e-4

// convBandedTol bounds the implicit GEMM against the float64 direct convolution, relative as in
// reportClose: one float32 FMA chain over K = Cin·KH·KW terms per output. Measured max abs
// 3.8e-5 at K = 2304 (Cin 256, Σ|terms| ≈ 290, so ≈ 1.3e-7 of it); the im2col path's 1.2e-5
// there came from its split-K product (Cout 8 < 16 rows), whose eight partial sums round less.
const convBandedTol = 1e-4

// convCase draws an input in [−1,1), weights in [−0.5,0.5) and (unless noBias) a bias in
// [−1,1) for s from seeds seed+1..3, and returns them with Conv2DNaive's output.
func convCase(seed uint64, s Conv2DShape, noBias bool) (inp, w, bias, want []float32) {
	inp = randomVec(seed+1, s.B*s.Cin*s.H*s.W, -1, 1)
	w = randomVec(seed+2, s.Cout*s.Cin*s.KH*s.KW, -0.5, 0.5)
	if !noBias {
		bias = randomVec(seed+3, s.Cout, -1, 1)
	}
	want = make([]float32, s.B*s.Cout*s.OutH()*s.OutW())
	Conv2DNaive(want, inp, w, bias, s)
	return inp, w, bias, want
}

// TestConv2DWeightsMatchesConv2D holds Conv2DWeights (transforms kept across calls) to Conv2D
// bit for bit on each fast path — F(2×2,3×3), F(4×4,3×3) whole and blocked over Cout, the
// implicit GEMM, a pointwise conv — on its first call and on a second one that reuses them, and
// with RecomputeWinograd (transforms recomputed per call).
func TestConv2DWeightsMatchesConv2D(t *testing.T) {
	same := func(cin, h, w, cout int) Conv2DShape {
		return Conv2DShape{B: 1, Cin: cin, H: h, W: w, Cout: cout, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1}
	}
	shapes := []Conv2DShape{
		same(32, 10, 20, 24), same(64, 9, 64, 70), same(256, 5, 64, 136), same(3, 12, 16, 16),
		{B: 2, Cin: 24, H: 17, W: 30, Cout: 24, KH: 3, KW: 3, Stride: 2, PadBottom: 1, PadRight: 1},
		{B: 1, Cin: 8, H: 5, W: 7, Cout: 9, KH: 1, KW: 1, Stride: 1},
	}
	for i, s := range shapes {
		t.Run(fmt.Sprintf("%d", i), func(t *testing.T) {
			inp, w, bias, _ := convCase(uint64(30*i), s, i%2 == 1)
			want := nanVec(s.B * s.Cout * s.OutH() * s.OutW())
			Conv2D(want, inp, w, bias, s)
			for _, recompute := range []bool{false, true} {
				cw := NewConvWeights(w, s.Cout, s.Cin, s.KH, s.KW)
				if recompute {
					cw.RecomputeWinograd()
				}
				for call := 0; call < 2; call++ {
					got := nanVec(len(want))
					Conv2DWeights(got, inp, cw, bias, s)
					for j := range want {
						if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
							t.Fatalf("shape %+v, recompute %v, call %d: [%d] = %g, Conv2D gives %g", s, recompute, call, j, got[j], want[j])
						}
					}
				}
				if recompute && (cw.u22.v != nil || cw.u43.v != nil) {
					t.Fatalf("shape %+v: RecomputeWinograd kept a transform", s)
				}
			}
		})
	}
}

// winogradWeightsTol bounds winogradWeightsGemm (U as one float32 product) against the float64
// transforms winogradWeights and winograd43Weights, relative to max(1, |U|): a float32 sum of
// nine products whose constants (1/6, 1/24, …) are themselves rounded.
const winogradWeightsTol = 1e-6

// TestWinogradWeightsGemmMatchesNaive holds winogradWeightsGemm to the float64 weight
// transforms (which stay as its reference) for both tiles, Cout not a multiple of the 6-row
// strips (zero rows past Cout).
func TestWinogradWeightsGemmMatchesNaive(t *testing.T) {
	for _, sz := range [][2]int{{16, 16}, {70, 33}, {256, 64}} {
		cout, cin := sz[0], sz[1]
		w := randomVec(uint64(cout+cin), cout*cin*9, -0.5, 0.5)
		for _, tile := range []int{2, 4} {
			nx := map[int]int{2: 16, 4: 36}[tile]
			n := nx * winogradStripLen(cout, cin)
			want, got := nanVec(n), nanVec(n)
			if tile == 4 {
				winograd43Weights(want, w, cout, cin)
			} else {
				winogradWeights(want, w, cout, cin)
			}
			winogradWeightsGemm(got, w, cout, cin, tile)
			reportClose(t, fmt.Sprintf("U tile %d, %d×%d", tile, cout, cin), got, want, winogradWeightsTol)
		}
	}
}
