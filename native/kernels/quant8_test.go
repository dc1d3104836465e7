package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// q8Sizes are the depths the quantized-activation tests run: every remainder of the 4-k depth
// step (the masked last step) and of the 64-k block, whole blocks, and GPT-2's 768 plus a tail.
var q8Sizes = []int{1, 2, 3, 4, 5, 7, 33, 63, 64, 65, 127, 128, 130, 300, 771}

// q8ActivationTol bounds the error of the quantized product against the float one, as a
// fraction of the rigorous bound Σ_p |W[p,x]|·scale_b(p)/2 (each activation rounds by at most
// half a step of its block) plus float32 accumulation noise: 1 means the bound holds.
const q8ActivationTol = 1.0

// requireVNNI skips t unless the CPU and build have the VNNI kernels, and turns them on (with
// the SIMD path they belong to) for the test.
func requireVNNI(t *testing.T) {
	t.Helper()
	if !haveVNNI {
		t.Skip("this CPU or build has no AVX512-VNNI/VBMI kernels (non-amd64, purego tag, or missing CPU features)")
	}
	s, g, z, v := useSIMD, useGonum, useAVX512, useVNNI
	t.Cleanup(func() { useSIMD, useGonum, useAVX512, useVNNI = s, g, z, v })
	useSIMD, useGonum, useAVX512, useVNNI = true, true, true, true
}

// q8Activations returns m·k activations in [−1, 1) with a few outliers (×30) and, when k allows,
// an all-zero block in row 0 (scale 0).
func q8Activations(seed uint64, m, k int) []float32 {
	a := randomVec(seed, m*k, -1, 1)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := 0; i < m*k/50; i++ {
		a[r.IntN(m*k)] *= 30
	}
	if k >= 2*q8Block {
		clear(a[q8Block : 2*q8Block])
	}
	return a
}

func randomInt8(seed uint64, n int) []int8 {
	r := rand.New(rand.NewPCG(seed, 3))
	q := make([]int8, n)
	for i := range q {
		q[i] = int8(r.IntN(256) - 128) // −128 too: the kernel's w+128 is then 0
	}
	return q
}

func TestFMA32(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	exact := func(a, b, c float32) float32 {
		x := new(big.Float).SetPrec(2000).SetFloat64(float64(a))
		x.Mul(x, new(big.Float).SetPrec(2000).SetFloat64(float64(b)))
		x.Add(x, new(big.Float).SetPrec(2000).SetFloat64(float64(c)))
		f, _ := x.Float32()
		return f
	}
	check := func(a, b, c float32) {
		if got, want := fma32(a, b, c), exact(a, b, c); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fma32(%g, %g, %g) = %g (%#x), want %g (%#x)", a, b, c, got, math.Float32bits(got), want, math.Float32bits(want))
		}
	}
	for i := 0; i < 200000; i++ {
		a := float32(r.IntN(1<<21) - 1<<20)
		b := math.Float32frombits(r.Uint32()&0x807fffff | uint32(100+r.IntN(40))<<23)
		c := math.Float32frombits(r.Uint32()&0x807fffff | uint32(110+r.IntN(40))<<23)
		check(a, b, c)
		// Sums whose float64 rounding lands exactly halfway between two float32 values while the
		// exact sum is not: c = lo (a float32), a·b = h(1 − 2⁻⁴⁶t²) with h half an ulp of lo, so
		// a·b + c = mid − h·2⁻⁴⁶t² rounds to mid in float64 and must round to lo in float32;
		// mirrored with c = hi and a negative product.
		lo := math.Float32frombits(r.Uint32()&0x7fffff | uint32(120+r.IntN(16))<<23)
		hi := math.Nextafter32(lo, float32(math.Inf(1)))
		h := (float64(hi) - float64(lo)) / 2
		u := float32(1 + float64(1+r.IntN(1000))/(1<<23))
		v := float32(h * (2 - float64(u)))
		if got := fma32(u, v, lo); got != lo {
			t.Fatalf("fma32(%g, %g, %g) = %g, want %g (just below the midpoint)", u, v, lo, got, lo)
		}
		check(u, v, lo)
		check(u, -v, hi)
	}
	check(3, 5, 0)
	check(0, 1, -0)
	check(1, float32(math.Inf(1)), 1)
}

