package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Quantized activations for the int8 decode products (llama.cpp's Q8 scheme): where the CPU has
// AVX512-VNNI and VBMI (useVNNI), a product of few rows with int8 weights in panels quantizes
// each row of activations once per call, per block of q8Block values of k, to int8 with one
// float32 scale per block (absmax/127, round to nearest even), and the gemvPanelQ8x*VNNI kernels
// sum q_a·q_w exactly in int32 (VPDPBUSD) before one conversion to float per block:
//
//	y[x] = scale_w[x] · Σ_b scale_b · Σ_{p in block b} q_a[p]·q_w[p,x]   (+ bias[x])
//
// A row of activations is stored as ⌈k/q8Block⌉ records of q8Rec bytes: the block's q8Block int8
// values (zero past k), its float32 scale and the int32 −128·Σq of the block (little endian).
// The kernel adds 128 to each weight byte to use VPDPBUSD's unsigned operand, and starts each
// block's sums from −128·Σq, so they end exactly Σ q_a·q_w. The LM head (MatMulTI8 with int8
// weights) does the same with the dotQ8x*VNNI kernels over its own layout
// of the activations (quantizeQ8T).
//
// q8Block and q8Rec must match scripts/gen-kernels/vnni.go.
const (
	q8Block = 16
	q8Rec   = q8Block + 8
)

// useVNNI routes int8 panel products and int8 LM heads of any row count (decode and prefill) to
// the quantized-activation kernels. Tests turn it off to test the float-widening kernels, which every other
// CPU (and -tags purego) runs.
var useVNNI = haveVNNI

// q8Scratch and q8ScratchT hold the quantized rows of the current product; used only under
// thePool.mu (the caller of gemmW or matMulTW fills them before the pool's workers read them).
var q8Scratch, q8ScratchT []byte

// growBytes returns s resized to n, reallocating only when its capacity is short.
func growBytes(s []byte, n int) []byte {
	if cap(s) < n {
		return make([]byte, n)
	}
	return s[:n]
}

// q8RowBytes is the size of one quantized row of k activations.
func q8RowBytes(k int) int { return (k + q8Block - 1) / q8Block * q8Rec }

// q8Round is 1.5·2²³: for |x| ≤ 2²², (x + q8Round) − q8Round is x rounded to the nearest
// integer, ties to even, in float32 arithmetic (what VCVTPS2DQ does).
const q8Round = 12582912

// quantizeQ8 writes m rows of a (row i at a[i·lda:], k values) as quantized records, row i at
// dst[i·ld:] (ld ≥ q8RowBytes(k)): whole blocks with quantizeQ8AVX512 where the VNNI kernels
// run, the rest (and everything elsewhere) with quantizeQ8Go, which writes the same bytes.
func quantizeQ8(dst []byte, ld int, a []float32, lda, m, k int) {
	if m > 0 && (len(a) < (m-1)*lda+k || len(dst) < (m-1)*ld+q8RowBytes(k)) {
		panic(fmt.Sprintf("kernels: quantizeQ8: %d values (stride %d) or %d bytes (stride %d) for %d rows of %d", len(a), lda, len(dst), ld, m, k))
	}
	for i := 0; i < m; i++ {
		row, recs := a[i*lda:][:k], dst[i*ld:][:q8RowBytes(k)]
		whole := 0
		if haveVNNI {
			if whole = k / q8Block; whole > 0 {
				quantizeQ8AVX512(recs, row, whole)
			}
		}
		quantizeQ8Go(recs[whole*q8Rec:], row[whole*q8Block:])
	}
}

// quantizeQ8Go writes the records of one row of activations (blocks of q8Block).
func quantizeQ8Go(recs []byte, row []float32) {
	for b0 := 0; b0 < len(row); b0 += q8Block {
		r := recs[b0/q8Block*q8Rec:][:q8Rec]
		clear(r[:q8Block])
		scale, sum := quantizeBlock(r, row[b0:min(b0+q8Block, len(row))])
		binary.LittleEndian.PutUint32(r[q8Block:], math.Float32bits(scale))
		binary.LittleEndian.PutUint32(r[q8Block+4:], uint32(-128*sum))
	}
}

// quantizeBlock sets q[p] to the int8 value of blk[p] and returns the block's scale and Σq:
// amax is the largest |v| taken as the unsigned maximum of the bit patterns of |v| (a NaN wins,
// then ±Inf), the scale amax/127, and q = round-to-nearest-even(v·(127/amax)) — or 0 when amax
// is 0 or not finite (the scale, 0, Inf or NaN, then makes the outputs 0 or NaN as the float path
// would). quantizeQ8AVX512 does the same operations.
func quantizeBlock(q []byte, blk []float32) (scale float32, sum int32) {
	var bits uint32
	for _, v := range blk {
		bits = max(bits, math.Float32bits(v)&^(1<<31))
	}
	amax := math.Float32frombits(bits)
	if bits-1 <= 0x7f7ffffe { // 0 < amax ≤ MaxFloat32
		inv := 127 / amax
		for p, v := range blk {
			x := float32(v*inv) + q8Round
			qv := int32(x - q8Round)
			q[p] = byte(int8(qv))
			sum += qv
		}
	}
	return amax / 127, sum
}

// q8Scale returns the float32 scale of the block record r.
func q8Scale(r []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(r[q8Block:])) }

