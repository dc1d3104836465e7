package kernels

import "testing"

// TestSpatialAttentionStops: stop is asked before each block of query rows; once it says so,
// no further block is computed. Without a stop the result is SpatialAttention's.
func TestSpatialAttentionStops(t *testing.T) {
	const b, c, n = 1, 2, 4096 // 4 blocks of 256 query rows (attnScoreBudget / n)
	q, k, v := make([]float32, b*c*n), make([]float32, b*c*n), make([]float32, b*c*n)
	for i := range q {
		q[i], k[i], v[i] = float32(i%7)/7, float32(i%5)/5, float32(i%3)/3
	}
	out := make([]float32, b*c*n)
	asked := 0
	if SpatialAttentionStoppable(out, q, k, v, b, c, n, 0.5, func() bool { asked++; return asked == 2 }) {
		t.Fatal("SpatialAttentionStoppable ran to the end although stop said so")
	}
	if asked != 2 {
		t.Errorf("stop was asked %d times, want 2 (the second block stops it)", asked)
	}
	want := make([]float32, b*c*n)
	SpatialAttention(want, q, k, v, b, c, n, 0.5)
	got := make([]float32, b*c*n)
	if !SpatialAttentionStoppable(got, q, k, v, b, c, n, 0.5, func() bool { return false }) {
		t.Fatal("SpatialAttentionStoppable stopped without being told")
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("out[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}
