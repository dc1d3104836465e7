package kernels

import (
	"math"
	"testing"
)

// TestAddMatchesNaive holds Add to AddNaive bit for bit on a length the pool splits.
func TestAddMatchesNaive(t *testing.T) {
	src := randomVec(5, 1<<17+3, -1, 1)
	want, got := randomVec(6, len(src), -1, 1), randomVec(6, len(src), -1, 1)
	AddNaive(want, src)
	Add(got, src)
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("[%d] = %g, AddNaive gives %g", i, got[i], want[i])
		}
	}
}
