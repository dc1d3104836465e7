package ort

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/modelrt/modelrt/native/gpt2"
)

// TestMatchesNative runs every fixture graph and the native engine (native/gpt2 on gpt2-odd, the
// weights the graphs were exported from) side by side: the left-padded reference batch as a
// prefill, then decode steps feeding both the native argmax; logits agree within logitsTol at
// every step, and so do the argmax tokens.
func TestMatchesNative(t *testing.T) {
	native, err := gpt2.Load(filepath.Join(modelsDir, "gpt2-odd"))
	if err != nil {
		t.Fatal(err)
	}
	const steps = 6
	for _, fx := range fixtures {
		t.Run(fx.dir, func(t *testing.T) {
			lm := loadFixture(t, fx.dir)
			ref := loadReference(t, filepath.Join(modelsDir, fx.dir))
			V := oddVocab
			s := newSession(t, lm, 2)
			c := native.NewCache(2)
			ids, mask, T := ref.ids, append([]int64(nil), ref.mask...), ref.T
			for step := 0; step <= steps; step++ {
				got := make([]float32, 2*V)
				want := make([]float32, 2*V)
				if err := s.Forward(context.Background(), ids, 2, T, mask, true, got); err != nil {
					t.Fatalf("ort step %d: %v", step, err)
				}
				if err := native.Forward(c, ids, 2, T, mask, true, want); err != nil {
					t.Fatalf("native step %d: %v", step, err)
				}
				compare(t, fmt.Sprintf("step %d", step), got, want, logitsTol)
				next := make([]int64, 2)
				for b := 0; b < 2; b++ {
					next[b] = int64(argmax(want[b*V : (b+1)*V]))
					if g := argmax(got[b*V : (b+1)*V]); int64(g) != next[b] {
						t.Fatalf("step %d row %d: ort argmax %d, native %d", step, b, g, next[b])
					}
				}
				ids, mask, T = next, growMask(mask, 2, s.Len()), 1
			}
		})
	}
}

// growMask appends an attended column to mask (B,held), returning (B,held+1).
func growMask(mask []int64, B, held int) []int64 {
	out := make([]int64, 0, B*(held+1))
	for b := 0; b < B; b++ {
		out = append(out, mask[b*held:(b+1)*held]...)
		out = append(out, 1)
	}
	return out
}

func argmax(v []float32) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}