// gemvPanelQ8 sets y[16i:16i+16] (i < rows, 1 ≤ rows ≤ gemvRowsZ) to the quantized product of
// rows quantized activation rows (row i at qa[i·lda:]) and one int8 weight panel w (k rows of
// 16), unscaled by the weights' scales, with the gemvPanelQ8x*VNNI kernels.
func gemvPanelQ8(y []float32, qa []byte, lda int, w []int8, k, rows int) {
	if rows < 1 || rows > gemvRowsZ || len(w) != k*PanelWidth || len(y) < rows*PanelWidth || len(qa) < (rows-1)*lda+q8RowBytes(k) {
		panic(fmt.Sprintf("kernels: gemvPanelQ8: %d rows, k=%d, %d weights, %d outputs, %d activation bytes (stride %d)", rows, k, len(w), len(y), len(qa), lda))
	}
	rem := k % q8Block
	blocks, steps, mask := k/q8Block, rem/4, uint64(1)<<(16*(rem%4))-1
	switch rows {
	case 1:
		gemvPanelQ8x1VNNI(y, qa, lda, w, blocks, steps, mask)
	case 2:
		gemvPanelQ8x2VNNI(y, qa, lda, w, blocks, steps, mask)
	case 3:
		gemvPanelQ8x3VNNI(y, qa, lda, w, blocks, steps, mask)
	case 4:
		gemvPanelQ8x4VNNI(y, qa, lda, w, blocks, steps, mask)
	case 5:
		gemvPanelQ8x5VNNI(y, qa, lda, w, blocks, steps, mask)
	case 6:
		gemvPanelQ8x6VNNI(y, qa, lda, w, blocks, steps, mask)
	case 7:
		gemvPanelQ8x7VNNI(y, qa, lda, w, blocks, steps, mask)
	default:
		gemvPanelQ8x8VNNI(y, qa, lda, w, blocks, steps, mask)
	}
}

// gemvPanelQ8Naive is the reference for gemvPanelQ8: per row and column, each block's Σ q_a·q_w
// in int32 (exact), converted to float32 and added times the block scale with one rounding
// (fma32), blocks in order from zero — the kernel's float operations in the kernel's order, so
// the two agree bit for bit.
func gemvPanelQ8Naive(y []float32, qa []byte, lda int, w []int8, k, rows int) {
	for i := 0; i < rows; i++ {
		recs := qa[i*lda:]
		for x := 0; x < PanelWidth; x++ {
			var f float32
			for b0 := 0; b0 < k; b0 += q8Block {
				r := recs[b0/q8Block*q8Rec:][:q8Rec]
				var s int32
				for p := b0; p < min(b0+q8Block, k); p++ {
					s += int32(int8(r[p-b0])) * int32(w[p*PanelWidth+x])
				}
				f = fma32(float32(s), q8Scale(r), f)
			}
			y[i*PanelWidth+x] = f
		}
	}
}

// fma32 returns a·b + c rounded once to float32 (to nearest, ties to even), as VFMADD231PS
// computes it. a·b is exact in float64 (24+24 bits); p + c is exactly s + e (Knuth's TwoSum);
// rounding s to float32 is then right unless s lies exactly halfway between two float32 values,
// where the sign of e decides.
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	s := p + float64(c)
	bp := s - p
	e := (p - (s - bp)) + (float64(c) - bp)
	r := float32(s)
	d := s - float64(r)
	if e == 0 || d == 0 || math.IsInf(s, 0) || math.IsNaN(s) {
		return r
	}
	other := math.Nextafter32(r, float32(math.Copysign(math.Inf(1), d)))
	if (float64(r)+float64(other))/2 != s {
		return r
	}
	if (e > 0) == (d > 0) {
		return other
	}
	return r
}

// The LM head (MatMulTI8: weights one output per row, k contiguous int8 values) reads each row
// of quantized activations in groups of 64 k (one ZMM of weight bytes) of q8RecT bytes: the 64
// int8 values, then per dword lane (4 consecutive k) the int32 −128·Σ of its 4 values, then per
// lane the float32 scale of the block the lane lies in. Must match scripts/gen-kernels/vnni.go.
const (
	q8RecT  = 3 * 64
	q8RowsT = 4 // most rows of activations per dotQ8x*VNNI pass
)

// q8RowBytesT is the size of one row of k activations in the LM head's layout.
func q8RowBytesT(k int) int { return (k + 63) / 64 * q8RecT }

