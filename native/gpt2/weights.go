package gpt2

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/modelrt/modelrt/native/kernels"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// QWeights holds a weight matrix in a compact storage type; the owner's float32 field is nil
// while DType is set. Int8 is symmetric with one scale per output channel: Scale is (Out) for a
// Conv1D weight (In,Out) and (V) for the token embeddings (V,C), each row being the LM head's
// output channel. F16 holds IEEE half-precision bits in the same layout as the float32 matrix.
//
// A Linear's QWeights are kept in kernels.PackPanels' layout (Panels set): 16-column panels of
// all In rows, which the decode product streams sequentially; files store them row-major. Int8
// token embeddings are kept the same way, as the panels of the LM head's (C,V) weight
// (packedT; Scale stays one per vocabulary entry), and embed reads a token's row from them.
type QWeights struct {
	DType  quant.DType // "" when the matrix is in the owner's float32 field
	I8     []int8
	Scale  []float32
	F16    []uint16
	F32    []float32 // DType quant.F32: a Linear's float32 weight, packed in panels
	Panels bool
}

// packed returns q with its values in kernels.PackPanels' layout for a (rows,cols) matrix.
func (q QWeights) packed(rows, cols int) QWeights {
	if q.Panels {
		return q
	}
	switch q.DType {
	case quant.Int8:
		q.I8 = kernels.PackPanels(q.I8, rows, cols)
	case quant.F16:
		q.F16 = kernels.PackPanels(q.F16, rows, cols)
	case quant.F32:
		q.F32 = kernels.PackPanels(q.F32, rows, cols)
	default:
		return q
	}
	q.Panels = true
	return q
}

// packedT returns the int8 token embeddings q (rows = vocabulary, cols = channels, one scale
// per row) as the panels of their transpose, the LM head's (cols,rows) weight: the layout the
// decode product streams fastest (MatMulPanelsI8), which embed reads a row of in place. Other
// types are returned unchanged.
func (q QWeights) packedT(rows, cols int) QWeights {
	if q.Panels || q.DType != quant.Int8 {
		return q
	}
	q.I8 = kernels.PackPanelsT(make([]int8, kernels.PanelLen(cols, rows)), q.I8, cols, rows)
	q.Panels = true
	return q
}

// pack moves a float32 Linear weight into panels (Q.F32), so that prefill's GEMM reads it in
// place instead of packing 340 MB per prompt (a third of a 64-token prefill's CPU time).
func (l *Linear) pack() {
	if l.Weight == nil {
		return
	}
	l.Q = QWeights{DType: quant.F32, F32: l.Weight}.packed(l.In, l.Out)
	l.Weight = nil
}

// float32Weight returns the (In,Out) row-major float32 weight of a float32 Linear, packed or not.
func (l *Linear) float32Weight() []float32 {
	if l.Weight != nil {
		return l.Weight
	}
	return l.Q.rowMajor(l.In, l.Out).F32
}

// packLinears packs every float32 Linear of the model in panels.
func (m *Model) packLinears() {
	for i := range m.Blocks {
		for _, l := range m.Blocks[i].linears() {
			l.pack()
		}
	}
}

// rowMajor returns q with its values in (rows,cols) row-major order, as files store them.
func (q QWeights) rowMajor(rows, cols int) QWeights {
	if !q.Panels {
		return q
	}
	switch q.DType {
	case quant.Int8:
		q.I8 = kernels.UnpackPanels(q.I8, rows, cols)
	case quant.F16:
		q.F16 = kernels.UnpackPanels(q.F16, rows, cols)
	case quant.F32:
		q.F32 = kernels.UnpackPanels(q.F32, rows, cols)
	}
	q.Panels = false
	return q
}

func (q *QWeights) bytes() int64 {
	return int64(len(q.I8) + 4*len(q.Scale) + 2*len(q.F16) + 4*len(q.F32))
}

// LoadOptions select how Load keeps the weights in memory.
type LoadOptions struct {
	// Weights converts float32 checkpoint weights at load time: quant.Int8 or quant.F16 for the
	// weight matrices (Conv1D weights and the token embeddings / tied LM head; biases, norms and
	// position embeddings stay float32). Empty keeps what the directory stores. Asking a
	// quantized directory for another type is an error wrapping ErrQuantized.
	Weights quant.DType
	// KVCache is the storage type of the sessions' KV caches: quant.F32, quant.F16, or empty
	// for the default (F16 with int8 weights, else F32; see Model.SetKVCache).
	KVCache quant.DType
}

