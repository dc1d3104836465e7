package kernels

import (
	"fmt"
	"math"
	"testing"
)

func TestGroupNormMatchesNaive(t *testing.T) { bothInner(t, testGroupNormMatchesNaive) }

func testGroupNormMatchesNaive(t *testing.T) {
	cases := []struct{ b, c, hw, g int }{{2, 6, 35, 3}, {1, 5, 7, 5}, {3, 4, 1, 1}, {1, 32, 129, 8}}
	for i, tc := range cases {
		t.Run(fmt.Sprintf("B%d_C%d_HW%d_G%d", tc.b, tc.c, tc.hw, tc.g), func(t *testing.T) {
			n := tc.b * tc.c * tc.hw
			// An offset of 50 with a spread of 0.01 makes one-pass statistics cancel; eps 1e-6
			// is then a visible part of the variance.
			inp := randomVec(uint64(i+1), n, 49.99, 50.01)
			gamma := randomVec(uint64(i+2), tc.c, 0.5, 1.5)
			beta := randomVec(uint64(i+3), tc.c, -0.5, 0.5)
			want, got := make([]float32, n), make([]float32, n)
			GroupNormNaive(want, inp, gamma, beta, tc.b, tc.c, tc.hw, tc.g, 1e-6)
			GroupNorm(got, inp, gamma, beta, tc.b, tc.c, tc.hw, tc.g, 1e-6)
			reportClose(t, "group norm", got, want, fastVsNaiveTol)

			inp = randomVec(uint64(i+4), n, -3, 3)
			GroupNormNaive(want, inp, gamma, beta, tc.b, tc.c, tc.hw, tc.g, 1e-6)
			SiLUNaive(want, want)
			copy(got, inp)
			GroupNormSiLU(got, got, gamma, beta, tc.b, tc.c, tc.hw, tc.g, 1e-6) // in place
			reportClose(t, "group norm + silu", got, want, fastVsNaiveTol)
		})
	}
}

// TestGroupNormEpsMatters guards the fixture design: with a group variance of 1e-5, eps 1e-6 and
// 1e-5 must give visibly different outputs.
func TestGroupNormEpsMatters(t *testing.T) {
	inp := randomVec(7, 64, -0.005, 0.005)
	g := make([]float32, 4)
	for i := range g {
		g[i] = 1
	}
	a, b := make([]float32, 64), make([]float32, 64)
	GroupNorm(a, inp, g, make([]float32, 4), 1, 4, 16, 2, 1e-6)
	GroupNorm(b, inp, g, make([]float32, 4), 1, 4, 16, 2, 1e-5)
	var d float32
	for i := range a {
		d = max(d, a[i]-b[i], b[i]-a[i])
	}
	if d < 1e-2 {
		t.Fatalf("eps 1e-6 vs 1e-5 moved the output by only %g", d)
	}
}

// BenchmarkGroupNormSiLU is the VAE's GroupNorm(32)+SiLU over 64 channels of 256×256.
func BenchmarkGroupNormSiLU(b *testing.B) {
	const c, hw = 64, 256 * 256
	inp := randomVec(1, c*hw, -3, 3)
	gamma, beta := randomVec(2, c, 0.5, 1.5), randomVec(3, c, -0.5, 0.5)
	out := make([]float32, c*hw)
	c0 := processCPU(b)
	for b.Loop() {
		GroupNormSiLU(out, inp, gamma, beta, 1, c, hw, 32, 1e-6)
	}
	b.ReportMetric(float64(processCPU(b)-c0)/1e6/float64(b.N), "cpu-ms/op")
}

// TestGroupNormSiLUFusedBits holds the fused AVX-512 affine+SiLU (groupNormAffineSiLUAVX512)
// to the AVX2 kernels it replaces, bit for bit, on rows that are and are not whole groups of 16.
func TestGroupNormSiLUFusedBits(t *testing.T) {
	if !haveAVX512 {
		t.Skip("no AVX-512 on this CPU or build")
	}
	defer func(z bool) { useAVX512 = z }(useAVX512)
	for i, hw := range []int{16, 129, 1032, 4096} {
		const b, c, g = 1, 8, 4
		inp := randomVec(uint64(i+20), b*c*hw, -6, 6)
		gamma, beta := randomVec(uint64(i+21), c, 0.5, 1.5), randomVec(uint64(i+22), c, -0.5, 0.5)
		want, got := make([]float32, len(inp)), make([]float32, len(inp))
		useAVX512 = false
		GroupNormSiLU(want, inp, gamma, beta, b, c, hw, g, 1e-6)
		useAVX512 = true
		GroupNormSiLU(got, inp, gamma, beta, b, c, hw, g, 1e-6)
		for j := range want {
			if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
				t.Fatalf("hw %d: [%d] = %g, the AVX2 kernels give %g", hw, j, got[j], want[j])
			}
		}
	}
}
