package kernels

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// TestGemmQ8MatchesNaive: MatMulPanelsI8 with gemmMB rows or more on the VNNI path (gemmQ8, the
// prefill kernel) equals the reference bit for bit, with and without bias, and each of its rows
// equals the same row alone (one row: the decode kernel gemvPanelQ8).
func TestGemmQ8MatchesNaive(t *testing.T) {
	requireVNNI(t)
	for _, k := range q8Sizes {
		for _, n := range []int{1, 16, 37} {
			for _, m := range []int{gemmMB, 23, 64} {
				seed := uint64(9000 + 100*k + 10*n + m)
				a := q8Activations(seed, m, k)
				q, s := quant.Int8Cols(randomVec(seed+1, k*n, -1, 1), k, n)
				qp := PackPanels(q, k, n)
				for _, bias := range [][]float32{nil, randomVec(seed+2, n, -1, 1)} {
					what := fmt.Sprintf("k=%d n=%d m=%d bias=%v", k, n, m, bias != nil)
					got, want := nanVec(m*n), make([]float32, m*n)
					MatMulPanelsI8(got, a, qp, s, bias, m, k, n)
					matMulPanelsQ8Ref(want, a, qp, s, bias, m, k, n)
					sameBits(t, what+" vs reference", got, want, n)
					alone := nanVec(m * n)
					for i := 0; i < m; i++ {
						MatMulPanelsI8(alone[i*n:(i+1)*n], a[i*k:(i+1)*k], qp, s, bias, 1, k, n)
					}
					sameBits(t, what+" vs rows alone", got, alone, n)
				}
			}
		}
	}
}

// TestGemmQ8Stores: gemmQ8 writes exactly rows × nb values at the row stride ldc and nothing
// else, for every row count and partial panel.
func TestGemmQ8Stores(t *testing.T) {
	requireVNNI(t)
	const k, ldc = 40, 37
	w := randomInt8(5, k*PanelWidth)
	lq := q8RowBytes(k)
	qa := make([]byte, q8GemmRows*lq)
	quantizeQ8(qa, lq, q8Activations(6, q8GemmRows, k), k, q8GemmRows, k)
	scale, bias := randomVec(7, PanelWidth, 0.5, 1), randomVec(8, PanelWidth, -1, 1)
	for rows := 1; rows <= q8GemmRows; rows++ {
		for _, nb := range []int{1, 5, PanelWidth} {
			c := nanVec(q8GemmRows * ldc)
			gemmQ8(c, ldc, qa, lq, w, k, rows, scale[:nb], bias[:nb], nb)
			for i := range c {
				written := i/ldc < rows && i%ldc < nb
				if written == math.IsNaN(float64(c[i])) {
					t.Fatalf("rows=%d nb=%d: c[%d] (row %d column %d) = %v; written %v", rows, nb, i, i/ldc, i%ldc, c[i], written)
				}
			}
		}
	}
}

func TestGemmQ8DoesNotAllocate(t *testing.T) {
	requireVNNI(t)
	const m, k, n = 64, 768, 2304
	a, dst := randomVec(1, m*k, -1, 1), make([]float32, m*n)
	q, s := quant.Int8Cols(randomVec(2, k*n, -1, 1), k, n)
	qp, bias := PackPanels(q, k, n), randomVec(3, n, -1, 1)
	MatMulPanelsI8(dst, a, qp, s, bias, m, k, n) // grows the quantized-activation scratch
	if allocs := testing.AllocsPerRun(5, func() { MatMulPanelsI8(dst, a, qp, s, bias, m, k, n) }); allocs != 0 {
		t.Errorf("MatMulPanelsI8 rows=%d on the VNNI path: %v allocations, want 0", m, allocs)
	}
}

// sameBits fails t at the first value of got whose bits differ from want's (rows of n values).
func sameBits(t *testing.T, what string, got, want []float32, n int) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: [%d] (row %d column %d) = %v, want %v", what, i, i/n, i%n, got[i], want[i])
		}
	}
}

