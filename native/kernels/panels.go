package kernels

import (
	"fmt"

	"github.com/modelrt/modelrt/sdk/safetensors"
)

// PanelWidth is the number of columns of a packed weight panel (PackPanels).
const PanelWidth = gemmNR

// PackPanels reorders a (K,N) row-major weight — a Conv1D [in,out] matrix — into ⌈N/16⌉ panels of
// K rows × 16 columns, each panel contiguous, the columns past N zero:
//
//	out[(jp·K + p)·16 + x] = w[p·N + jp·16 + x]
//
// A decode product then reads each panel as one sequential stream and keeps its 16 sums in
// registers, and the GEMM of a prefill finds its B panels already packed. It panics when
// len(w) != k·n.
func PackPanels[T float32 | int8 | uint16](w []T, k, n int) []T {
	if len(w) != k*n {
		panic(fmt.Sprintf("kernels: PackPanels: %d values for (%d,%d)", len(w), k, n))
	}
	return PackPanelsInto(make([]T, panelLen(k, n)), w, k, n)
}

// PackPanelsInto is PackPanels writing into out, which must have PanelLen(k, n) elements (the
// columns past N are set to zero); it returns out.
func PackPanelsInto[T float32 | int8 | uint16](out, w []T, k, n int) []T {
	if len(w) != k*n || len(out) != panelLen(k, n) {
		panic(fmt.Sprintf("kernels: PackPanelsInto: %d values for (%d,%d) into %d", len(w), k, n, len(out)))
	}
	np := (n + PanelWidth - 1) / PanelWidth
	if n%PanelWidth != 0 {
		clear(out)
	}
	for jp := 0; jp < np; jp++ {
		j0 := jp * PanelWidth
		nb := min(PanelWidth, n-j0)
		for p := 0; p < k; p++ {
			copy(out[(jp*k+p)*PanelWidth:][:nb], w[p*n+j0:][:nb])
		}
	}
	return out
}

// PackPanelsT is PackPanelsInto for the transpose of w: w is (N,K) row-major — one row per
// output channel, as token embeddings are stored — and out gets the panels of the (K,N) matrix
// wᵀ, out[(jp·K + p)·16 + x] = w[(jp·16 + x)·K + p], without a transposed copy. out must have
// PanelLen(k, n) elements; it returns out.
func PackPanelsT[T float32 | int8 | uint16](out, w []T, k, n int) []T {
	if len(w) != k*n || len(out) != panelLen(k, n) {
		panic(fmt.Sprintf("kernels: PackPanelsT: %d values for (%d,%d)ᵀ into %d", len(w), n, k, len(out)))
	}
	if n%PanelWidth != 0 {
		clear(out)
	}
	for j := 0; j < n; j++ {
		base := j/PanelWidth*k*PanelWidth + j%PanelWidth
		for p, v := range w[j*k:][:k] {
			out[base+p*PanelWidth] = v
		}
	}
	return out
}

// UnpackPanels is the inverse of PackPanels: the (K,N) row-major matrix.
func UnpackPanels[T float32 | int8 | uint16](panels []T, k, n int) []T {
	np := (n + PanelWidth - 1) / PanelWidth
	if len(panels) != np*k*PanelWidth {
		panic(fmt.Sprintf("kernels: UnpackPanels: %d values for (%d,%d) in panels", len(panels), k, n))
	}
	w := make([]T, k*n)
	for jp := 0; jp < np; jp++ {
		j0 := jp * PanelWidth
		nb := min(PanelWidth, n-j0)
		for p := 0; p < k; p++ {
			copy(w[p*n+j0:][:nb], panels[(jp*k+p)*PanelWidth:][:nb])
		}
	}
	return w
}

func panelLen(k, n int) int { return (n + PanelWidth - 1) / PanelWidth * k * PanelWidth }

// PanelLen returns the number of elements PackPanels gives a (K,N) matrix.
func PanelLen(k, n int) int { return panelLen(k, n) }

// MatMulPanels is MatMul with the float32 weight w (K,N) packed by PackPanels:
//
//	dst: (M,N) · a: (M,K) · w: PackPanels of (K,N) · bias: (N) or nil
func MatMulPanels(dst, a, w, bias []float32, m, k, n int) {
	checkQuant("MatMulPanels", m, k, n, len(a), len(dst), k*n, 0, len(bias), false)
	if len(w) != panelLen(k, n) {
		panic(fmt.Sprintf("kernels: MatMulPanels: %d packed values for (%d,%d), want %d", len(w), k, n, panelLen(k, n)))
	}
	gemmW(m, n, k, a, k, weights{f32: w, panels: true}, n, dst, n, bias)
}