// Quantize converts the model's weight matrices to dt in place (quant.Int8 or quant.F16),
// releasing their float32 copies; asking for the type the model already has is a no-op. It
// returns an error wrapping ErrQuantized when the model holds quantized weights of another type
// (quant.F32 included: dequantizing would not restore the original weights).
func (m *Model) Quantize(dt quant.DType) error {
	if dt == quant.F32 {
		dt = ""
	}
	if have := m.cfg.Weights; dt == have {
		return nil
	} else if have != "" {
		return fmt.Errorf("%w: stored as %s, asked for %s", ErrQuantized, have, orF32(dt))
	}
	if dt != quant.Int8 && dt != quant.F16 {
		return fmt.Errorf("gpt2: Quantize: unsupported weight dtype %q", dt)
	}
	c := m.cfg.NEmbd
	tied := &m.LMHead[0] == &m.WTE[0]
	// Each quantized matrix moves into the new mapping as soon as it exists, so that only one
	// matrix at a time has a heap copy.
	h := newWeightMem(m.cfg, !tied, dt)
	m.WTEQ = moveQ(h, quantizeMatrix(m.WTE, m.cfg.VocabSize, c, false, dt).packedT(m.cfg.VocabSize, c))
	m.LMHeadQ = m.WTEQ
	if !tied {
		m.LMHeadQ = moveQ(h, quantizeMatrix(m.LMHead, m.cfg.VocabSize, c, false, dt).packedT(m.cfg.VocabSize, c))
	}
	m.WTE, m.LMHead = nil, nil
	for i := range m.Blocks {
		for _, l := range m.Blocks[i].linears() {
			l.Q = moveQ(h, quantizeMatrix(l.float32Weight(), l.In, l.Out, true, dt).packed(l.In, l.Out))
			l.Weight = nil
		}
	}
	m.cfg.Weights = dt
	m.mem.free() // the float32 matrices are gone
	m.setMem(h)
	return nil
}

func orF32(dt quant.DType) quant.DType {
	if dt == "" {
		return quant.F32
	}
	return dt
}

// quantizeMatrix converts w (rows,cols); perCol says the output channels are columns (Conv1D).
func quantizeMatrix(w []float32, rows, cols int, perCol bool, dt quant.DType) QWeights {
	if dt == quant.F16 {
		return QWeights{DType: dt, F16: quant.ToF16(w)}
	}
	q := QWeights{DType: dt}
	if perCol {
		q.I8, q.Scale = quant.Int8Cols(w, rows, cols)
	} else {
		q.I8, q.Scale = quant.Int8Rows(w, rows, cols)
	}
	return q
}

func (blk *Block) linears() []*Linear {
	return []*Linear{&blk.Attn.CAttn, &blk.Attn.CProj, &blk.MLP.CFC, &blk.MLP.CProj}
}

// WeightBytes returns the bytes the model's parameters occupy in memory.
func (m *Model) WeightBytes() int64 {
	n := 4*int64(len(m.WTE)+len(m.WPE)+len(m.LNF.Weight)+len(m.LNF.Bias)) + m.WTEQ.bytes()
	if len(m.LMHead) > 0 && (len(m.WTE) == 0 || &m.LMHead[0] != &m.WTE[0]) {
		n += 4 * int64(len(m.LMHead))
	}
	if len(m.LMHeadQ.I8)+len(m.LMHeadQ.F16) > 0 && !sameQ(&m.LMHeadQ, &m.WTEQ) {
		n += m.LMHeadQ.bytes()
	}
	for i := range m.Blocks {
		blk := &m.Blocks[i]
		n += 4 * int64(len(blk.LN1.Weight)+len(blk.LN1.Bias)+len(blk.LN2.Weight)+len(blk.LN2.Bias))
		for _, l := range blk.linears() {
			n += 4*int64(len(l.Weight)+len(l.Bias)) + l.Q.bytes()
		}
	}
	return n
}

func sameQ(a, b *QWeights) bool {
	switch {
	case len(a.I8) > 0 && len(b.I8) > 0:
		return &a.I8[0] == &b.I8[0]
	case len(a.F16) > 0 && len(b.F16) > 0:
		return &a.F16[0] == &b.F16[0]
	}
	return false
}

// embed writes token id's embedding plus position pos's into x (C).
func (m *Model) embed(x []float32, id, pos int64) {
	c := int64(len(x))
	pe := m.WPE[pos*c:][:c]
	switch m.WTEQ.DType {
	case quant.Int8:
		q, s := m.WTEQ.I8, m.WTEQ.Scale[id]
		if m.WTEQ.Panels { // column id of the LM head's panels (packedT)
			q = q[id/kernels.PanelWidth*c*kernels.PanelWidth+id%kernels.PanelWidth:]
			for e := range x {
				x[e] = float32(q[e*kernels.PanelWidth]) * s
			}
			break
		}
		quant.DequantRowsInto(x, q[id*c:][:c], m.WTEQ.Scale[id:id+1], int(c))
	case quant.F16:
		quant.FromF16(x, m.WTEQ.F16[id*c:][:c])
	default:
		copy(x, m.WTE[id*c:][:c])
	}
	for e := range x {
		x[e] += pe[e]
	}
}

