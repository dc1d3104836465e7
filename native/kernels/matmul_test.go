package kernels

import (
	"fmt"
	"math"
	"testing"

	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// accumTol is the tolerance of a float32 product with reduction length k against the float64
// reference: rounding errors of a k-term sum grow like sqrt(k) for random data, and the gonum
// (SSE) path sums in a different order from the pure-Go one.
func accumTol(k int) float64 { return max(fastVsNaiveTol, 2e-6*math.Sqrt(float64(k))) }

// oddSizes exercise every remainder of the unrolled loops (×2 rows, ×4 depth) and of the tiles.
var oddSizes = []int{1, 3, 17, 65, 127, 130}

// nanVec returns n NaNs: a kernel that leaves any output unwritten fails the comparison.
func nanVec(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return v
}

// bothInner runs f on every path the kernels can take: the AVX-512 GEMM kernel with the AVX2+FMA
// assembly, the AVX2+FMA assembly alone (when the CPU has them; otherwise those subtests say why
// they skip), gonum's SSE loops, and the pure-Go reference
// loops — the last two being what other CPUs and architectures run.
func bothInner(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	// The quantized-activation int8 path (useVNNI) has its own tests (quant8_test.go): these
	// hold the float-widening kernels to float32 tolerances.
	defer func(s, g, z, v bool) { useSIMD, useGonum, useAVX512, useVNNI = s, g, z, v }(useSIMD, useGonum, useAVX512, useVNNI)
	useVNNI = false
	for _, c := range []struct {
		name               string
		simd, gonu, avx512 bool
	}{{"avx512", true, true, true}, {"avx2", true, true, false}, {"gonum", false, true, false}, {"purego", false, false, false}} {
		useSIMD, useGonum, useAVX512 = c.simd, c.gonu, c.avx512
		t.Run(c.name, func(t *testing.T) {
			if c.simd && !haveAVX2 {
				t.Skip("this CPU or build has no AVX2+FMA kernels (non-amd64, purego tag, or missing CPU features)")
			}
			if c.avx512 && !haveAVX512 {
				t.Skip("this CPU or build has no AVX-512F GEMM kernel (non-amd64, purego tag, or missing CPU features)")
			}
			f(t)
		})
	}
}

func TestMatMulMatchesNaive(t *testing.T) { bothInner(t, testMatMulMatchesNaive) }

func testMatMulMatchesNaive(t *testing.T) {
	seed := uint64(1)
	for _, m := range oddSizes {
		for _, k := range oddSizes {
			for _, n := range []int{1, 3, 17, 129, 300} {
				seed++
				a := randomVec(seed, m*k, -1, 1)
				b := randomVec(seed+1000, k*n, -1, 1)
				var bias []float32
				if seed%2 == 0 {
					bias = randomVec(seed+2000, n, -1, 1)
				}
				want, got := make([]float32, m*n), nanVec(m*n)
				MatMulNaive(want, a, b, bias, m, k, n)
				MatMul(got, a, b, bias, m, k, n)
				reportClose(t, fmt.Sprintf("MatMul m=%d k=%d n=%d", m, k, n), got, want, accumTol(k))
				// The pure-Go tiles on every size, including those Gemm sends to gonum.
				got = nanVec(m * n)
				gemmPure(m, n, k, a, k, b, n, got, n, bias)
				reportClose(t, fmt.Sprintf("gemmPure m=%d k=%d n=%d", m, k, n), got, want, accumTol(k))
				gotT, bt := nanVec(m*n), make([]float32, n*k)
				for p := 0; p < k; p++ {
					for j := 0; j < n; j++ {
						bt[j*k+p] = b[p*n+j]
					}
				}
				MatMulT(gotT, a, bt, bias, m, k, n)
				reportClose(t, fmt.Sprintf("MatMulT m=%d k=%d n=%d", m, k, n), gotT, want, accumTol(k))
			}
		}
	}
}

func TestGemmStrides(t *testing.T) { bothInner(t, testGemmStrides) }

func testGemmStrides(t *testing.T) {
	// Operands embedded in wider matrices: only the (m,n,k) window may be read or written.
	m, n, k, lda, ldb, ldc := 37, 21, 19, 23, 30, 25
	a := randomVec(7, (m-1)*lda+k, -1, 1)
	b := randomVec(8, (k-1)*ldb+n, -1, 1)
	want, got := randomVec(9, (m-1)*ldc+n, -1, 1), nanVec((m-1)*ldc+n)
	for i := 0; i < m; i++ {
		for j := n; j < ldc && i*ldc+j < len(got); j++ {
			got[i*ldc+j] = want[i*ldc+j] // the gaps between rows must survive
		}
	}
	pure := append([]float32(nil), got...)
	GemmNaive(m, n, k, a, lda, b, ldb, want, ldc, nil)
	Gemm(m, n, k, a, lda, b, ldb, got, ldc, nil)
	reportClose(t, "Gemm strided", got, want, fastVsNaiveTol)
	bias := randomVec(10, n, -1, 1)
	GemmNaive(m, n, k, a, lda, b, ldb, want, ldc, bias)
	gemmPure(m, n, k, a, lda, b, ldb, pure, ldc, bias)
	reportClose(t, "gemmPure strided", pure, want, fastVsNaiveTol)
	Gemm(m, n, k, a, lda, b, ldb, got, ldc, bias)
	reportClose(t, "Gemm strided with bias", got, want, fastVsNaiveTol)
}

func TestMatVecMatchesNaive(t *testing.T) { bothInner(t, testMatVecMatchesNaive) }

func testMatVecMatchesNaive(t *testing.T) {
	for _, k := range []int{1, 5, 768} {
		for _, n := range []int{1, 7, 2304} {
			x, w, bias := randomVec(1, k, -1, 1), randomVec(2, k*n, -1, 1), randomVec(3, n, -1, 1)
			want, got := make([]float32, n), nanVec(n)
			MatVecNaive(want, x, w, bias, k, n)
			MatVec(got, x, w, bias, k, n)
			reportClose(t, fmt.Sprintf("MatVec k=%d n=%d", k, n), got, want, accumTol(k))
		}
	}
}

func TestMatMulPanicsOnShapeMismatch(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MatMul with a short operand did not panic")
		}
	}()
	MatMul(make([]float32, 6), make([]float32, 5), make([]float32, 6), nil, 2, 3, 3)
}