func TestQuantizeQ8(t *testing.T) {
	for _, k := range q8Sizes {
		a := q8Activations(uint64(k), 2, k)
		a[k] = float32(math.Inf(-1)) // row 1's first block: infinite scale, zero values
		ld := q8RowBytes(k) + 8
		dst := make([]byte, 2*ld)
		for i := range dst {
			dst[i] = 0xa5
		}
		quantizeQ8(dst, ld, a, k, 2, k)
		// The assembly (whole blocks, where the VNNI kernels run) and the Go loop write the same
		// bytes.
		for i := 0; i < 2; i++ {
			g := make([]byte, q8RowBytes(k))
			quantizeQ8Go(g, a[i*k:][:k])
			if string(g) != string(dst[i*ld:][:len(g)]) {
				t.Fatalf("k=%d row %d: quantizeQ8 and quantizeQ8Go differ", k, i)
			}
		}
		for i := 0; i < 2; i++ {
			for b0 := 0; b0 < k; b0 += q8Block {
				r := dst[i*ld+b0/q8Block*q8Rec:][:q8Rec]
				s := q8Scale(r)
				var sum int32
				for p := 0; p < q8Block; p++ {
					q := int32(int8(r[p]))
					sum += q
					if b0+p >= k {
						if q != 0 {
							t.Fatalf("k=%d row %d: padding value %d at %d", k, i, q, b0+p)
						}
						continue
					}
					v := a[i*k+b0+p]
					if i == 1 && b0 == 0 {
						if q != 0 || !math.IsInf(float64(s), 1) {
							t.Fatalf("k=%d: block with -Inf: q=%d scale %g, want 0 and +Inf", k, q, s)
						}
						continue
					}
					if q < -127 || q > 127 || math.Abs(float64(v)-float64(s)*float64(q)) > float64(s)/2*(1+1e-5) {
						t.Fatalf("k=%d row %d: %g quantized to %d×%g", k, i, v, q, s)
					}
				}
				if c := int32(binary.LittleEndian.Uint32(r[q8Block+4:])); c != -128*sum {
					t.Fatalf("k=%d row %d block %d: correction %d, want %d", k, i, b0/q8Block, c, -128*sum)
				}
			}
		}
	}
}

// TestGemvPanelQ8MatchesNaive holds the VNNI kernels to gemvPanelQ8Naive bit for bit, for 1–8
// rows at a padded row stride, and each row of a batch to the row alone.
func TestGemvPanelQ8MatchesNaive(t *testing.T) {
	requireVNNI(t)
	for _, k := range q8Sizes {
		w := randomInt8(uint64(k), k*PanelWidth)
		a := q8Activations(uint64(k)+1, gemvRowsZ, k)
		lq := q8RowBytes(k) + 2*q8Rec // a padded stride
		qa := make([]byte, gemvRowsZ*lq)
		quantizeQ8(qa, lq, a, k, gemvRowsZ, k)
		alone := make([]float32, gemvRowsZ*PanelWidth)
		for i := 0; i < gemvRowsZ; i++ {
			gemvPanelQ8(alone[i*PanelWidth:], qa[i*lq:][:q8RowBytes(k)], lq, w, k, 1)
		}
		for rows := 1; rows <= gemvRowsZ; rows++ {
			got, want := nanVec(rows*PanelWidth), nanVec(rows*PanelWidth)
			gemvPanelQ8(got, qa[:(rows-1)*lq+q8RowBytes(k)], lq, w, k, rows)
			gemvPanelQ8Naive(want, qa, lq, w, k, rows)
			for x := range want {
				if math.Float32bits(got[x]) != math.Float32bits(want[x]) {
					t.Fatalf("k=%d rows=%d: y[%d] (row %d column %d) = %v, reference %v", k, rows, x, x/PanelWidth, x%PanelWidth, got[x], want[x])
				}
				if math.Float32bits(got[x]) != math.Float32bits(alone[x]) {
					t.Fatalf("k=%d rows=%d: row %d column %d is %v in the batch, %v alone", k, rows, x/PanelWidth, x%PanelWidth, got[x], alone[x])
				}
			}
		}
	}
}