// lmHead writes the logits dst (rows,V) = h (rows,C) · LMHeadᵀ.
func (m *Model) lmHead(dst, h []float32, rows int) {
	c, v := m.cfg.NEmbd, m.cfg.VocabSize
	switch q := &m.LMHeadQ; q.DType {
	case quant.Int8:
		if q.Panels {
			kernels.MatMulPanelsI8(dst, h, q.I8, q.Scale, nil, rows, c, v)
			return
		}
		kernels.MatMulTI8(dst, h, q.I8, q.Scale, nil, rows, c, v)
	case quant.F16:
		kernels.MatMulTF16(dst, h, q.F16, nil, rows, c, v)
	default:
		kernels.MatMulT(dst, h, m.LMHead, nil, rows, c, v)
	}
}

// matrix reads weight matrix name (rows,cols) as config.json's quantization says it is stored:
// float32 (any float dtype), or I8 with a "<name>.scale" F32 tensor of the output channels'
// scales ((cols) when perCol, else (rows)), or F16 kept as half-precision bits. A perCol matrix
// (a Conv1D weight, which the caller packs into panels at once) is returned in the binder's
// scratch buffers, valid until the next perCol call.
func (b *binder) matrix(name string, rows, cols int, perCol bool) ([]float32, QWeights) {
	switch b.dt {
	case quant.Int8:
		raw := b.raw(name, safetensors.I8, rows, cols)
		nch := rows
		if perCol {
			nch = cols
		}
		var scale []float32
		if b.mem != nil {
			scale = kernels.HugeSlice[float32](b.mem, nch)
			scale = b.getInto(&scale, name+".scale", nch)
		} else {
			scale = b.get(name+".scale", nch)
		}
		if b.err != nil {
			return nil, QWeights{}
		}
		if !perCol {
			// Token embeddings (the LM head): straight from the file into the panels of their
			// transpose (QWeights.packedT), without a row-major copy.
			q := kernels.PackPanelsT(keep[int8](b, kernels.PanelLen(cols, rows)), unsafe.Slice((*int8)(unsafe.Pointer(&raw[0])), len(raw)), cols, rows)
			b.release(b.prefix + name)
			return nil, QWeights{DType: quant.Int8, I8: q, Scale: scale, Panels: true}
		}
		b.scratchI8 = growBuf(b.scratchI8, len(raw))
		q := b.scratchI8
		for i, v := range raw {
			q[i] = int8(v)
		}
		b.release(b.prefix + name)
		return nil, QWeights{DType: quant.Int8, I8: q, Scale: scale}
	case quant.F16:
		raw := b.raw(name, safetensors.F16, rows, cols)
		if b.err != nil {
			return nil, QWeights{}
		}
		var h []uint16
		if perCol {
			b.scratchF16 = growBuf(b.scratchF16, len(raw)/2)
			h = b.scratchF16
		} else {
			h = keep[uint16](b, len(raw)/2)
		}
		for i := range h {
			h[i] = binary.LittleEndian.Uint16(raw[2*i:])
		}
		b.release(b.prefix + name)
		return nil, QWeights{DType: quant.F16, F16: h}
	}
	if perCol {
		return b.getInto(&b.scratchF32, name, rows, cols), QWeights{}
	}
	if b.mem != nil {
		buf := keep[float32](b, rows*cols)
		return b.getInto(&buf, name, rows, cols), QWeights{}
	}
	return b.get(name, rows, cols), QWeights{}
}

// keep returns n values for a matrix the model keeps: from b.mem when set, else the heap.
func keep[T float32 | int8 | uint16](b *binder, n int) []T {
	if b.mem != nil {
		return kernels.HugeSlice[T](b.mem, n)
	}
	return make([]T, n)
}

// packKept returns q, a Linear's (in,out) weight in the binder's scratch buffers, packed in
// panels into memory the model keeps.
func packKept(b *binder, q QWeights, in, out int) QWeights {
	switch q.DType {
	case quant.Int8:
		q.I8 = kernels.PackPanelsInto(keep[int8](b, kernels.PanelLen(in, out)), q.I8, in, out)
	case quant.F16:
		q.F16 = kernels.PackPanelsInto(keep[uint16](b, kernels.PanelLen(in, out)), q.F16, in, out)
	default:
		return q
	}
	q.Panels = true
	return q
}

// raw returns the stored bytes of tensor name, which must have dtype dt and the given shape; the
// slice aliases the file and is valid until it closes.
func (b *binder) raw(name string, dt safetensors.DType, shape ...int) []byte {
	if b.err != nil {
		return nil
	}
	full := b.prefix + name
	data, ti, err := b.f.Raw(full)
	switch {
	case err != nil:
		b.err = fmt.Errorf("gpt2: %s: missing tensor %q (want %s %s, config.json says %s weights): %w", b.f.Path(), full, dt, fmtShape(shape), b.dt, err)
	case ti.DType != dt:
		b.err = fmt.Errorf("gpt2: %s: tensor %q has dtype %s, want %s (config.json says %s weights)", b.f.Path(), full, ti.DType, dt, b.dt)
	case !equalShape(ti.Shape, shape):
		b.err = fmt.Errorf("gpt2: %s: tensor %q has shape %s, want %s from config.json", b.f.Path(), full, fmtShape(ti.Shape), fmtShape(shape))
	}
	return data
}
