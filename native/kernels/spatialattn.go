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
		transposeInto(qt, q[base:base+c*n], c, n)
		for i := range qt {
			qt[i] *= scale
		}
		transposeInto(vt, v[base:base+c*n], c, n)
		for i0 := 0; i0 < n; i0 += rows {
			if stop != nil && stop() {
				return false
			}
			r := min(rows, n-i0)
			Gemm(r, n, c, qt[i0*c:], c, k[base:], n, sc, n, nil)
			Softmax(sc[:r*n], sc[:r*n], n)
			Gemm(r, c, n, sc, n, vt, c, o, c, nil)
			for i := 0; i < r; i++ {
				for ch := 0; ch < c; ch++ {
					out[base+ch*n+i0+i] = o[i*c+ch]
				}
			}
		}
	}
	return true
}

// transposeInto writes dst (cols×rows) = srcᵀ for src (rows×cols).
func transposeInto(dst, src []float32, rows, cols int) {
	for i := 0; i < rows; i++ {
		for j, x := range src[i*cols : (i+1)*cols] {
			dst[j*rows+i] = x
		}
	}
}
