package gpt2

import (
	"runtime"

	"github.com/modelrt/modelrt/native/kernels"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// A model keeps its large matrices — every Linear's panels and the token embeddings (the LM
// head), float32, int8 with their scales, or fp16 — in one kernels.HugeMem: a mapping advised for
// transparent huge pages, which each decoded token streams once (498 MB for GPT-2 124M in
// float32, 128 MB in int8), outside the Go heap, so that the garbage collector neither scans nor
// paces on them. The mapping is unmapped by a cleanup once the Model is unreachable (Forward
// keeps the model alive while it runs), or by Quantize, which moves the quantized matrices into
// a mapping of their own.

// weightsOffHeap is false to keep the matrices on the Go heap (A/B measurements, tests).
var weightsOffHeap = true

// hugeLayout returns the byte lengths of the matrices a model of shape cfg with weights of type
// dt ("" or quant.F32, quant.Int8, quant.F16) keeps in its HugeMem: wte, lm_head when untied,
// and each block's four Conv1D weights in panels; int8 matrices are followed by their scales.
func hugeLayout(cfg Config, untied bool, dt quant.DType) []int {
	size, scales := 4, false
	switch dt {
	case quant.Int8:
		size, scales = 1, true
	case quant.F16:
		size = 2
	}
	var n []int
	add := func(values, channels int) {
		n = append(n, size*values)
		if scales {
			n = append(n, 4*channels)
		}
	}
	v, c, inner := cfg.VocabSize, cfg.NEmbd, cfg.Inner()
	wte := v * c
	if dt == quant.Int8 {
		wte = kernels.PanelLen(c, v) // int8 embeddings are kept as the LM head's panels (packedT)
	}
	add(wte, v)
	if untied {
		add(wte, v)
	}
	for range cfg.NLayer {
		add(kernels.PanelLen(c, 3*c), 3*c)
		add(kernels.PanelLen(c, c), c)
		add(kernels.PanelLen(c, inner), inner)
		add(kernels.PanelLen(inner, c), c)
	}
	return n
}

// newWeightMem returns a HugeMem for the matrices of a model of shape cfg with weights dt, or
// nil when weightsOffHeap is false.
func newWeightMem(cfg Config, untied bool, dt quant.DType) *kernels.HugeMem {
	if !weightsOffHeap {
		return nil
	}
	return kernels.NewHugeMem(kernels.HugeBytes(hugeLayout(cfg, untied, dt)...))
}

// toHuge returns s copied into h, or s itself when h is nil.
func toHuge[T float32 | int8 | uint16](h *kernels.HugeMem, s []T) []T {
	if h == nil || len(s) == 0 {
		return s
	}
	d := kernels.HugeSlice[T](h, len(s))
	copy(d, s)
	return d
}

// moveQ returns q with its values copied into h (nil: q unchanged); the order of copies follows
// hugeLayout's.
func moveQ(h *kernels.HugeMem, q QWeights) QWeights {
	q.F32, q.F16 = toHuge(h, q.F32), toHuge(h, q.F16)
	q.I8 = toHuge(h, q.I8)
	q.Scale = toHuge(h, q.Scale)
	return q
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
	h := newWeightMem(m.cfg, !sameF32(m.LMHead, m.WTE), "")
	tied := sameF32(m.LMHead, m.WTE)
	m.WTE = toHuge(h, m.WTE)
	if tied {
		m.LMHead = m.WTE
	} else {
		m.LMHead = toHuge(h, m.LMHead)
	}
	for i := range m.Blocks {
		for _, l := range m.Blocks[i].linears() {
			l.Q.F32 = toHuge(h, l.Q.F32)
		}
	}
	m.setMem(h)
}

// setMem makes h the model's weight memory, freed when the model becomes unreachable (nil: the
// matrices are on the Go heap).
func (m *Model) setMem(h *kernels.HugeMem) {
	if h == nil {
		m.mem = nil
		return
	}
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