func TestKernelsDoNotAllocate(t *testing.T) { bothInner(t, testKernelsDoNotAllocate) }

func testKernelsDoNotAllocate(t *testing.T) {
	const m, k, n = 4, 96, 300 // few rows: the split-K path
	a, b, dst := randomVec(1, m*k, -1, 1), randomVec(2, k*n, -1, 1), make([]float32, m*n)
	s := AttentionShape{B: 2, T: 3, H: 4, D: 16, P: 5, S: 16}
	q, kc, vc := randomVec(3, s.B*s.T*s.H*s.D, -1, 1), randomVec(4, s.B*s.H*s.S*s.D, -1, 1), randomVec(5, s.B*s.H*s.S*s.D, -1, 1)
	out, mask := make([]float32, len(q)), make([]int64, s.B*(s.P+s.T))
	for i := range mask {
		mask[i] = 1
	}
	big := randomVec(6, 1<<16, -3, 3)
	gamma, beta := randomVec(7, 256, -1, 1), randomVec(8, 256, -1, 1)
	for name, f := range map[string]func(){
		"MatMul":    func() { MatMul(dst, a, b, nil, m, k, n) },
		"MatMulT":   func() { MatMulT(dst, a, b, nil, m, k, n) },
		"Attention": func() { Attention(out, q, kc, vc, mask, s) },
		"GeluNew":   func() { GeluNew(big, big) },
		"LayerNorm": func() { LayerNorm(big, big, gamma, beta, 256, 1e-5) },
		"Softmax":   func() { Softmax(big, big, 256) },
	} {
		f() // grow scratch buffers
		if allocs := testing.AllocsPerRun(20, f); allocs != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, allocs)
		}
	}
}

// Decode-step shapes of GPT-2 124M: c_attn (768→2304) and the tied LM head (768→50257).
func BenchmarkMatVecCAttn(b *testing.B)       { benchMatMul(b, 1, 768, 2304) }
func BenchmarkMatVecLMHead(b *testing.B)      { benchMatMul(b, 1, 768, 50257) }
func BenchmarkMatMul64x768x3072(b *testing.B) { benchMatMul(b, 64, 768, 3072) }

