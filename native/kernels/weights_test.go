package kernels

import (
	"fmt"
	"math"
	"testing"

	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// The quantized products are compared with MatMulNaive on the dequantized weights, so only the
// float32 accumulation order differs: the same tolerance as the float32 kernels.

func TestMatMulQuantizedMatchesNaive(t *testing.T) { bothInner(t, testMatMulQuantizedMatchesNaive) }

func testMatMulQuantizedMatchesNaive(t *testing.T) {
	seed := uint64(500)
	// m=1..5 takes the split-K path, m ≥ gemmMB the packed one; n and k cover every tail of the
	// 8-wide assembly, the 16-wide panels and the 6-row strips.
	for _, m := range []int{1, 3, 17, 40} {
		for _, k := range []int{1, 7, 33, 300} {
			for _, n := range []int{1, 9, 31, 130} {
				seed++
				a := randomVec(seed, m*k, -1, 1)
				w := randomVec(seed+1, k*n, -1, 1)
				var bias []float32
				if seed%2 == 0 {
					bias = randomVec(seed+2, n, -1, 1)
				}
				q, s := quant.Int8Cols(w, k, n)
				want, got := make([]float32, m*n), nanVec(m*n)
				MatMulNaive(want, a, quant.DequantCols(q, s, k, n), bias, m, k, n)
				MatMulI8(got, a, q, s, bias, m, k, n)
				reportClose(t, fmt.Sprintf("MatMulI8 m=%d k=%d n=%d", m, k, n), got, want, accumTol(k))

				h := quant.ToF16(w)
				wh := make([]float32, len(w))
				quant.FromF16(wh, h)
				MatMulNaive(want, a, wh, bias, m, k, n)
				got = nanVec(m * n)
				MatMulF16(got, a, h, bias, m, k, n)
				reportClose(t, fmt.Sprintf("MatMulF16 m=%d k=%d n=%d", m, k, n), got, want, accumTol(k))

				// The same weights packed in 16-column panels (decode GEMV, prefill without packing).
				got = nanVec(m * n)
				MatMulPanels(got, a, PackPanels(w, k, n), bias, m, k, n)
				MatMulNaive(want, a, w, bias, m, k, n)
				reportClose(t, fmt.Sprintf("MatMulPanels m=%d k=%d n=%d", m, k, n), got, want, accumTol(k))
				got = nanVec(m * n)
				MatMulPanelsI8(got, a, PackPanels(q, k, n), s, bias, m, k, n)
				MatMulNaive(want, a, quant.DequantCols(q, s, k, n), bias, m, k, n)
				reportClose(t, fmt.Sprintf("MatMulPanelsI8 m=%d k=%d n=%d", m, k, n), got, want, accumTol(k))
				got = nanVec(m * n)
				MatMulPanelsF16(got, a, PackPanels(h, k, n), bias, m, k, n)
				quant.FromF16(wh, h)
				MatMulNaive(want, a, wh, bias, m, k, n)
				reportClose(t, fmt.Sprintf("MatMulPanelsF16 m=%d k=%d n=%d", m, k, n), got, want, accumTol(k))
				if back := UnpackPanels(PackPanels(q, k, n), k, n); string(int8Bytes(back)) != string(int8Bytes(q)) {
					t.Fatalf("UnpackPanels(PackPanels(q)) != q for k=%d n=%d", k, n)
				}

				// The transposed forms: W (N,K), one output channel per row.
				wt := randomVec(seed+3, n*k, -1, 1)
				qt, st := quant.Int8Rows(wt, n, k)
				MatMulTNaive(want, a, quant.DequantRows(qt, st, n, k), bias, m, k, n)
				got = nanVec(m * n)
				MatMulTI8(got, a, qt, st, bias, m, k, n)
				reportClose(t, fmt.Sprintf("MatMulTI8 m=%d k=%d n=%d", m, k, n), got, want, accumTol(k))
				// The same rows packed as the panels of their transpose (an int8 LM head).
				qtp := PackPanelsT(make([]int8, PanelLen(k, n)), qt, k, n)
				if wantP := PackPanels(transposeI8(qt, n, k), k, n); string(int8Bytes(qtp)) != string(int8Bytes(wantP)) {
					t.Fatalf("PackPanelsT(q) != PackPanels(qᵀ) for k=%d n=%d", k, n)
				}
				got = nanVec(m * n)
				MatMulPanelsI8(got, a, qtp, st, bias, m, k, n)
				reportClose(t, fmt.Sprintf("MatMulPanelsI8 on PackPanelsT m=%d k=%d n=%d", m, k, n), got, want, accumTol(k))
				ht := quant.ToF16(wt)
				quant.FromF16(wt, ht)
				MatMulTNaive(want, a, wt, bias, m, k, n)
				got = nanVec(m * n)
				MatMulTF16(got, a, ht, bias, m, k, n)
				reportClose(t, fmt.Sprintf("MatMulTF16 m=%d k=%d n=%d", m, k, n), got, want, accumTol(k))
			}
		}
	}
}

// int8Magnitude scales the float32 tolerance for sums of unscaled int8 values (|q| ≤ 127).
const int8Magnitude = 127

// TestInnerKernelsMatchNaive holds each assembly routine (through its Go wrapper, which does the
// tails) to a float64 loop on every length up to 40 and offsets that misalign the operands.
func TestInnerKernelsMatchNaive(t *testing.T) { bothInner(t, testInnerKernelsMatchNaive) }

func testInnerKernelsMatchNaive(t *testing.T) {
	for n := 0; n <= 40; n++ {
		for _, rows := range []int{1, 3, 4, 9} {
			const ld = 45
			a := randomVec(uint64(n*7+rows), rows, -1, 1)
			wf := randomVec(uint64(n*7+rows+1), rows*ld+1, -1, 1)[1:] // misaligned by one float
			wi, s := quant.Int8Rows(wf, 1, len(wf))
			wh := quant.ToF16(wf)
			for name, w := range map[string]weights{"f32": {f32: wf}, "i8": {i8: wi, scale: s}, "f16": {f16: wh}} {
				tol := accumTol(rows)
				if w.i8 != nil {
					tol *= int8Magnitude // at() returns unscaled int8 values, up to 127
				}
				want := make([]float64, n)
				for p := 0; p < rows; p++ {
					for j := 0; j < n; j++ {
						want[j] += float64(a[p]) * float64(w.at(p*ld+j))
					}
				}
				got := make([]float32, n)
				w.axpy(got, a, 0, ld)
				wantF := make([]float32, n)
				for j := range want {
					wantF[j] = float32(want[j])
				}
				reportClose(t, fmt.Sprintf("axpy %s rows=%d n=%d", name, rows, n), got, wantF, tol)
				// dot over the first row, length n
				x := randomVec(uint64(n+99), n, -1, 1)
				var d float64
				for i := 0; i < n; i++ {
					d += float64(x[i]) * float64(w.at(i))
				}
				reportClose(t, fmt.Sprintf("dot %s n=%d", name, n), []float32{w.dot(x, 0)}, []float32{float32(d)}, max(tol, accumTol(n)*int8Magnitude))
			}
		}
	}
}

func int8Bytes(q []int8) []byte {
	b := make([]byte, len(q))
	for i, v := range q {
		b[i] = byte(v)
	}
	return b
}

func TestQuantizedKernelsDoNotAllocate(t *testing.T) { bothInner(t, testQuantizedKernelsDoNotAllocate) }

func testQuantizedKernelsDoNotAllocate(t *testing.T) {
	const k, n = 96, 300
	for _, m := range []int{1, 20} {
		a, w, dst := randomVec(1, m*k, -1, 1), randomVec(2, k*n, -1, 1), make([]float32, m*n)
		q, s := quant.Int8Cols(w, k, n)
		h := quant.ToF16(w)
		qp, hp, wp := PackPanels(q, k, n), PackPanels(h, k, n), PackPanels(w, k, n)
		for name, f := range map[string]func(){
			"MatMulPanels":    func() { MatMulPanels(dst, a, wp, nil, m, k, n) },
			"MatMulPanelsI8":  func() { MatMulPanelsI8(dst, a, qp, s, nil, m, k, n) },
			"MatMulPanelsF16": func() { MatMulPanelsF16(dst, a, hp, nil, m, k, n) },
			"MatMul":          func() { MatMul(dst, a, w, nil, m, k, n) },
			"MatMulI8":        func() { MatMulI8(dst, a, q, s, nil, m, k, n) },
			"MatMulF16":       func() { MatMulF16(dst, a, h, nil, m, k, n) },
			"MatMulTI8":       func() { MatMulTI8(dst, a, q, s, nil, m, k, n) },
			"MatMulTF16":      func() { MatMulTF16(dst, a, h, nil, m, k, n) },
		} {
			if name == "MatMul" && m >= gemmMB && !useSIMD {
				continue // gonum's Sgemm starts goroutines per call; prefill is per prompt, not per token
			}
			f() // grow scratch buffers
			if allocs := testing.AllocsPerRun(10, f); allocs != 0 {
				t.Errorf("%s m=%d: %v allocations per call, want 0", name, m, allocs)
			}
		}
	}
}

// Decode-step shapes of GPT-2 124M with quantized weights: the MLP's c_fc (768→3072) and the
// LM head (768→50257, transposed).
func BenchmarkMatVecI8CFC(b *testing.B) {
	const k, n = 768, 3072
	a, w, dst := randomVec(1, k, -1, 1), randomVec(2, k*n, -1, 1), make([]float32, n)
	q, s := quant.Int8Cols(w, k, n)
	b.ResetTimer()
	for range b.N {
		MatMulI8(dst, a, q, s, nil, 1, k, n)
	}
	b.ReportMetric(float64(k*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "weightGB/s")
}

func BenchmarkMatVecF32CFC(b *testing.B) { benchMatMul(b, 1, 768, 3072) }

func BenchmarkMatMulTI8LMHead(b *testing.B) {
	const k, n = 768, 50257
	a, w, dst := randomVec(1, k, -1, 1), randomVec(2, k*n, -1, 1), make([]float32, n)
	q, s := quant.Int8Rows(w, n, k)
	b.ResetTimer()
	for range b.N {
		MatMulTI8(dst, a, q, s, nil, 1, k, n)
	}
	b.ReportMetric(float64(k*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "weightGB/s")
}

// BenchmarkDecodeLayers streams the four Conv1D weights of twelve GPT-2 124M layers (85 M
// weights, 340 MB as float32 — far beyond the caches, as in a decode step) through one-row
// products, on each path and weight type.
func BenchmarkDecodeLayers(b *testing.B) {
	shapes := [][2]int{{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}}
	type layer struct {
		k, n  int
		w     []float32
		q     []int8
		scale []float32
		h     []uint16
		qp    []int8
		hp    []uint16
		wp    []float32
	}
	var layers []layer
	for l := 0; l < 12; l++ {
		for i, s := range shapes {
			w := randomVec(uint64(100*l+i), s[0]*s[1], -1, 1)
			q, sc := quant.Int8Cols(w, s[0], s[1])
			h := quant.ToF16(w)
			layers = append(layers, layer{k: s[0], n: s[1], w: w, q: q, scale: sc, h: h,
				qp: PackPanels(q, s[0], s[1]), hp: PackPanels(h, s[0], s[1]), wp: PackPanels(w, s[0], s[1])})
		}
	}
	x, dst := randomVec(1, 3072, -1, 1), make([]float32, 3072)
	defer func(s, g bool) { useSIMD, useGonum = s, g }(useSIMD, useGonum)
	for _, path := range []struct {
		name       string
		simd, gonu bool
	}{{"avx2", true, true}, {"gonum", false, true}} {
		if path.simd && !haveAVX2 {
			continue
		}
		for _, dt := range []string{"f32", "int8", "fp16", "int8-panels", "fp16-panels", "f32-panels"} {
			if dt != "f32" && !path.simd {
				continue
			}
			b.Run(path.name+"/"+dt, func(b *testing.B) {
				useSIMD, useGonum = path.simd, path.gonu
				var bytes int
				for range b.N {
					bytes = 0
					for _, l := range layers {
						switch dt {
						case "f32":
							MatMul(dst[:l.n], x[:l.k], l.w, nil, 1, l.k, l.n)
							bytes += 4 * len(l.w)
						case "int8":
							MatMulI8(dst[:l.n], x[:l.k], l.q, l.scale, nil, 1, l.k, l.n)
							bytes += len(l.q)
						case "fp16":
							MatMulF16(dst[:l.n], x[:l.k], l.h, nil, 1, l.k, l.n)
							bytes += 2 * len(l.h)
						case "int8-panels":
							MatMulPanelsI8(dst[:l.n], x[:l.k], l.qp, l.scale, nil, 1, l.k, l.n)
							bytes += len(l.qp)
						case "f32-panels":
							gemmW(1, l.n, l.k, x[:l.k], l.k, weights{f32: l.wp, panels: true}, l.n, dst[:l.n], l.n, nil)
							bytes += 4 * len(l.wp)
						case "fp16-panels":
							MatMulPanelsF16(dst[:l.n], x[:l.k], l.hp, nil, 1, l.k, l.n)
							bytes += 2 * len(l.hp)
						}
					}
				}
				b.ReportMetric(float64(bytes)*float64(b.N)/b.Elapsed().Seconds()/1e9, "weightGB/s")
			})
		}
	}
}

// TestBatchedRowsMatchOneRow holds the decode products of a batch (2–15 rows: the panel — up to
// three rows a pass with AVX2, eight with AVX-512 — and
// LM-head paths) to the bits of the same rows computed one at a time, for every weight type, and
// to the naive reference within the float32 tolerance.
func TestBatchedRowsMatchOneRow(t *testing.T) { bothInner(t, testBatchedRowsMatchOneRow) }

func testBatchedRowsMatchOneRow(t *testing.T) {
	const n = 37 // two whole panels and a partial one
	for _, k := range []int{1, 7, 8, 33, 300} {
		for _, m := range []int{2, 3, 4, 5, 6, 7, 8, 9, 11, 15} {
			seed := uint64(9000 + 10*k + m)
			a := randomVec(seed, m*k, -1, 1)
			w := randomVec(seed+1, k*n, -1, 1)
			bias := randomVec(seed+2, n, -1, 1)
			q, s := quant.Int8Cols(w, k, n)
			h := quant.ToF16(w)
			wt := randomVec(seed+3, n*k, -1, 1)
			qt, st := quant.Int8Rows(wt, n, k)
			ht := quant.ToF16(wt)
			wp, qp, hp := PackPanels(w, k, n), PackPanels(q, k, n), PackPanels(h, k, n)
			for _, c := range []struct {
				name string
				f    func(dst, a []float32, m int)
				ref  func(dst, a []float32, m int)
			}{
				{"MatMulPanels", func(d, a []float32, m int) { MatMulPanels(d, a, wp, bias, m, k, n) },
					func(d, a []float32, m int) { MatMulNaive(d, a, w, bias, m, k, n) }},
				{"MatMulPanelsI8", func(d, a []float32, m int) { MatMulPanelsI8(d, a, qp, s, bias, m, k, n) },
					func(d, a []float32, m int) { MatMulNaive(d, a, quant.DequantCols(q, s, k, n), bias, m, k, n) }},
				{"MatMulPanelsF16", func(d, a []float32, m int) { MatMulPanelsF16(d, a, hp, bias, m, k, n) },
					func(d, a []float32, m int) { MatMulNaive(d, a, f16Values(h), bias, m, k, n) }},
				{"MatMulT", func(d, a []float32, m int) { MatMulT(d, a, wt, bias, m, k, n) },
					func(d, a []float32, m int) { MatMulTNaive(d, a, wt, bias, m, k, n) }},
				{"MatMulTI8", func(d, a []float32, m int) { MatMulTI8(d, a, qt, st, bias, m, k, n) },
					func(d, a []float32, m int) { MatMulTNaive(d, a, quant.DequantRows(qt, st, n, k), bias, m, k, n) }},
				{"MatMulTF16", func(d, a []float32, m int) { MatMulTF16(d, a, ht, bias, m, k, n) },
					func(d, a []float32, m int) { MatMulTNaive(d, a, f16Values(ht), bias, m, k, n) }},
			} {
				got, want := nanVec(m*n), make([]float32, m*n)
				c.f(got, a, m)
				c.ref(want, a, m)
				reportClose(t, fmt.Sprintf("%s m=%d k=%d", c.name, m, k), got, want, accumTol(k))
				for i := 0; i < m; i++ {
					one := nanVec(n)
					c.f(one, a[i*k:][:k], 1)
					for x := range one {
						if math.Float32bits(one[x]) != math.Float32bits(got[i*n+x]) {
							t.Fatalf("%s m=%d k=%d: row %d column %d is %v in the batch, %v alone", c.name, m, k, i, x, got[i*n+x], one[x])
						}
					}
				}
			}
		}
	}
}

func f16Values(h []uint16) []float32 {
	v := make([]float32, len(h))
	quant.FromF16(v, h)
	return v
}

// BenchmarkLMHeadBatch8 is the LM head of a batch-8 decode step: 8 rows against GPT-2's tied
// embeddings (50257×768), float32 and int8.
func BenchmarkLMHeadBatch8(b *testing.B) {
	const m, k, n = 8, 768, 50257
	a, w, dst := randomVec(1, m*k, -1, 1), randomVec(2, n*k, -1, 1), make([]float32, m*n)
	q, s := quant.Int8Rows(w, n, k)
	b.Run("f32", func(b *testing.B) {
		for range b.N {
			MatMulT(dst, a, w, nil, m, k, n)
		}
	})
	b.Run("int8", func(b *testing.B) {
		for range b.N {
			MatMulTI8(dst, a, q, s, nil, m, k, n)
		}
	})
}

// transposeI8 returns the (cols,rows) transpose of the (rows,cols) row-major w.
func transposeI8(w []int8, rows, cols int) []int8 {
	out := make([]int8, len(w))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = w[r*cols+c]
		}
	}
	return out
}