// matMulPanelsQ8Ref is MatMulPanelsI8 with quantized activations, from the naive kernel.
func matMulPanelsQ8Ref(dst, a []float32, qp []int8, scale, bias []float32, m, k, n int) {
	lq := q8RowBytes(k)
	qa := make([]byte, m*lq)
	quantizeQ8(qa, lq, a, k, m, k)
	y := make([]float32, PanelWidth)
	for jp := 0; jp*PanelWidth < n; jp++ {
		for i := 0; i < m; i++ {
			gemvPanelQ8Naive(y, qa[i*lq:], lq, qp[jp*k*PanelWidth:][:k*PanelWidth], k, 1)
			for x := 0; x < min(PanelWidth, n-jp*PanelWidth); x++ {
				j := jp*PanelWidth + x
				v := y[x] * scale[j]
				if bias != nil {
					v += bias[j]
				}
				dst[i*n+j] = v
			}
		}
	}
}

// TestMatMulPanelsI8VNNI: MatMulPanelsI8 on the VNNI path (1–15 rows) equals the reference bit
// for bit, each row of a batch equals the row alone, and the quantized product stays within the
// activation rounding bound of the float product of the dequantized weights.
func TestMatMulPanelsI8VNNI(t *testing.T) {
	requireVNNI(t)
	for _, k := range q8Sizes {
		for _, n := range []int{1, 16, 37} {
			seed := uint64(7000 + 10*k + n)
			const m = 15
			a := q8Activations(seed, m, k)
			w := randomVec(seed+1, k*n, -1, 1)
			q, s := quant.Int8Cols(w, k, n)
			qp := PackPanels(q, k, n)
			var bias []float32
			if n != 16 {
				bias = randomVec(seed+2, n, -1, 1)
			}
			got, want := nanVec(m*n), make([]float32, m*n)
			MatMulPanelsI8(got, a, qp, s, bias, m, k, n)
			matMulPanelsQ8Ref(want, a, qp, s, bias, m, k, n)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("k=%d n=%d: [%d] = %v, reference %v", k, n, i, got[i], want[i])
				}
			}
			for _, r := range []int{1, 2, 5, 8, 9} {
				sub := nanVec(r * n)
				MatMulPanelsI8(sub, a[:r*k], qp, s, bias, r, k, n)
				for i := range sub {
					if math.Float32bits(sub[i]) != math.Float32bits(got[i]) {
						t.Fatalf("k=%d n=%d: row %d column %d is %v with %d rows, %v with %d", k, n, i/n, i%n, sub[i], r, got[i], m)
					}
				}
			}
			// The bound: |Δ| ≤ Σ_p |W[p,x]|·scale_b(p)/2 + float32 noise.
			wd := quant.DequantCols(q, s, k, n)
			f := make([]float32, m*n)
			MatMulNaive(f, a, wd, bias, m, k, n)
			lq := q8RowBytes(k)
			qa := make([]byte, m*lq)
			quantizeQ8(qa, lq, a, k, m, k)
			var worst float64
			for i := 0; i < m; i++ {
				for x := 0; x < n; x++ {
					var bound, mag float64
					for p := 0; p < k; p++ {
						sb := float64(q8Scale(qa[i*lq+p/q8Block*q8Rec:]))
						bound += math.Abs(float64(wd[p*n+x])) * sb / 2
						mag += math.Abs(float64(wd[p*n+x]) * float64(a[i*k+p]))
					}
					d := math.Abs(float64(got[i*n+x]) - float64(f[i*n+x]))
					worst = max(worst, d/(bound+accumTol(k)*max(1, mag)))
				}
			}
			if worst > q8ActivationTol {
				t.Errorf("k=%d n=%d: error %.3g of the activation rounding bound", k, n, worst)
			}
		}
	}
}