func BenchmarkGemmPure64x768x3072(b *testing.B) {
	const m, k, n = 64, 768, 3072
	a, w, dst := randomVec(1, m*k, -1, 1), randomVec(2, k*n, -1, 1), make([]float32, m*n)
	b.ResetTimer()
	for range b.N {
		gemmPure(m, n, k, a, k, w, n, dst, n, nil)
	}
	b.ReportMetric(float64(2*m*k*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func benchMatMul(b *testing.B, m, k, n int) {
	a, w, dst := randomVec(1, m*k, -1, 1), randomVec(2, k*n, -1, 1), make([]float32, m*n)
	b.ResetTimer()
	for range b.N {
		MatMul(dst, a, w, nil, m, k, n)
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(2*m*k*n)*float64(b.N)/sec/1e9, "GFLOP/s")
	b.ReportMetric(float64(4*k*n)*float64(b.N)/sec/1e9, "weightGB/s")
}

func BenchmarkMatMulTLMHead(b *testing.B) {
	const k, n = 768, 50257
	a, w, dst := randomVec(1, k, -1, 1), randomVec(2, k*n, -1, 1), make([]float32, n)
	b.ResetTimer()
	for range b.N {
		MatMulT(dst, a, w, nil, 1, k, n)
	}
	b.ReportMetric(float64(4*k*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "weightGB/s")
}

// TestMatMulDeterministic: however the pool's workers share the chunks out, the same inputs
// give the same bits (sampling with a seed depends on it).
func TestMatMulDeterministic(t *testing.T) { bothInner(t, testMatMulDeterministic) }

func testMatMulDeterministic(t *testing.T) {
	for _, m := range []int{1, 3, 40, 101} {
		const k, n = 1000, 777
		a, b := randomVec(1, m*k, -1, 1), randomVec(2, k*n, -1, 1)
		first := make([]float32, m*n)
		MatMul(first, a, b, nil, m, k, n)
		for rep := 0; rep < 20; rep++ {
			got := make([]float32, m*n)
			MatMul(got, a, b, nil, m, k, n)
			for i := range got {
				if got[i] != first[i] {
					t.Fatalf("m=%d run %d: [%d] = %v, first run gave %v", m, rep, i, got[i], first[i])
				}
			}
		}
	}
}

// TestGemmAVX512SameBitsAsAVX2: the AVX-512 tile kernels form each element with the AVX2
// kernel's FMA chain, so products with them on and off are identical — with bias, in-place float32
// panels and packed int8 panels, over sizes with whole and partial 6×64 tiles (last row strips
// of 1–5 rows) and depth blocks; the same with the gemm<r>x64PfAVX512 kernels (gemmTilesZ) and
// with the six-row kernel they replace.
func TestGemmAVX512SameBitsAsAVX2(t *testing.T) {
	if !haveAVX512 {
		t.Skip("this CPU or build has no AVX-512F GEMM kernel (non-amd64, purego tag, or missing CPU features)")
	}
	defer func(z, t bool) { useAVX512, gemmTilesZ = z, t }(useAVX512, gemmTilesZ)
	for _, sz := range [][3]int{{16, 64, 7}, {64, 768, 768}, {23, 130, 300}, {40, 200, 513}, {19, 64, 300}, {20, 128, 40}, {21, 192, 513}, {64, 256, 3072}} {
		m, k, n := sz[0], sz[2], sz[1]
		a := randomVec(uint64(m+k), m*k, -1, 1)
		w := randomVec(uint64(n+k), k*n, -1, 1)
		bias := randomVec(uint64(n), n, -1, 1)
		q, sc := quant.Int8Cols(w, k, n)
		wp, qp := PackPanels(w, k, n), PackPanels(q, k, n)
		run := func(z, t bool) [3][]float32 {
			useAVX512, gemmTilesZ = z, t
			var out [3][]float32
			for i := range out {
				out[i] = nanVec(m * n)
			}
			MatMul(out[0], a, w, bias, m, k, n)
			MatMulPanels(out[1], a, wp, bias, m, k, n)
			MatMulPanelsI8(out[2], a, qp, sc, nil, m, k, n)
			return out
		}
		on, six, off := run(true, true), run(true, false), run(false, false)
		for v := range on {
			for i := range on[v] {
				if math.Float32bits(on[v][i]) != math.Float32bits(off[v][i]) || math.Float32bits(six[v][i]) != math.Float32bits(off[v][i]) {
					t.Fatalf("m=%d k=%d n=%d product %d: [%d] = %v with the AVX-512 tile kernels, %v with gemm6x64AVX512, %v without", m, k, n, v, i, on[v][i], six[v][i], off[v][i])
				}
			}
		}
		want := make([]float32, m*n)
		MatMulNaive(want, a, w, bias, m, k, n)
		reportClose(t, fmt.Sprintf("AVX-512 MatMul m=%d k=%d n=%d", m, k, n), on[0], want, accumTol(k))
	}
}

// TestPackAMatchesNaive: packA (with packA6AVX512 when the CPU has it) writes every strip as the
// definition says — rows interleaved by depth, zero rows past M — over a buffer of NaNs, for
// depths with and without a remainder of eight and partial last strips.
func TestPackAMatchesNaive(t *testing.T) { bothInner(t, testPackAMatchesNaive) }

func testPackAMatchesNaive(t *testing.T) {
	for _, sh := range [][3]int{{1, 1, 1}, {6, 8, 8}, {7, 17, 20}, {64, 768, 768}, {11, 24, 30}, {5, 3, 3}} {
		m, k, lda := sh[0], sh[1], sh[2]
		a := randomVec(uint64(m*k), (m-1)*lda+k, -1, 1)
		strips := (m + gemmMR - 1) / gemmMR
		got := nanVec(strips * gemmMR * k)
		packA(got, m, k, a, lda)
		for s := 0; s < strips; s++ {
			for q := 0; q < k; q++ {
				for r := 0; r < gemmMR; r++ {
					want := float32(0)
					if i := s*gemmMR + r; i < m {
						want = a[i*lda+q]
					}
					if g := got[s*gemmMR*k+q*gemmMR+r]; g != want {
						t.Fatalf("packA m=%d k=%d lda=%d: strip %d depth %d row %d = %g, want %g", m, k, lda, s, q, r, g, want)
					}
				}
			}
		}
	}
}
