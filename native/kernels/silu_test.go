package kernels

import "testing"

func TestSiLUMatchesNaive(t *testing.T) { bothInner(t, testSiLUMatchesNaive) }

func testSiLUMatchesNaive(t *testing.T) {
	inp := randomVec(3, 100003, -100, 100)
	copy(inp, []float32{-87, -88, -89, -200, 88, 89, 200, 0, 1e-30, -1e-30}) // clamped ends of exp
	want, got := make([]float32, len(inp)), make([]float32, len(inp))
	SiLUNaive(want, inp)
	SiLU(got, inp)
	reportClose(t, "silu", got, want, fastVsNaiveTol)
	SiLUNaive(want[:3], []float32{0, 1, -1})
	reportClose(t, "silu known values", want[:3], []float32{0, 0.7310586, -0.26894143}, 1e-7)
}