// dotQ8 sets y[8x+i] (x < n, i < rows ≤ q8RowsT) to the quantized-activation dot product of
// activation row i (LM head layout, at qa[i·lda:]) and weight row x (w[x·k:], k int8 values),
// unscaled by the weights' scales, with the dotQ8x*VNNI kernels.
func dotQ8(y []float32, qa []byte, lda int, w []int8, k, n, rows int) {
	if rows < 1 || rows > q8RowsT || len(w) < n*k || len(y) < 8*n || len(qa) < (rows-1)*lda+q8RowBytesT(k) {
		panic(fmt.Sprintf("kernels: dotQ8: %d rows, k=%d, n=%d, %d weights, %d outputs, %d activation bytes (stride %d)", rows, k, n, len(w), len(y), len(qa), lda))
	}
	groups, mask := k/64, uint64(1)<<(k%64)-1
	switch rows {
	case 1:
		dotQ8x1VNNI(y, qa, lda, w, k, n, groups, mask)
	case 2:
		dotQ8x2VNNI(y, qa, lda, w, k, n, groups, mask)
	case 3:
		dotQ8x3VNNI(y, qa, lda, w, k, n, groups, mask)
	default:
		dotQ8x4VNNI(y, qa, lda, w, k, n, groups, mask)
	}
}

// dotQ8Naive is the reference for dotQ8: per lane, each group's Σ q·w in int32 (exact) added
// times the lane's scale with one rounding (fma32), groups in order; then the lanes added in the
// kernel's tree (l + l+8, + l+4, + l+2, + l+1).
func dotQ8Naive(y []float32, qa []byte, lda int, w []int8, k, n, rows int) {
	for i := 0; i < rows; i++ {
		for x := 0; x < n; x++ {
			var f [16]float32
			for g := 0; g*64 < k; g++ {
				d := qa[i*lda+g*q8RecT:][:q8RecT]
				for lane := range f {
					var s int32
					for t := 0; t < 4; t++ {
						if p := g*64 + 4*lane + t; p < k {
							s += int32(int8(d[4*lane+t])) * int32(w[x*k+p])
						}
					}
					f[lane] = fma32(float32(s), math.Float32frombits(binary.LittleEndian.Uint32(d[128+4*lane:])), f[lane])
				}
			}
			for h := 8; h >= 1; h /= 2 {
				for l := 0; l < h; l++ {
					f[l] += f[l+h]
				}
			}
			y[8*x+i] = f[0]
		}
	}
}

// quantizeQ8T quantizes m rows of a (k values each) into q8ScratchT in the LM head's layout, row
// i at [i·q8RowBytesT(k):], and returns it. The caller holds thePool.mu.
func quantizeQ8T(a []float32, m, k int) []byte {
	ldT := q8RowBytesT(k)
	q8ScratchT = growBytes(q8ScratchT, m*ldT)
	for i := 0; i < m; i++ {
		quantizeQ8TGo(q8ScratchT[i*ldT:][:ldT], a[i*k:][:k], q8BlockT)
	}
	return q8ScratchT
}

// q8BlockT is the block of the LM head's activations: the kernel applies one scale per dword
// lane (4 k), so any multiple of 4 dividing 64 costs the same there; 8 measured the smallest
// logit error on the demo model (docs/kernels.md).
const q8BlockT = 8

// quantizeQ8TGo writes one row of activations in the LM head's layout with blocks of bt values
// (a multiple of 4 dividing 64), each quantized by quantizeBlock.
func quantizeQ8TGo(dst []byte, row []float32, bt int) {
	k := len(row)
	for g := 0; g*64 < k; g++ {
		d := dst[g*q8RecT:][:q8RecT]
		clear(d)
		for b0 := g * 64; b0 < min(g*64+64, k); b0 += bt {
			scale, _ := quantizeBlock(d[b0-g*64:], row[b0:min(b0+bt, k)])
			for lane := (b0 - g*64) / 4; lane < (b0-g*64+bt)/4; lane++ {
				binary.LittleEndian.PutUint32(d[128+4*lane:], math.Float32bits(scale))
			}
		}
		for lane := 0; lane < 16; lane++ {
			var sum int32
			for t := 0; t < 4; t++ {
				sum += int32(int8(d[4*lane+t]))
			}
			binary.LittleEndian.PutUint32(d[64+4*lane:], uint32(-128*sum))
		}
	}
}

// chunkQ8 is gemmTJob.chunk on the VNNI path: W's rows [lo,hi) in pieces of 64 (48 KiB of
// GPT-2's LM head, which stay in L1/L2 while the groups of q8RowsT activation rows go by), each
// output scaled by its row's scale and biased as the float path does.
func (j *gemmTJob) chunkQ8(lo, hi int) {
	const piece = 64
	var y [piece * 8]float32
	for x0 := lo; x0 < hi; x0 += piece {
		nx := min(piece, hi-x0)
		for i := 0; i < j.m; {
			r := min(q8RowsT, j.m-i)
			dotQ8(y[:], j.qa[i*j.lq:], j.lq, j.w.i8[x0*j.k:(x0+nx)*j.k], j.k, nx, r)
			for q := 0; q < r; q++ {
				cq := j.c[(i+q)*j.n+x0:][:nx]
				for x := range cq {
					v := y[8*x+q] * j.w.scale[x0+x]
					if j.bias != nil {
						v += j.bias[x0+x]
					}
					cq[x] = v
				}
			}
			i += r
		}
	}
}
