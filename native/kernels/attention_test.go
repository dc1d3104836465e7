package kernels

import (
	"fmt"
	"testing"
)

func TestAttentionMatchesNaive(t *testing.T) { bothInner(t, testAttentionMatchesNaive) }

func testAttentionMatchesNaive(t *testing.T) {
	shapes := []AttentionShape{
		{B: 1, T: 1, H: 1, D: 1, P: 0, S: 1},
		{B: 1, T: 1, H: 12, D: 64, P: 100, S: 128},  // a decode step
		{B: 2, T: 17, H: 3, D: 16, P: 0, S: 17},     // prefill, 3 heads
		{B: 3, T: 5, H: 2, D: 7, P: 11, S: 65},      // continuation after a cached prefix
		{B: 1, T: 65, H: 4, D: 3, P: 2, S: 127},     // many queries, tiny heads
		{B: 2, T: 130, H: 12, D: 64, P: 0, S: 1024}, // parallel path
		{B: 2, T: 9, H: 2, D: 64, P: 70, S: 100},    // a prefill chunk after 70 cached positions
	}
	for i, s := range shapes {
		for _, masked := range []bool{false, true} {
			l := s.P + s.T
			q := randomVec(uint64(i), s.B*s.T*s.H*s.D, -1, 1)
			k := randomVec(uint64(i+100), s.B*s.H*s.S*s.D, -1, 1)
			v := randomVec(uint64(i+200), s.B*s.H*s.S*s.D, -1, 1)
			var mask []int64
			if masked {
				// left padding: row b has b+1 padding keys (clamped), so the first queries of
				// the padded rows see no unmasked key at all
				mask = make([]int64, s.B*l)
				for b := 0; b < s.B; b++ {
					for j := 0; j < l; j++ {
						if j >= min(b+1, l-1) {
							mask[b*l+j] = 1
						}
					}
				}
			}
			want, got := make([]float32, len(q)), nanVec(len(q))
			AttentionNaive(want, q, k, v, mask, s)
			Attention(got, q, k, v, mask, s)
			reportClose(t, fmt.Sprintf("Attention %+v masked=%v", s, masked), got, want, fastVsNaiveTol)
		}
	}
}

// TestAttentionSingleKey: with one visible key the output is that key's value, whatever the
// scores; with a padded key the padded value must not leak into the next query.
func TestAttentionSingleKey(t *testing.T) {
	s := AttentionShape{B: 1, T: 2, H: 1, D: 2, P: 0, S: 2}
	q := []float32{5, -3, 1, 1}
	k := []float32{1, 2, 3, 4}
	v := []float32{10, 20, 30, 40}
	got := make([]float32, 4)
	Attention(got, q, k, v, []int64{0, 1}, s)
	// query 0 sees only padded key 0: uniform over {0} → v0; query 1 sees only key 1 → v1.
	reportClose(t, "single key", got, []float32{10, 20, 30, 40}, 1e-6)
}