// TestDotQ8MatchesNaive holds the LM-head VNNI kernels to dotQ8Naive bit for bit, for 1–4 rows
// at a padded row stride, and each row of a batch to the row alone.
func TestDotQ8MatchesNaive(t *testing.T) {
	requireVNNI(t)
	const n = 37
	for _, k := range q8Sizes {
		w := randomInt8(uint64(k)+5, n*k)
		a := q8Activations(uint64(k)+6, q8RowsT, k)
		lq := q8RowBytesT(k) + q8RecT // a padded stride
		qa := make([]byte, q8RowsT*lq)
		for i := 0; i < q8RowsT; i++ {
			quantizeQ8TGo(qa[i*lq:][:q8RowBytesT(k)], a[i*k:][:k], 4<<(i%4)) // blocks of 4…32
		}
		alone := make([]float32, 8*n)
		for i := 0; i < q8RowsT; i++ {
			y := nanVec(8 * n)
			dotQ8(y, qa[i*lq:][:q8RowBytesT(k)], lq, w, k, n, 1)
			for x := 0; x < n; x++ {
				alone[8*x+i] = y[8*x]
			}
		}
		for rows := 1; rows <= q8RowsT; rows++ {
			got, want := nanVec(8*n), nanVec(8*n)
			dotQ8(got, qa[:(rows-1)*lq+q8RowBytesT(k)], lq, w, k, n, rows)
			dotQ8Naive(want, qa, lq, w, k, n, rows)
			for x := 0; x < n; x++ {
				for i := 0; i < rows; i++ {
					g := got[8*x+i]
					if math.Float32bits(g) != math.Float32bits(want[8*x+i]) {
						t.Fatalf("k=%d rows=%d: row %d weight row %d = %v, reference %v", k, rows, i, x, g, want[8*x+i])
					}
					if math.Float32bits(g) != math.Float32bits(alone[8*x+i]) {
						t.Fatalf("k=%d rows=%d: row %d weight row %d is %v in the batch, %v alone", k, rows, i, x, g, alone[8*x+i])
					}
				}
			}
		}
	}
}

// TestMatMulTI8VNNI: MatMulTI8 on the VNNI path (1–23 rows: decode and prefill) equals the
// reference bit for bit,
// each row of a batch equals the row alone, and the quantized product stays within the
// activation rounding bound of the float product of the dequantized weights.
func TestMatMulTI8VNNI(t *testing.T) {
	requireVNNI(t)
	const m, n = 23, 150 // gemmMB rows or more; more than one 64-row piece, and a partial one
	for _, k := range q8Sizes {
		seed := uint64(8000 + k)
		a := q8Activations(seed, m, k)
		wt := randomVec(seed+1, n*k, -1, 1)
		q, s := quant.Int8Rows(wt, n, k)
		bias := randomVec(seed+2, n, -1, 1)
		got := nanVec(m * n)
		MatMulTI8(got, a, q, s, bias, m, k, n)
		lq := q8RowBytesT(k)
		qa := make([]byte, m*lq)
		for i := 0; i < m; i++ {
			quantizeQ8TGo(qa[i*lq:][:lq], a[i*k:][:k], q8BlockT)
		}
		y := make([]float32, 8*n)
		for i := 0; i < m; i++ {
			dotQ8Naive(y, qa[i*lq:], lq, q, k, n, 1)
			for x := 0; x < n; x++ {
				if want := y[8*x]*s[x] + bias[x]; math.Float32bits(got[i*n+x]) != math.Float32bits(want) {
					t.Fatalf("k=%d: [%d,%d] = %v, reference %v", k, i, x, got[i*n+x], want)
				}
			}
		}
		for _, r := range []int{1, 3, 4, 5, 8} {
			sub := nanVec(r * n)
			MatMulTI8(sub, a[:r*k], q, s, bias, r, k, n)
			for i := range sub {
				if math.Float32bits(sub[i]) != math.Float32bits(got[i]) {
					t.Fatalf("k=%d: row %d column %d is %v with %d rows, %v with %d", k, i/n, i%n, sub[i], r, got[i], m)
				}
			}
		}
		wd := quant.DequantRows(q, s, n, k)
		f := make([]float32, m*n)
		MatMulTNaive(f, a, wd, bias, m, k, n)
		var worst float64
		for i := 0; i < m; i++ {
			for x := 0; x < n; x++ {
				var bound, mag float64
				for p := 0; p < k; p++ {
					sb := float64(math.Float32frombits(binary.LittleEndian.Uint32(qa[i*lq+p/64*q8RecT+128+4*(p%64/4):])))
					bound += math.Abs(float64(wd[x*k+p])) * sb / 2
					mag += math.Abs(float64(wd[x*k+p]) * float64(a[i*k+p]))
				}
				d := math.Abs(float64(got[i*n+x]) - float64(f[i*n+x]))
				worst = max(worst, d/(bound+accumTol(k)*max(1, mag)))
			}
		}
		if worst > q8ActivationTol {
			t.Errorf("k=%d: error %.3g of the activation rounding bound", k, worst)
		}
	}
}

