package kernels

import (
	"fmt"
	"math"
	"testing"
)

// TestDecodeVariantsSameBits: the one-row float32 decode paths kept behind switches (LM head per
// row or per chunk, 1 or 2 KiB prefetch, panel tasks by count or by bytes) give the same bits.
func TestDecodeVariantsSameBits(t *testing.T) { bothInner(t, testDecodeVariantsSameBits) }

func testDecodeVariantsSameBits(t *testing.T) {
	const n = 133 // eight whole panels and a partial one; LM-head tasks of 64 rows and a tail
	for _, k := range []int{1, 7, 8, 33, 300, 771} {
		seed := uint64(7100 + k)
		a := randomVec(seed, k, -1, 1)
		w := randomVec(seed+1, k*n, -1, 1)
		bias := randomVec(seed+2, n, -1, 1)
		wp := PackPanels(w, k, n)
		var ref [2][]float32
		for i, v := range []struct {
			rows, pf2k bool
			chunk      int
		}{{false, false, 0}, {true, false, 0}, {true, true, 0}, {true, true, panelChunkBytes}, {false, true, 1}} {
			restore := SetDecodeVariant(v.rows, v.pf2k, v.chunk)
			got := [2][]float32{nanVec(n), nanVec(n)}
			MatMulT(got[0], a, w, bias, 1, k, n)
			MatMulPanels(got[1], a, wp, bias, 1, k, n)
			restore()
			if i == 0 {
				ref = got
				want := make([]float32, n)
				MatMulTNaive(want, a, w, bias, 1, k, n)
				reportClose(t, fmt.Sprintf("MatMulT k=%d", k), got[0], want, accumTol(k))
				continue
			}
			for p, name := range []string{"MatMulT", "MatMulPanels"} {
				for x := range got[p] {
					if math.Float32bits(got[p][x]) != math.Float32bits(ref[p][x]) {
						t.Fatalf("%s k=%d variant %+v: column %d is %v, %v with the first variant", name, k, v, x, got[p][x], ref[p][x])
					}
				}
			}
		}
	}
}
