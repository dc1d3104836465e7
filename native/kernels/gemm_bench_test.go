package kernels

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cpuTime returns the process's user+system CPU time: on a shared machine, CPU time per
// operation says more about a kernel than wall time.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// prefillShapes are the four Conv1D products of one GPT-2 124M block at a 64-token prefill
// (k, n): c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj.
var prefillShapes = [][2]int{{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}}

// BenchmarkGemmPrefill times the GEMMs of a 64-token GPT-2 124M prefill on float32 weights in
// panels (MatMulPanels). "hot" repeats one shape's product on one weight (in cache after the
// first run); "layers" runs the four shapes of twelve blocks, each block with its own weights
// (340 MB, as a prefill reads them: from memory).
//
// Each runs twice: "old" with the kernels before gemm<r>x64PfAVX512, "z" with them
// (gemmTilesZ), so that one run compares the two.
func BenchmarkGemmPrefill(b *testing.B) {
	defer func(z bool) { gemmTilesZ = z }(gemmTilesZ)
	for _, z := range []bool{false, true} {
		gemmTilesZ = z
		name := "old"
		if z {
			name = "z"
		}
		b.Run(name, benchGemmPrefill)
	}
}

func benchGemmPrefill(b *testing.B) {
	const m = 64
	for _, s := range prefillShapes {
		k, n := s[0], s[1]
		b.Run(fmt.Sprintf("hot/k=%d/n=%d", k, n), func(b *testing.B) {
			a, w, dst := randomVec(1, m*k, -1, 1), PackPanels(randomVec(2, k*n, -1, 1), k, n), make([]float32, m*n)
			bias := randomVec(3, n, -1, 1)
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				MatMulPanels(dst, a, w, bias, m, k, n)
			}
			cpu := (cpuTime() - cpu0).Seconds()
			b.ReportMetric(float64(2*m*k*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(float64(2*m*k*n)*float64(b.N)/cpu/1e9, "GFLOP/cpu-s")
		})
	}
	b.Run("layers", func(b *testing.B) {
		const layers = 12
		var ws, as, dsts, biases [][]float32
		flops := 0
		for l := 0; l < layers; l++ {
			for i, s := range prefillShapes {
				k, n := s[0], s[1]
				ws = append(ws, PackPanels(randomVec(uint64(10*l+i), k*n, -1, 1), k, n))
				as = append(as, randomVec(uint64(1000+i), m*k, -1, 1))
				dsts = append(dsts, make([]float32, m*n))
				biases = append(biases, randomVec(uint64(2000+i), n, -1, 1))
				flops += 2 * m * k * n
			}
		}
		b.ResetTimer()
		cpu0 := cpuTime()
		for range b.N {
			for x := range ws {
				s := prefillShapes[x%len(prefillShapes)]
				MatMulPanels(dsts[x], as[x], ws[x], biases[x], m, s[0], s[1])
			}
		}
		cpu := (cpuTime() - cpu0).Seconds()
		b.ReportMetric(float64(flops)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		b.ReportMetric(float64(flops)*float64(b.N)/cpu/1e9, "GFLOP/cpu-s")
		b.ReportMetric(1e3*cpu/float64(b.N), "cpu-ms/prefill")
	})
}

// BenchmarkAttentionPrefill is one layer's attention of a 64-token GPT-2 124M prefill (12 heads
// of 64) in a cache of 1024 positions: "query" query by query (dotInner per key, as without
// AVX-512), "head" a head's scores at once on the GEMM kernels (attentionJob.head).
func BenchmarkAttentionPrefill(b *testing.B) {
	s := AttentionShape{B: 1, T: 64, H: 12, D: 64, P: 0, S: 1024}
	q := randomVec(1, s.B*s.T*s.H*s.D, -1, 1)
	k, v := randomVec(2, s.B*s.H*s.S*s.D, -1, 1), randomVec(3, s.B*s.H*s.S*s.D, -1, 1)
	dst := make([]float32, len(q))
	withAndWithoutAVX512(b, "query", "head", func() { Attention(dst, q, k, v, nil, s) })
}

// withAndWithoutAVX512 runs op as sub-benchmark off with useAVX512 false, then as on with it
// true (when the CPU has it), reporting CPU microseconds per op.
func withAndWithoutAVX512(b *testing.B, off, on string, op func()) {
	defer func(z bool) { useAVX512 = z }(useAVX512)
	for _, z := range []bool{false, true} {
		useAVX512 = z && haveAVX512
		name := off
		if z {
			name = on
		}
		b.Run(name, func(b *testing.B) {
			cpu0 := cpuTime()
			for range b.N {
				op()
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// BenchmarkGeluPrefill is gelu_new over one GPT-2 124M MLP's hidden block at 64 tokens
// (64×3072), with geluAVX512 ("avx512") and with geluAVX2 alone ("avx2").
func BenchmarkGeluPrefill(b *testing.B) {
	x := randomVec(1, 64*3072, -4, 4)
	dst := make([]float32, len(x))
	withAndWithoutAVX512(b, "avx2", "avx512", func() { GeluNew(dst, x) })
}