func TestQuantizedVNNIDoesNotAllocate(t *testing.T) {
	requireVNNI(t)
	const m, k, n = 8, 768, 2304
	a, w, dst := randomVec(1, m*k, -1, 1), randomVec(2, k*n, -1, 1), make([]float32, m*n)
	q, s := quant.Int8Cols(w, k, n)
	qp := PackPanels(q, k, n)
	qt, st := quant.Int8Rows(w, n, k)
	for _, r := range []int{1, m} {
		if allocs := testing.AllocsPerRun(5, func() { MatMulPanelsI8(dst[:r*n], a[:r*k], qp, s, nil, r, k, n) }); allocs != 0 {
			t.Errorf("MatMulPanelsI8 rows=%d on the VNNI path: %v allocations, want 0", r, allocs)
		}
		if allocs := testing.AllocsPerRun(5, func() { MatMulTI8(dst[:r*n], a[:r*k], qt, st, nil, r, k, n) }); allocs != 0 {
			t.Errorf("MatMulTI8 rows=%d on the VNNI path: %v allocations, want 0", r, allocs)
		}
	}
}

// BenchmarkDecodeLayersQ8 is BenchmarkDecodeLayers' int8-panels case at 1, 2, 4 and 8 rows:
// each iteration streams the 48 weights once with the float-widening kernels (old) and once
// with quantized activations (vnni), alternated, so both see the same load on a shared machine;
// it reports each one's weight bandwidth and the ratio of their times.
func BenchmarkDecodeLayersQ8(b *testing.B) {
	if !haveVNNI {
		b.Skip("no AVX512-VNNI/VBMI kernels on this CPU or build")
	}
	shapes := [][2]int{{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}}
	type layer struct {
		k, n  int
		qp    []int8
		scale []float32
	}
	var layers []layer
	bytes := 0
	for l := 0; l < 12; l++ {
		for i, s := range shapes {
			w := randomVec(uint64(100*l+i), s[0]*s[1], -1, 1)
			q, sc := quant.Int8Cols(w, s[0], s[1])
			layers = append(layers, layer{k: s[0], n: s[1], qp: PackPanels(q, s[0], s[1]), scale: sc})
			bytes += len(q)
		}
	}
	x, dst := randomVec(1, 8*3072, -1, 1), make([]float32, 8*3072)
	benchOldVNNI(b, bytes, func(rows int) {
		for _, l := range layers {
			MatMulPanelsI8(dst[:rows*l.n], x[:rows*l.k], l.qp, l.scale, nil, rows, l.k, l.n)
		}
	})
}

// BenchmarkLMHeadQ8 is GPT-2's int8 LM head (50257×768, tied embeddings) at 1, 2, 4 and 8 rows,
// old and vnni alternated as in BenchmarkDecodeLayersQ8.
func BenchmarkLMHeadQ8(b *testing.B) {
	if !haveVNNI {
		b.Skip("no AVX512-VNNI/VBMI kernels on this CPU or build")
	}
	const k, n = 768, 50257
	q, s := quant.Int8Rows(randomVec(2, n*k, -1, 1), n, k)
	x, dst := randomVec(1, 8*k, -1, 1), make([]float32, 8*n)
	benchOldVNNI(b, len(q), func(rows int) { MatMulTI8(dst[:rows*n], x[:rows*k], q, s, nil, rows, k, n) })
}

