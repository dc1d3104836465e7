package kernels

import (
	"fmt"
	"math"
)

func checkSpatialAttention(out, q, k, v []float32, b, c, n int) {
	if b <= 0 || c <= 0 || n <= 0 || len(q) != b*c*n || len(k) != b*c*n || len(v) != b*c*n || len(out) != b*c*n {
		panic(fmt.Sprintf("kernels: spatial attention: out/q/k/v have %d/%d/%d/%d values, want B·C·N = %d·%d·%d",
			len(out), len(q), len(k), len(v), b, c, n))
	}
}

// SpatialAttentionNaive is the reference single-head attention over the N = H·W positions of a
// feature map, in float64. q, k, v, out: (B,C,N), channel-major as NCHW activations hold them:
//
//	p[b,i,j]   = softmax_j(scale · Σ_d q[b,d,i]·k[b,d,j])
//	out[b,c,i] = Σ_j p[b,i,j] · v[b,c,j]
//
// The VAE's mid block uses scale = 1/sqrt(C). It panics when a length does not match.
func SpatialAttentionNaive(out, q, k, v []float32, b, c, n int, scale float32) {
	checkSpatialAttention(out, q, k, v, b, c, n)
	s := make([]float64, n)
	for bi := 0; bi < b; bi++ {
		base := bi * c * n
		for i := 0; i < n; i++ {
			mx := math.Inf(-1)
			for j := 0; j < n; j++ {
				var dot float64
				for d := 0; d < c; d++ {
					dot += float64(q[base+d*n+i]) * float64(k[base+d*n+j])
				}
				s[j] = dot * float64(scale)
				mx = max(mx, s[j])
			}
			var sum float64
			for j := range s {
				s[j] = math.Exp(s[j] - mx)
				sum += s[j]
			}
			for ch := 0; ch < c; ch++ {
				var acc float64
				for j := 0; j < n; j++ {
					acc += s[j] * float64(v[base+ch*n+j])
				}
				out[base+ch*n+i] = float32(acc / sum)
			}
		}
	}
}

// attnScoreBudget bounds the score block (in float32 values, 4 MiB): queries are processed in
// blocks of rows so that a 64×64 latent (N = 4096) does not need an N×N matrix at once.
const attnScoreBudget = 1 << 20

// SpatialAttention computes the same as SpatialAttentionNaive with matrix products: per batch
// item, q is transposed to (N,C) and scaled once, v transposed to (N,C); then for each block of
// query rows S = (scale·qᵀ[rows])·k (rows×N), softmax over each row, O = S·vᵀ (rows×C), written
// back channel-major. It panics when a length does not match.
func SpatialAttention(out, q, k, v []float32, b, c, n int, scale float32) {
	SpatialAttentionStoppable(out, q, k, v, b, c, n, scale, nil)
}

// SpatialAttentionStoppable is SpatialAttention that calls stop (when not nil) before each
// block of query rows and returns false, leaving out partly written, as soon as it reports
// true: the quadratic attention of a large feature map (N = 16384 positions for a 128×128
// latent) is the longest single step of a VAE, and a cancelled call must not wait for it.
func SpatialAttentionStoppable(out, q, k, v []float32, b, c, n int, scale float32, stop func() bool) bool {
	checkSpatialAttention(out, q, k, v, b, c, n)
	rows := max(1, min(n, attnScoreBudget/n))
	qt := make([]float32, n*c)
	vt := make([]float32, n*c)
	sc := make([]float32, rows*n)
	o := make([]float32, rows*c)
	for bi := 0; bi < b; bi++ {
		base := bi * c * n
		transposeScaled(qt, q[base:base+c*n], c, n, scale)
		transposeScaled(vt, v[base:base+c*n], c, n, 1)
		for i0 := 0; i0 < n; i0 += rows {
			if stop != nil && stop() {
				return false
			}
			r := min(rows, n-i0)
			Gemm(r, n, c, qt[i0*c:], c, k[base:], n, sc, n, nil)
			spatialSoftmax(sc[:r*n], n)
			Gemm(r, c, n, sc, n, vt, c, o, c, nil)
			parallelRange(c, r, func(lo, hi int) {
				for ch := lo; ch < hi; ch++ {
					dst := out[base+ch*n+i0:][:r]
					for i := range dst {
						dst[i] = o[i*c+ch]
					}
				}
			})
		}
	}
	return true
}

// transposeScaled writes dst (cols×rows) = scale·srcᵀ for src (rows×cols), on the worker pool
// in blocks of 16 destination rows (whose writes then stay within a few cache lines per source
// row).
func transposeScaled(dst, src []float32, rows, cols int, scale float32) {
	const blk = 16
	parallelRange((cols+blk-1)/blk, blk*rows, func(lo, hi int) {
		for i := 0; i < rows; i++ {
			row := src[i*cols : (i+1)*cols]
			for j := lo * blk; j < min(cols, hi*blk); j++ {
				dst[j*rows+i] = row[j] * scale
			}
		}
	})
}

// spatialSoftmax is Softmax over the rows of width n of s in place, on the worker pool, with
// the exponentials 8 lanes at a time on AVX2 (expSubSumAVX2, Cephes' expf: about 1 ulp) and the
// row sum in float64 from the lanes' float32 sums.
func spatialSoftmax(s []float32, n int) {
	if !useSIMD {
		Softmax(s, s, n)
		return
	}
	parallelRange(len(s)/n, 2*n, func(lo, hi int) {
		var lanes [8]float32
		for r := lo; r < hi; r++ {
			row := s[r*n : (r+1)*n]
			m := float32(math.Inf(-1))
			for _, e := range row {
				m = max(m, e)
			}
			n8 := n &^ 7
			expSubSumAVX2(row[:n8], row[:n8], m, lanes[:])
			var sum float64
			for _, l := range lanes {
				sum += float64(l)
			}
			for i, e := range row[n8:] {
				v := float32(math.Exp(float64(e - m)))
				row[n8+i] = v
				sum += float64(v)
			}
			inv := float32(1 / sum)
			for i := range row {
				row[i] *= inv
			}
		}
	})
}
