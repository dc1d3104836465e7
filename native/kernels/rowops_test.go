package kernels

import (
	"fmt"
	"math"
	"testing"
)

func TestRowOpsMatchNaive(t *testing.T) { bothInner(t, testRowOpsMatchNaive) }

func testRowOpsMatchNaive(t *testing.T) {
	for _, c := range []int{1, 3, 17, 65, 127, 768} {
		for _, rows := range []int{1, 3, 65} {
			x := randomVec(uint64(c*rows), rows*c, -4, 4)
			for i := range x {
				x[i] += 50 // a large mean: float32 statistics would lose digits
			}
			gamma, beta := randomVec(1, c, 0.5, 1.5), randomVec(2, c, -1, 1)
			want, got := make([]float32, len(x)), nanVec(len(x))
			LayerNormNaive(want, x, gamma, beta, c, 1e-5)
			LayerNorm(got, x, gamma, beta, c, 1e-5)
			reportClose(t, fmt.Sprintf("LayerNorm rows=%d c=%d", rows, c), got, want, fastVsNaiveTol)

			xs := randomVec(uint64(c+rows), rows*c, -20, 20)
			SoftmaxNaive(want, xs, c)
			got = nanVec(len(x))
			Softmax(got, xs, c)
			reportClose(t, fmt.Sprintf("Softmax rows=%d c=%d", rows, c), got, want, fastVsNaiveTol)
		}
	}
	for _, n := range []int{1, 3, 255, 256, 257, 100000} {
		x := randomVec(uint64(n), n, -8, 8)
		x[0] = 30 // saturated ends of tanh
		if n > 1 {
			x[1] = -30
		}
		if n > 10 {
			copy(x[2:], []float32{50, -50, 1e-20, -1e-20, 0, 8.5, -8.5}) // clamped exp, tiny, zero
		}
		want, got := make([]float32, n), nanVec(n)
		GeluNewNaive(want, x)
		GeluNew(got, x)
		reportClose(t, fmt.Sprintf("GeluNew n=%d", n), got, want, fastVsNaiveTol)
	}
}

// TestGeluNewIsTanhVariant pins the formula with values computed independently (PyTorch 1.13,
// torch.nn.functional.gelu(x, approximate="tanh")), so the exact-erf GELU cannot pass for it.
func TestGeluNewIsTanhVariant(t *testing.T) { bothInner(t, testGeluNewIsTanhVariant) }

func testGeluNewIsTanhVariant(t *testing.T) {
	const tol = 1e-6
	// Eight and more values, so that the AVX2 path sees a whole group.
	xs := []float32{-3, -1, -0.5, 0, 0.5, 1, 2, 3, -3, -1, -0.5, 0, 0.5, 1, 2, 3, 1}
	want := []float32{-0.0036374, -0.1588080, -0.1542860, 0, 0.3457140, 0.8411920, 1.9545977, 2.9963627,
		-0.0036374, -0.1588080, -0.1542860, 0, 0.3457140, 0.8411920, 1.9545977, 2.9963627, 0.8411920}
	got := make([]float32, len(xs))
	GeluNew(got, xs)
	for i := range xs {
		if math.Abs(float64(got[i]-want[i])) > tol {
			t.Errorf("GeluNew(%v) = %.7f, want %.7f", xs[i], got[i], want[i])
		}
	}
}

func TestLayerNormKnownValues(t *testing.T) {
	x := []float32{1, 2, 3, 4}
	got := make([]float32, 4)
	LayerNorm(got, x, []float32{1, 1, 1, 2}, []float32{0, 0, 0, 1}, 4, 0)
	// mean 2.5, var 1.25
	s := float32(math.Sqrt(1.25))
	want := []float32{-1.5 / s, -0.5 / s, 0.5 / s, 2*1.5/s + 1}
	reportClose(t, "LayerNorm known", got, want, 1e-6)
}

