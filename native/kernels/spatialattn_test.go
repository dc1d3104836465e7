package kernels

import (
	"fmt"
	"math"
	"testing"
)

func TestSpatialAttentionMatchesNaive(t *testing.T) {
	// n = 1100 exceeds attnScoreBudget/n rows per block: exercises query blocking.
	for i, sz := range [][3]int{{2, 5, 37}, {1, 1, 1}, {1, 16, 64}, {1, 3, 1100}} {
		b, c, n := sz[0], sz[1], sz[2]
		t.Run(fmt.Sprintf("B%d_C%d_N%d", b, c, n), func(t *testing.T) {
			q := randomVec(uint64(i+1), b*c*n, -2, 2)
			k := randomVec(uint64(i+2), b*c*n, -2, 2)
			v := randomVec(uint64(i+3), b*c*n, -1, 1)
			scale := float32(1 / math.Sqrt(float64(c)))
			want, got := make([]float32, b*c*n), make([]float32, b*c*n)
			SpatialAttentionNaive(want, q, k, v, b, c, n, scale)
			SpatialAttention(got, q, k, v, b, c, n, scale)
			reportClose(t, "spatial attention", got, want, fastVsNaiveTol)
		})
	}
}

// TestSpatialAttentionUniform pins the reference: with all-equal scores every output is the mean
// of v over positions.
func TestSpatialAttentionUniform(t *testing.T) {
	q := make([]float32, 3)
	v := []float32{1, 2, 6}
	out := make([]float32, 3)
	SpatialAttentionNaive(out, q, q, v, 1, 1, 3, 1)
	reportClose(t, "uniform attention", out, []float32{3, 3, 3}, 1e-7)
}

// TestSpatialSoftmaxMatchesNaive holds spatialSoftmax (the AVX2 exponentials) to SoftmaxNaive on
// rows that are and are not whole groups of 8, with scores over a wide range.
func TestSpatialSoftmaxMatchesNaive(t *testing.T) {
	for i, n := range []int{1, 7, 64, 1029} {
		x := randomVec(uint64(i+40), 5*n, -30, 30)
		want, got := make([]float32, len(x)), append([]float32(nil), x...)
		SoftmaxNaive(want, x, n)
		spatialSoftmax(got, n)
		reportClose(t, fmt.Sprintf("softmax width %d", n), got, want, fastVsNaiveTol)
	}
}