// MatMulPanelsI8 is MatMulI8 with q packed by PackPanels:
//
//	dst: (M,N) · a: (M,K) · q: PackPanels of (K,N) · scale: (N) · bias: (N) or nil
func MatMulPanelsI8(dst, a []float32, q []int8, scale, bias []float32, m, k, n int) {
	checkQuant("MatMulPanelsI8", m, k, n, len(a), len(dst), k*n, len(scale), len(bias), true)
	if len(q) != panelLen(k, n) {
		panic(fmt.Sprintf("kernels: MatMulPanelsI8: %d packed values for (%d,%d), want %d", len(q), k, n, panelLen(k, n)))
	}
	gemmW(m, n, k, a, k, weights{i8: q, scale: scale, panels: true}, n, dst, n, bias)
}

// MatMulPanelsF16 is MatMulF16 with h packed by PackPanels.
func MatMulPanelsF16(dst, a []float32, h []uint16, bias []float32, m, k, n int) {
	checkQuant("MatMulPanelsF16", m, k, n, len(a), len(dst), k*n, 0, len(bias), false)
	if len(h) != panelLen(k, n) {
		panic(fmt.Sprintf("kernels: MatMulPanelsF16: %d packed values for (%d,%d), want %d", len(h), k, n, panelLen(k, n)))
	}
	gemmW(m, n, k, a, k, weights{f16: h, panels: true}, n, dst, n, bias)
}

// panelJob computes C = A·W + bias with W in panels, one panel (16 output columns, all rows of A)
// per item: each output is one panel's dot products, computed by one task, so results do not
// depend on the workers.
//
// With qa set (int8 weights, useVNNI), the rows of A are read quantized instead: qa holds them
// as quantizeQ8 wrote them, row i at qa[i·lq:], and gemvPanelQ8 takes up to gemvRowsZ of them
// per pass over a panel.
type panelJob struct {
	m, n, k int
	a       []float32
	w       weights
	c, bias []float32
	ldc     int
	qa      []byte
	lq      int
}

func (j *panelJob) chunk(_, lo, hi int) {
	if j.qa != nil && j.m >= gemmMB {
		j.chunkGemmQ8(lo, hi)
		return
	}
	var y [gemvRowsZ * PanelWidth]float32
	most := gemvRows
	if useSIMD && useAVX512 || j.qa != nil {
		most = gemvRowsZ
	}
	for jp := lo; jp < hi; jp++ {
		j0 := jp * PanelWidth
		nb := min(PanelWidth, j.n-j0)
		off := jp * j.k * PanelWidth
		for i := 0; i < j.m; {
			var r int
			if j.qa != nil {
				r = min(most, j.m-i)
				gemvPanelQ8(y[:], j.qa[i*j.lq:], j.lq, j.w.i8[off:off+j.k*PanelWidth], j.k, r)
			} else {
				r = j.w.gemvPanelRows(y[:], j.a[i*j.k:], j.k, min(most, j.m-i), off)
			}
			for q := 0; q < r; q++ {
				ci := j.c[(i+q)*j.ldc+j0:][:nb]
				yq := y[q*PanelWidth:]
				for x := range ci {
					v := yq[x]
					if j.w.i8 != nil {
						// Rounded before the bias (never fused into an FMA), as gemmQ8 does it.
						v = float32(v * j.w.scale[j0+x])
					}
					if j.bias != nil {
						v += j.bias[j0+x]
					}
					ci[x] = v
				}
			}
			i += r
		}
	}
}

// gemvRows is the most rows of A one pass over a weight panel serves with the YMM kernels
// (gemvPanel*x3AVX2): a batched decode step reads each panel once per three rows instead of once
// per row. gemvRowsZ is the same with AVX-512 (gemvPanel*x8AVX512; twice the registers).
const (
	gemvRows  = 3
	gemvRowsZ = 8
)

// gemvPanelRows sets y[16q:16q+16] = Σ_p a[q·k+p]·W[off + 16p : off + 16p + 16] for the first r
// of the `rows` rows of a (int8 unscaled) and returns r. The assembly does up to gemvRows rows per
// pass (gemvRowsZ with AVX-512) with each row's sums formed as gemvPanel forms them, so a row has the same bits in a batch
// as alone; other paths do one row.
func (w *weights) gemvPanelRows(y, a []float32, k, rows, off int) int {
	simd := useSIMD && (w.f16 == nil || haveF16C)
	if !simd || rows == 1 {
		w.gemvPanel(y[:PanelWidth], a[:k], off)
		return 1
	}
	a = a[:(rows-1)*k+k]
	n := k * PanelWidth
	if rows > gemvRows && useAVX512 {
		rows = min(rows, gemvRowsZ)
		// Direct calls (a table of funcs would make y escape, and a decode step allocate).
		switch {
		case w.i8 != nil:
			gemvPanelI8Z(y, a, k, w.i8[off:off+n], rows)
		case w.f16 != nil:
			gemvPanelF16Z(y, a, k, w.f16[off:off+n], rows)
		default:
			gemvPanelF32Z(y, a, k, w.f32[off:off+n], rows)
		}
		return rows
	}
	rows = min(rows, gemvRows)
	switch {
	case w.i8 != nil && rows == 2:
		gemvPanelI8x2AVX2(y, a, k, w.i8[off:off+n])
	case w.i8 != nil:
		gemvPanelI8x3AVX2(y, a, k, w.i8[off:off+n])
	case w.f16 != nil && rows == 2:
		gemvPanelF16x2AVX2(y, a, k, w.f16[off:off+n])
	case w.f16 != nil:
		gemvPanelF16x3AVX2(y, a, k, w.f16[off:off+n])
	case rows == 2:
		gemvPanelF32x2AVX2(y, a, k, w.f32[off:off+n])
	default:
		gemvPanelF32x3AVX2(y, a, k, w.f32[off:off+n])
	}
	return rows
}

