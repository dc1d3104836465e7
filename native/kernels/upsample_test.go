package kernels

import (
	"fmt"
	"testing"
)

func TestUpsampleNearest2xMatchesNaive(t *testing.T) {
	for _, sz := range [][3]int{{3, 5, 7}, {1, 1, 1}, {64, 9, 4}} {
		n, h, w := sz[0], sz[1], sz[2]
		inp := randomVec(5, n*h*w, -1, 1)
		want, got := make([]float32, 4*n*h*w), make([]float32, 4*n*h*w)
		UpsampleNearest2xNaive(want, inp, n, h, w)
		UpsampleNearest2x(got, inp, n, h, w)
		reportClose(t, fmt.Sprintf("upsample %v", sz), got, want, 0)
	}
	out := make([]float32, 8)
	UpsampleNearest2xNaive(out, []float32{1, 2}, 1, 1, 2)
	reportClose(t, "upsample known values", out, []float32{1, 1, 2, 2, 1, 1, 2, 2}, 0)
}
