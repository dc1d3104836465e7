package kernels

import "fmt"

// q8GemmRows is the most rows of activations one gemmQ8x*VNNI call takes over a weight panel;
// must match scripts/gen-kernels/q8gemm.go.
const q8GemmRows = 8

// gemmQ8 stores rows (1 ≤ rows ≤ q8GemmRows) rows of the int8 panel product with quantized
// activations into C, for the nb ≤ PanelWidth columns of one panel:
//
//	c[i·ldc+x] = y_i[x]·scale[x] (+ bias[x]),   i < rows, x < nb
//
// where y_i is what gemvPanelQ8 computes for activation row i (qa[i·lda:]) and the int8 panel w
// (k rows of 16), with the same float operations in the same order: a prefill row gets the bits of
// the row decoded alone. bias may be nil.
func gemmQ8(c []float32, ldc int, qa []byte, lda int, w []int8, k, rows int, scale, bias []float32, nb int) {
	if rows < 1 || rows > q8GemmRows || nb < 1 || nb > PanelWidth || len(w) != k*PanelWidth || len(c) < (rows-1)*ldc+nb ||
		len(qa) < (rows-1)*lda+q8RowBytes(k) || len(scale) < nb || bias != nil && len(bias) < nb {
		panic(fmt.Sprintf("kernels: gemmQ8: %d rows of %d columns, k=%d, %d weights, %d outputs (stride %d), %d activation bytes (stride %d), %d scales, %d biases",
			rows, nb, k, len(w), len(c), ldc, len(qa), lda, len(scale), len(bias)))
	}
	rem := k % q8Block
	blocks, steps, mask := k/q8Block, rem/4, uint64(1)<<(16*(rem%4))-1
	cmask := uint64(1)<<nb - 1
	switch rows {
	case 1:
		gemmQ8x1VNNI(c, ldc, qa, lda, w, blocks, steps, mask, scale, bias, cmask)
	case 2:
		gemmQ8x2VNNI(c, ldc, qa, lda, w, blocks, steps, mask, scale, bias, cmask)
	case 3:
		gemmQ8x3VNNI(c, ldc, qa, lda, w, blocks, steps, mask, scale, bias, cmask)
	case 4:
		gemmQ8x4VNNI(c, ldc, qa, lda, w, blocks, steps, mask, scale, bias, cmask)
	case 5:
		gemmQ8x5VNNI(c, ldc, qa, lda, w, blocks, steps, mask, scale, bias, cmask)
	case 6:
		gemmQ8x6VNNI(c, ldc, qa, lda, w, blocks, steps, mask, scale, bias, cmask)
	case 7:
		gemmQ8x7VNNI(c, ldc, qa, lda, w, blocks, steps, mask, scale, bias, cmask)
	default:
		gemmQ8x8VNNI(c, ldc, qa, lda, w, blocks, steps, mask, scale, bias, cmask)
	}
}

// chunkGemmQ8 is panelJob.chunk for a product of gemmMB rows or more on the VNNI path (a prefill):
// per panel, the rows in groups of q8GemmRows through gemmQ8, which also scales, biases and
// stores them. The panel (16·k bytes) stays in L1/L2 while the groups go by.
func (j *panelJob) chunkGemmQ8(lo, hi int) {
	for jp := lo; jp < hi; jp++ {
		j0 := jp * PanelWidth
		nb := min(PanelWidth, j.n-j0)
		off := jp * j.k * PanelWidth
		w := j.w.i8[off : off+j.k*PanelWidth]
		var bias []float32
		if j.bias != nil {
			bias = j.bias[j0 : j0+nb]
		}
		for i := 0; i < j.m; i += q8GemmRows {
			r := min(q8GemmRows, j.m-i)
			gemmQ8(j.c[i*j.ldc+j0:], j.ldc, j.qa[i*j.lq:], j.lq, w, j.k, r, j.w.scale[j0:j0+nb], bias, nb)
		}
	}
}

// QuantizedActivations reports whether int8 panel products quantize their activations (the
// CPU has AVX512-VNNI and VBMI): then every row of an int8 product — a prefill's, a decode step's,
// batched or alone — runs the same integer sums and gets the same bits. Otherwise a product of
// gemmMB rows or more dequantizes the weights into the float GEMM, which rounds differently from
// the few-row kernels.
func QuantizedActivations() bool { return useVNNI }