// gemvPanel sets y[0:16] = Σ_p a[p]·W[off + 16p : off + 16p + 16] (int8 unscaled).
func (w *weights) gemvPanel(y []float32, a []float32, off int) {
	k := len(a)
	switch {
	case useSIMD && w.i8 != nil:
		gemvPanelI8AVX2(y, a, w.i8[off:off+k*PanelWidth])
		return
	case useSIMD && w.f16 != nil && haveF16C:
		gemvPanelF16AVX2(y, a, w.f16[off:off+k*PanelWidth])
		return
	case useSIMD && w.f32 != nil:
		gemvPanelF32(y, a, w.f32[off:off+k*PanelWidth])
		return
	}
	clear(y[:PanelWidth])
	for p, ap := range a {
		base := off + p*PanelWidth
		for x := 0; x < PanelWidth; x++ {
			y[x] += ap * w.at(base+x)
		}
	}
}

// packBPanels is packB for weights already in panels: panel jp's rows p0..p0+kb are contiguous.
func (j *gemmPackedJob) packBPanels(buf []float32, p0, kb, j0, ng int) {
	const panel = gemmKC * gemmNR
	w := &j.w
	for x := 0; x*gemmNR < ng; x++ {
		jp := j0/gemmNR + x
		dst := buf[x*panel:][:kb*gemmNR]
		off := (jp*j.k + p0) * gemmNR
		switch {
		case w.f32 != nil:
			copy(dst, w.f32[off:off+kb*gemmNR])
		case w.i8 != nil:
			sc := w.scale[jp*gemmNR:]
			for q := 0; q < kb; q++ {
				d, s := dst[q*gemmNR:][:gemmNR], w.i8[off+q*gemmNR:][:gemmNR]
				if len(sc) >= gemmNR {
					widenI8AVX2(d, s, sc[:gemmNR])
					continue
				}
				for c := range d {
					d[c] = 0
					if c < len(sc) {
						d[c] = float32(s[c]) * sc[c]
					}
				}
			}
		default:
			src := w.f16[off : off+kb*gemmNR]
			if haveF16C {
				widenF16AVX2(dst, src)
				continue
			}
			for i, h := range src {
				dst[i] = safetensors.F16ToF32(h)
			}
		}
	}
}

// gemvPanelF32Z calls gemvPanelF32x<rows>AVX512 (4 ≤ rows ≤ gemvRowsZ).
func gemvPanelF32Z(y, a []float32, lda int, w []float32, rows int) {
	switch rows {
	case 4:
		gemvPanelF32x4AVX512(y, a, lda, w)
	case 5:
		gemvPanelF32x5AVX512(y, a, lda, w)
	case 6:
		gemvPanelF32x6AVX512(y, a, lda, w)
	case 7:
		gemvPanelF32x7AVX512(y, a, lda, w)
	default:
		gemvPanelF32x8AVX512(y, a, lda, w)
	}
}

// gemvPanelI8Z calls gemvPanelI8x<rows>AVX512 (4 ≤ rows ≤ gemvRowsZ).
func gemvPanelI8Z(y, a []float32, lda int, w []int8, rows int) {
	switch rows {
	case 4:
		gemvPanelI8x4AVX512(y, a, lda, w)
	case 5:
		gemvPanelI8x5AVX512(y, a, lda, w)
	case 6:
		gemvPanelI8x6AVX512(y, a, lda, w)
	case 7:
		gemvPanelI8x7AVX512(y, a, lda, w)
	default:
		gemvPanelI8x8AVX512(y, a, lda, w)
	}
}

// gemvPanelF16Z calls gemvPanelF16x<rows>AVX512 (4 ≤ rows ≤ gemvRowsZ).
func gemvPanelF16Z(y, a []float32, lda int, w []uint16, rows int) {
	switch rows {
	case 4:
		gemvPanelF16x4AVX512(y, a, lda, w)
	case 5:
		gemvPanelF16x5AVX512(y, a, lda, w)
	case 6:
		gemvPanelF16x6AVX512(y, a, lda, w)
	case 7:
		gemvPanelF16x7AVX512(y, a, lda, w)
	default:
		gemvPanelF16x8AVX512(y, a, lda, w)
	}
}