// BenchmarkPrefillLayersQ8 is one GPT-2 124M layer's four int8 products (qkv, attention
// projection, MLP up and down) for a 64-token prefill, each iteration once with useVNNI off (the
// weights dequantized into the float GEMM's panels: old) and once on (gemmQ8: vnni), alternated
// so both see the same load; it reports each one's integer-equivalent GMAC/s and their ratio.
func BenchmarkPrefillLayersQ8(b *testing.B) {
	if !haveVNNI {
		b.Skip("no AVX512-VNNI/VBMI kernels on this CPU or build")
	}
	const m = 64
	shapes := [][2]int{{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}}
	type layer struct {
		k, n        int
		qp          []int8
		scale, bias []float32
	}
	var layers []layer
	macs := 0
	for i, s := range shapes {
		q, sc := quant.Int8Cols(randomVec(uint64(i), s[0]*s[1], -1, 1), s[0], s[1])
		layers = append(layers, layer{k: s[0], n: s[1], qp: PackPanels(q, s[0], s[1]), scale: sc, bias: randomVec(uint64(i+10), s[1], -1, 1)})
		macs += m * s[0] * s[1]
	}
	x, dst := randomVec(1, m*3072, -1, 1), make([]float32, m*3072)
	defer func(v bool) { useVNNI = v }(useVNNI)
	var t [2]time.Duration
	for range b.N {
		for v := range t {
			useVNNI = v == 1
			t0 := time.Now()
			for _, l := range layers {
				MatMulPanelsI8(dst[:m*l.n], x[:m*l.k], l.qp, l.scale, l.bias, m, l.k, l.n)
			}
			t[v] += time.Since(t0)
		}
	}
	gmacs := func(d time.Duration) float64 { return float64(macs) * float64(b.N) / d.Seconds() / 1e9 }
	b.ReportMetric(gmacs(t[0]), "old-GMAC/s")
	b.ReportMetric(gmacs(t[1]), "vnni-GMAC/s")
	b.ReportMetric(t[0].Seconds()/t[1].Seconds(), "old/vnni")
}

// BenchmarkGemmQ8InCache measures the prefill kernel alone on one goroutine: 64 quantized rows
// through the 48 panels of a 768×768 int8 weight (576 KiB, in L2), in groups of 2, 4 and
// q8GemmRows rows, with scale and bias; it reports the integer-equivalent GMAC/s of the fastest pass (on a shared
// machine the fastest is the one least disturbed).
func BenchmarkGemmQ8InCache(b *testing.B) {
	if !haveVNNI {
		b.Skip("no AVX512-VNNI/VBMI kernels on this CPU or build")
	}
	const m, k, n = 64, 768, 768
	q, s := quant.Int8Cols(randomVec(1, k*n, -1, 1), k, n)
	qp, bias := PackPanels(q, k, n), randomVec(2, n, -1, 1)
	lq := q8RowBytes(k)
	qa := make([]byte, m*lq)
	quantizeQ8(qa, lq, randomVec(3, m*k, -1, 1), k, m, k)
	c := make([]float32, m*n)
	for _, rows := range []int{2, 4, q8GemmRows} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			best := time.Hour
			for range b.N {
				t0 := time.Now()
				for jp := 0; jp < n/PanelWidth; jp++ {
					w := qp[jp*k*PanelWidth:][:k*PanelWidth]
					for i := 0; i < m; i += rows {
						gemmQ8(c[i*n+jp*PanelWidth:], n, qa[i*lq:], lq, w, k, rows, s[jp*PanelWidth:], bias[jp*PanelWidth:], PanelWidth)
					}
				}
				best = min(best, time.Since(t0))
			}
			b.ReportMetric(float64(m*k*n)/best.Seconds()/1e9, "best-GMAC/s")
		})
	}
}

// BenchmarkLMHeadPrefillQ8 is an int8 LM head (4096 rows of 768, the demo model's vocabulary)
// over 64 rows, all logits of a prefill: per iteration one pass with useVNNI off (the
// float-widening dot kernels: old) and one on (dotQ8 in groups of 4 rows: vnni), each timed, the
// fastest pass of each reported as integer-equivalent GMAC/s.
func BenchmarkLMHeadPrefillQ8(b *testing.B) {
	if !haveVNNI {
		b.Skip("no AVX512-VNNI/VBMI kernels on this CPU or build")
	}
	const m, k, n = 64, 768, 4096
	q, s := quant.Int8Rows(randomVec(2, n*k, -1, 1), n, k)
	x, dst := randomVec(1, m*k, -1, 1), make([]float32, m*n)
	defer func(v bool) { useVNNI = v }(useVNNI)
	best := [2]time.Duration{time.Hour, time.Hour}
	for range b.N {
		for v := range best {
			useVNNI = v == 1
			t0 := time.Now()
			MatMulTI8(dst, x, q, s, nil, m, k, n)
			best[v] = min(best[v], time.Since(t0))
		}
	}
	gmacs := func(d time.Duration) float64 { return float64(m*k*n) / d.Seconds() / 1e9 }
	b.ReportMetric(gmacs(best[0]), "old-GMAC/s")
	b.ReportMetric(gmacs(best[1]), "vnni-GMAC/s")
	b.ReportMetric(best[0].Seconds()/best[1].Seconds(), "old/vnni")
}
