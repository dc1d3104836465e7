package gpt2

import (
	"math"
	"testing"
	"unsafe"

	"github.com/modelrt/modelrt/sdk/modeldir/quant"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// inMem reports whether s lies inside the model's weight mapping.
func inMem(m *Model, s []float32) bool {
	if m.mem == nil || m.mem.h == nil || len(s) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(m.mem.h.Base()))
	p := uintptr(unsafe.Pointer(&s[0]))
	return p >= lo && p+4*uintptr(len(s)) <= lo+uintptr(m.mem.h.Len())
}

// TestWeightsOffHeapSameLogits loads the fixtures (tied and untied LM heads) with the float32
// matrices in the huge-page mapping and on the Go heap: the mapping must hold every one of them,
// and the logits must be bit-identical.
func TestWeightsOffHeapSameLogits(t *testing.T) {
	for _, name := range []string{"gpt2-odd", "gpt2-odd-dual", "gpt2-tiny"} {
		t.Run(name, func(t *testing.T) {
			dir := fixtureDir(name)
			if name == "gpt2-odd-dual" {
				dir = untiedDir(t)
			}
			weightsOffHeap = false
			heap, err := Load(dir)
			weightsOffHeap = true
			if err != nil {
				t.Fatal(err)
			}
			off, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if heap.mem != nil {
				t.Fatal("weightsOffHeap = false: the model has a weight mapping")
			}
			if !inMem(off, off.WTE) || !inMem(off, off.LMHead) {
				t.Fatal("wte / lm_head are not in the weight mapping")
			}
			for i := range off.Blocks {
				for j, l := range off.Blocks[i].linears() {
					if !inMem(off, l.Q.F32) {
						t.Fatalf("block %d linear %d is not in the weight mapping", i, j)
					}
				}
			}
			if got, want := off.WeightBytes(), heap.WeightBytes(); got != want {
				t.Errorf("WeightBytes %d off the heap, %d on it", got, want)
			}
			a, b := forwardAll(t, heap), forwardAll(t, off)
			for i := range a {
				if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
					t.Fatalf("logit %d: %v on the heap, %v off it", i, a[i], b[i])
				}
			}
		})
	}
}

// TestQuantizeFreesWeightMem: quantizing a float32 model unmaps its float32 matrices.
func TestQuantizeFreesWeightMem(t *testing.T) {
	m, err := Load(fixtureDir("gpt2-odd"))
	if err != nil {
		t.Fatal(err)
	}
	if m.mem == nil || m.mem.h == nil {
		t.Fatal("no weight mapping after Load")
	}
	if err := m.Quantize(quant.Int8); err != nil {
		t.Fatal(err)
	}
	if m.mem.h != nil {
		t.Fatal("the weight mapping outlives Quantize")
	}
	forwardAll(t, m)
}

// forwardAll returns the logits of every position of a fixed 5-token prompt.
func forwardAll(t *testing.T, m *Model) []float32 {
	t.Helper()
	cfg := m.Config()
	ids := []int64{1, 7, 3, int64(cfg.VocabSize - 1), 0}
	c := m.NewCache(1)
	defer c.Release()
	out := make([]float32, len(ids)*cfg.VocabSize)
	if err := m.Forward(c, ids, 1, len(ids), nil, false, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// untiedDir is gpt2-odd with its own lm_head.weight (wte's values, negated).
func untiedDir(t *testing.T) string {
	return modelDir(t, func(dir string) {
		rewriteTensors(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
			for _, x := range ts {
				if x.Name == "transformer.wte.weight" {
					neg := make([]float32, len(x.F32))
					for i, v := range x.F32 {
						neg[i] = -v
					}
					return append(ts, safetensors.Tensor{Name: "lm_head.weight", DType: x.DType, Shape: x.Shape, F32: neg})
				}
			}
			t.Fatal("no transformer.wte.weight")
			return nil
		})
	})
}
