package gpt2

import (
	"runtime"

	"github.com/modelrt/modelrt/native/kernels"
)

// A float32 model keeps its large matrices — every Linear's panels and the token embeddings
// (the LM head) — in one kernels.HugeMem: a mapping advised for transparent huge pages, which
// each decoded token streams once (498 MB for GPT-2 124M). The mapping is unmapped by a cleanup
// once the Model is unreachable (Forward keeps the model alive while it runs), or by Quantize,
// which replaces those matrices. Quantized weights stay on the Go heap.

// weightsOffHeap is false to keep the float32 matrices on the Go heap (A/B measurements, tests).
var weightsOffHeap = true

// hugeLayout returns the byte lengths of the matrices a float32 model of shape cfg keeps in
// its HugeMem: wte, lm_head when untied, and each block's four Conv1D weights in panels.
func hugeLayout(cfg Config, untied bool) []int {
	vc := 4 * cfg.VocabSize * cfg.NEmbd
	n := []int{vc}
	if untied {
		n = append(n, vc)
	}
	c, inner := cfg.NEmbd, cfg.Inner()
	for range cfg.NLayer {
		n = append(n, 4*kernels.PanelLen(c, 3*c), 4*kernels.PanelLen(c, c), 4*kernels.PanelLen(c, inner), 4*kernels.PanelLen(inner, c))
	}
	return n
}

func sameF32(a, b []float32) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// moveToHugeMem copies the float32 model's large matrices into a new HugeMem and drops the
// heap copies. It does nothing on a quantized model, one already moved, or when weightsOffHeap
// is false.
func (m *Model) moveToHugeMem() {
	if !weightsOffHeap || m.cfg.Weights != "" || m.mem != nil || len(m.WTE) == 0 {
		return
	}
	h := kernels.NewHugeMem(kernels.HugeBytes(hugeLayout(m.cfg, !sameF32(m.LMHead, m.WTE))...))
	move := func(s []float32) []float32 {
		d := kernels.HugeSlice[float32](h, len(s))
		copy(d, s)
		return d
	}
	tied := sameF32(m.LMHead, m.WTE)
	m.WTE = move(m.WTE)
	if tied {
		m.LMHead = m.WTE
	} else {
		m.LMHead = move(m.LMHead)
	}
	for i := range m.Blocks {
		for _, l := range m.Blocks[i].linears() {
			l.Q.F32 = move(l.Q.F32)
		}
	}
	m.setMem(h)
}

// setMem makes h the model's weight memory, freed when the model becomes unreachable.
func (m *Model) setMem(h *kernels.HugeMem) {
	m.mem = &weightMem{h: h}
	runtime.AddCleanup(m, func(w *weightMem) { w.free() }, m.mem)
}

// weightMem holds a model's HugeMem (a separate object, so that the cleanup does not keep the
// model reachable).
type weightMem struct{ h *kernels.HugeMem }

func (w *weightMem) free() {
	if w != nil && w.h != nil {
		w.h.Free()
		w.h = nil
	}
}