// TestReadBandwidth checks that the probe returns a plausible figure: above 100 MB/s (any
// machine that runs the tests streams faster) and below 10 TB/s.
func TestReadBandwidth(t *testing.T) {
	bw := ReadBandwidth(64<<20, 2)
	if bw < 100e6 || bw > 10e12 {
		t.Fatalf("ReadBandwidth = %.3g B/s, outside [1e8, 1e13]", bw)
	}
	t.Logf("streaming read: %.1f GB/s over 64 MiB", bw/1e9)
}

// TestGeluAVX512SameBitsAsAVX2: geluAVX512 runs geluAVX2's operations on sixteen lanes, so
// GeluNew gives the same bits with AVX-512 on and off — over ±12 (both ends of tanh) and beyond
// exp's clamps, on a length with a 16-lane body, an 8-lane group and a scalar tail.
func TestGeluAVX512SameBitsAsAVX2(t *testing.T) {
	if !haveAVX512 {
		t.Skip("this CPU or build has no AVX-512F kernels (non-amd64, purego tag, or missing CPU features)")
	}
	defer func(z bool) { useAVX512 = z }(useAVX512)
	x := randomVec(9, 4096+8+5, -12, 12)
	x[0], x[1], x[2], x[3] = 200, -200, 0, float32(math.Copysign(0, -1))
	on, off := nanVec(len(x)), nanVec(len(x))
	useAVX512 = true
	GeluNew(on, x)
	useAVX512 = false
	GeluNew(off, x)
	for i := range on {
		if math.Float32bits(on[i]) != math.Float32bits(off[i]) {
			t.Fatalf("GeluNew(%v): %v with AVX-512, %v without (index %d)", x[i], on[i], off[i], i)
		}
	}
}

// TestLayerNormAffineAVX512Bits: layerNormAffineAVX512 rounds as layerNormRow's Go loop does, so
// LayerNorm gives the same bits with and without it.
func TestLayerNormAffineAVX512Bits(t *testing.T) {
	if !haveAVX512 {
		t.Skip("no AVX-512F kernels on this CPU or build")
	}
	defer func(s, z bool) { useSIMD, useAVX512 = s, z }(useSIMD, useAVX512)
	useSIMD = true
	for _, c := range []int{8, 17, 768} {
		x := randomVec(uint64(c), 3*c, -4, 4)
		for i := range x {
			x[i] += 50
		}
		gamma, beta := randomVec(1, c, 0.5, 1.5), randomVec(2, c, -1, 1)
		want, got := nanVec(len(x)), nanVec(len(x))
		useAVX512 = false
		LayerNorm(want, x, gamma, beta, c, 1e-5)
		useAVX512 = true
		LayerNorm(got, x, gamma, beta, c, 1e-5)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("c=%d: LayerNorm with layerNormAffineAVX512 differs from the Go loop at %d (row %d, column %d): %g vs %g", c, i, i/c, i%c, got[i], want[i])
			}
		}
	}
}

// TestAddLayerNorm: AddLayerNorm gives the bits of the residual add followed by LayerNorm, on
// rows enough for the worker pool and on a single row.
func TestAddLayerNorm(t *testing.T) {
	for _, rows := range []int{1, 64} {
		const c = 768
		x, y := randomVec(5, rows*c, -4, 4), randomVec(6, rows*c, -1, 1)
		gamma, beta := randomVec(1, c, 0.5, 1.5), randomVec(2, c, -1, 1)
		wantX := append([]float32(nil), x...)
		for i := range wantX {
			wantX[i] += y[i]
		}
		want, got := nanVec(len(x)), nanVec(len(x))
		LayerNorm(want, wantX, gamma, beta, c, 1e-5)
		AddLayerNorm(got, x, y, gamma, beta, c, 1e-5)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) || math.Float32bits(x[i]) != math.Float32bits(wantX[i]) {
				t.Fatalf("rows=%d: AddLayerNorm differs from add then LayerNorm at %d (row %d, column %d): x %g vs %g, dst %g vs %g", rows, i, i/c, i%c, x[i], wantX[i], got[i], want[i])
			}
		}
	}
}
