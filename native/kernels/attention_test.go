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
				mask = leftPadMask(s.B, l)
			}
			want, got := make([]float32, len(q)), nanVec(len(q))
			AttentionNaive(want, q, k, v, mask, s)
			Attention(got, q, k, v, mask, s)
			reportClose(t, fmt.Sprintf("Attention %+v masked=%v", s, masked), got, want, fastVsNaiveTol)
			// The same over a half-precision cache: only the float32 arithmetic differs from
			// the reference, which reads the same rounded keys and values.
			k16, v16 := make([]uint16, len(k)), make([]uint16, len(v))
			NarrowF16(k16, k)
			NarrowF16(v16, v)
			want, got = make([]float32, len(q)), nanVec(len(q))
			AttentionF16Naive(want, q, k16, v16, mask, s)
			AttentionF16(got, q, k16, v16, mask, s)
			reportClose(t, fmt.Sprintf("AttentionF16 %+v masked=%v", s, masked), got, want, fastVsNaiveTol)
		}
	}
}

// leftPadMask is a (B,l) mask of left padding: row b has b+1 padding keys (clamped), so the
// first queries of the padded rows see no unmasked key at all.
func leftPadMask(B, l int) []int64 {
	mask := make([]int64, B*l)
	for b := 0; b < B; b++ {
		for j := 0; j < l; j++ {
			if j >= min(b+1, l-1) {
				mask[b*l+j] = 1
			}
		}
	}
	return mask
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

// TestSplitQKV: SplitQKV puts every query, key and value where the layouts say, and nothing
// else of the cache changes.
func TestSplitQKV(t *testing.T) {
	for _, s := range []AttentionShape{{B: 2, T: 3, H: 2, D: 5, P: 4, S: 9}, {B: 1, T: 64, H: 12, D: 64, P: 0, S: 70}} {
		c := s.H * s.D
		qkv := randomVec(1, s.B*s.T*3*c, -1, 1)
		q := nanVec(s.B * s.T * c)
		k, v := randomVec(2, s.B*s.H*s.S*s.D, -1, 1), randomVec(3, s.B*s.H*s.S*s.D, -1, 1)
		wantK, wantV := append([]float32(nil), k...), append([]float32(nil), v...)
		for b := 0; b < s.B; b++ {
			for t := 0; t < s.T; t++ {
				for h := 0; h < s.H; h++ {
					for e := 0; e < s.D; e++ {
						at := ((b*s.H+h)*s.S+s.P+t)*s.D + e
						wantK[at] = qkv[(b*s.T+t)*3*c+c+h*s.D+e]
						wantV[at] = qkv[(b*s.T+t)*3*c+2*c+h*s.D+e]
					}
				}
			}
		}
		SplitQKV(q, k, v, qkv, s)
		for i := range q {
			if want := qkv[i/c*3*c+i%c]; q[i] != want {
				t.Fatalf("%+v: q[%d] = %g, want %g", s, i, q[i], want)
			}
		}
		for i := range k {
			if k[i] != wantK[i] || v[i] != wantV[i] {
				t.Fatalf("%+v: cache value %d: k %g want %g, v %g want %g", s, i, k[i], wantK[i], v[i], wantV[i])
			}
		}
	}
}
