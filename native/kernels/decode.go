package kernels

// lmHeadRows sends a one-row float32 MatMulT (the LM head of a batch-1 decode step) through
// dotF32x1AVX2, one call per chunk of weight rows, instead of one dotF32 call per row; false
// keeps the per-row calls (A/B measurements). The bits are the same either way.
var lmHeadRows = true

// decodePrefetch2K selects the batch-1 float32 decode kernels that prefetch 2 KiB ahead
// (gemvPanelF32PF2KAVX2, dotF32PF2Kx1AVX2) over the 1 KiB ones; false for A/B measurements.
// The bits are the same either way.
var decodePrefetch2K = true

func gemvPanelF32(y, a, w []float32) {
	if decodePrefetch2K {
		gemvPanelF32PF2KAVX2(y, a, w)
		return
	}
	gemvPanelF32AVX2(y, a, w)
}

func dotF32x1(s []float32, lds int, a []float32, lda int, w []float32, ldw, n, rows int) {
	if decodePrefetch2K {
		dotF32PF2Kx1AVX2(s, lds, a, lda, w, ldw, n, rows)
		return
	}
	dotF32x1AVX2(s, lds, a, lda, w, ldw, n, rows)
}

// SetDecodeVariant sets lmHeadRows, decodePrefetch2K and panelChunkBytes (0: four panels a
// task, whatever their size), for A/B benchmarks; it returns a function restoring them.
func SetDecodeVariant(rows, prefetch2K bool, chunkBytes int) (restore func()) {
	r, p, c := lmHeadRows, decodePrefetch2K, panelChunkBytes
	lmHeadRows, decodePrefetch2K, panelChunkBytes = rows, prefetch2K, chunkBytes
	return func() { lmHeadRows, decodePrefetch2K, panelChunkBytes = r, p, c }
}

// panelChunkBytes is the most float32 weight bytes one task of a panel product takes (four
// panels of GPT-2's 768-row weights). A task of four 3072-row panels (768 KiB, ~100 µs of one
// core's bandwidth) left one worker idle for half a task on average at the end of each MLP
// c_proj product, and for a whole task when the other worker was descheduled mid-task.
var panelChunkBytes = 4 * 768 * PanelWidth * 4

// q8PanelChunkBytes is the most int8 weight bytes one task of a decode (m < gemmMB) panel
// product takes on the quantized-activation path: 16 panels of 768 rows, 4 of 3072. With four
// panels a task whatever their rows, as before, two workers handed each other a task every 48
// KiB of GPT-2's 768-row int8 weights. GPT-2 124M's 48 int8 layer matrices at one row, alternated
// in one test binary (five runs of 60 passes): 36.1–42.7 GB/s at four panels a task, 39.5–44.8
// at 192 KiB; BenchmarkDecodeInt8, alternated 3 times: 228–255 against 244–262 tokens/s.
// Prefill keeps four panels a task: its products are compute-bound, and 16 panels would leave a
// worker idle for a third of a 48-panel product.
var q8PanelChunkBytes = 192 << 10

// panelGrain returns how many panels of k rows one task of a panel product of m rows takes.
func panelGrain(m, k int, w weights) int {
	if w.i8 != nil && m < gemmMB && useVNNI && q8PanelChunkBytes > 0 {
		return max(1, min(16, q8PanelChunkBytes/(k*PanelWidth)))
	}
	if w.f32 == nil || panelChunkBytes == 0 {
		return 4
	}
	return max(1, min(4, panelChunkBytes/(k*PanelWidth*4)))
}