// benchOldVNNI runs f(rows) at 1, 2, 4 and 8 rows, each iteration once with the float-widening
// kernels (old) and once with quantized activations (vnni), so both see the same load on a
// shared machine, and reports each one's weight bandwidth and the ratio of their times.
func benchOldVNNI(b *testing.B, bytes int, f func(rows int)) {
	defer func(v bool) { useVNNI = v }(useVNNI)
	for _, rows := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			var t [2]time.Duration
			for range b.N {
				for v := range t {
					useVNNI = v == 1
					t0 := time.Now()
					f(rows)
					t[v] += time.Since(t0)
				}
			}
			gbs := func(d time.Duration) float64 { return float64(bytes) * float64(b.N) / d.Seconds() / 1e9 }
			b.ReportMetric(gbs(t[0]), "old-GB/s")
			b.ReportMetric(gbs(t[1]), "vnni-GB/s")
			b.ReportMetric(t[0].Seconds()/t[1].Seconds(), "old/vnni")
		})
	}
}

// BenchmarkQ8KernelsInCache measures the kernels themselves, on one goroutine and on weights
// that stay in L2 (768×768 int8 panels; 512 LM-head rows of 768), so that memory bandwidth does
// not hide their cost: per iteration one pass with the float-widening kernel (old) and one with
// quantized activations (vnni, quantization included), each timed, the fastest pass of each
// reported (on a shared machine the fastest is the one least disturbed).
func BenchmarkQ8KernelsInCache(b *testing.B) {
	if !haveVNNI {
		b.Skip("no AVX512-VNNI/VBMI kernels on this CPU or build")
	}
	const k, n = 768, 768
	q, _ := quant.Int8Cols(randomVec(1, k*n, -1, 1), k, n)
	qp := PackPanels(q, k, n)
	qt, st := quant.Int8Rows(randomVec(2, 512*k, -1, 1), 512, k)
	x := randomVec(3, gemvRowsZ*k, -1, 1)
	lq := q8RowBytes(k)
	qa := make([]byte, gemvRowsZ*lq)
	var y [gemvRowsZ * PanelWidth]float32
	lm := make([]float32, gemvRowsZ*512)
	defer func(s, z, v bool) { useSIMD, useAVX512, useVNNI = s, z, v }(useSIMD, useAVX512, useVNNI)
	useSIMD, useAVX512 = true, true
	panels := func(rows int, vnni bool) {
		if vnni {
			quantizeQ8(qa, lq, x, k, rows, k)
		}
		w := weights{i8: qp, panels: true}
		for jp := 0; jp < n/PanelWidth; jp++ {
			off := jp * k * PanelWidth
			switch {
			case vnni:
				gemvPanelQ8(y[:], qa, lq, qp[off:off+k*PanelWidth], k, rows)
			case rows == 1:
				w.gemvPanel(y[:PanelWidth], x[:k], off)
			default:
				w.gemvPanelRows(y[:], x, k, rows, off)
			}
		}
	}
	lmHead := func(rows int, vnni bool) {
		useVNNI = vnni
		j := gemmTJob{m: rows, n: 512, k: k, a: x[:rows*k], w: weights{i8: qt, scale: st}, c: lm}
		if vnni {
			j.lq, j.qa = q8RowBytesT(k), quantizeQ8T(x, rows, k)
		}
		for lo := 0; lo < 512; lo += 64 {
			j.chunk(0, lo, lo+64)
		}
	}
	for _, c := range []struct {
		name  string
		bytes int
		f     func(rows int, vnni bool)
	}{{"panels", k * n, panels}, {"lmhead", 512 * k, lmHead}} {
		for _, rows := range []int{1, 2, 4, 8} {
			b.Run(fmt.Sprintf("%s/rows=%d", c.name, rows), func(b *testing.B) {
				best := [2]time.Duration{time.Hour, time.Hour}
				for range b.N {
					for v := range best {
						t0 := time.Now()
						c.f(rows, v == 1)
						best[v] = min(best[v], time.Since(t0))
					}
				}
				b.ReportMetric(float64(c.bytes)/best[0].Seconds()/1e9, "old-GB/s")
				b.ReportMetric(float64(c.bytes)/best[1].Seconds()/1e9, "vnni-GB/s")
				b.ReportMetric(best[0].Seconds()/best[1].Seconds(), "old/vnni")
			})
		}
	}
}
