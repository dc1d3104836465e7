package gpt2

import (
	"math"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/modelrt/modelrt/sdk/modeldir/quant"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// inMem reports whether s lies inside the model's weight mapping.
func inMem[T float32 | int8 | uint16](m *Model, s []T) bool {
	if m.mem == nil || m.mem.h == nil || len(s) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(m.mem.h.Base()))
	p := uintptr(unsafe.Pointer(&s[0]))
	return p >= lo && p+unsafe.Sizeof(s[0])*uintptr(len(s)) <= lo+uintptr(m.mem.h.Len())
}

// qInMem reports whether q's values (and scales) lie inside the model's weight mapping.
func qInMem(m *Model, q *QWeights) bool {
	switch q.DType {
	case quant.Int8:
		return inMem(m, q.I8) && inMem(m, q.Scale)
	case quant.F16:
		return inMem(m, q.F16)
	}
	return inMem(m, q.F32)
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
			heap, off := loadHeapAndOff(t, dir)
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
			sameForward(t, heap, off)
		})
	}
}

// TestQuantizeFreesWeightMem: quantizing a float32 model unmaps its float32 matrices and puts
// the quantized ones (with their scales) in a mapping of their own.
func TestQuantizeFreesWeightMem(t *testing.T) {
	for _, dt := range []quant.DType{quant.Int8, quant.F16} {
		m, err := Load(fixtureDir("gpt2-odd"))
		if err != nil {
			t.Fatal(err)
		}
		if m.mem == nil || m.mem.h == nil {
			t.Fatal("no weight mapping after Load")
		}
		old := m.mem
		if err := m.Quantize(dt); err != nil {
			t.Fatal(err)
		}
		if old.h != nil {
			t.Fatalf("%s: the float32 weight mapping outlives Quantize", dt)
		}
		checkQuantizedInMem(t, m)
		forwardAll(t, m)
	}
}

// checkQuantizedInMem fails unless every quantized matrix of m lies in its weight mapping.
func checkQuantizedInMem(t *testing.T, m *Model) {
	t.Helper()
	if !qInMem(m, &m.WTEQ) || !qInMem(m, &m.LMHeadQ) {
		t.Fatalf("%s: wte / lm_head are not in the weight mapping", m.cfg.Weights)
	}
	for i := range m.Blocks {
		for j, l := range m.Blocks[i].linears() {
			if !qInMem(m, &l.Q) || !l.Q.Panels {
				t.Fatalf("%s: block %d linear %d is not in the weight mapping in panels", m.cfg.Weights, i, j)
			}
		}
	}
}

// TestQuantizedDirOffHeapSameLogits loads int8 and fp16 directories with their matrices in the
// weight mapping and on the Go heap: the logits must be bit-identical.
func TestQuantizedDirOffHeapSameLogits(t *testing.T) {
	for _, dt := range []quant.DType{quant.Int8, quant.F16} {
		dir := filepath.Join(t.TempDir(), "q")
		if err := WriteQuantized(fixtureDir("gpt2-odd"), dir, dt); err != nil {
			t.Fatal(err)
		}
		heap, off := loadHeapAndOff(t, dir)
		checkQuantizedInMem(t, off)
		if got, want := off.WeightBytes(), heap.WeightBytes(); got != want {
			t.Errorf("%s: WeightBytes %d off the heap, %d on it", dt, got, want)
		}
		sameForward(t, heap, off)
	}
}

// loadHeapAndOff loads dir with its matrices on the Go heap and in the weight mapping.
func loadHeapAndOff(t *testing.T, dir string) (heap, off *Model) {
	t.Helper()
	weightsOffHeap = false
	heap, err := Load(dir)
	weightsOffHeap = true
	if err != nil {
		t.Fatal(err)
	}
	if off, err = Load(dir); err != nil {
		t.Fatal(err)
	}
	if heap.mem != nil {
		t.Fatal("weightsOffHeap = false: the model has a weight mapping")
	}
	return heap, off
}

// sameForward fails unless heap and off give bit-identical logits.
func sameForward(t *testing.T, heap, off *Model) {
	t.Helper()
	a, b := forwardAll(t, heap), forwardAll(t, off)
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("%s: logit %d: %v on the heap, %v off it", orF32(off.cfg.Weights), i, a[i], b[i])
		}
	}
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
