package gpt2

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/modelrt/modelrt/native/kernels"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// BatchItem is one session's part of ForwardBatch: new token ids to append to a batch-1 cache.
type BatchItem struct {
	Cache *Cache
	IDs   []int64
}

// batchRowGroup bounds the rows of each matrix product of ForwardBatch. Below the blocked
// kernel's tile height (16 rows) the kernels compute every row on its own (one pass over each
// weight panel per row, summed in a fixed order), so a row's result does not depend on which
// other rows share the call: that is what makes a batched step bit-identical to the same
// tokens stepped alone (TestForwardBatchIdentical guards it). The weights are still read once
// per group of rows, which is where batching gains.
const batchRowGroup = 15

// batchStep holds the working buffers of one ForwardBatch call (grown, never shrunk).
type batchStep struct {
	x, h, qkv, q, att, proj, hidden, lnf []float32
	masks                                [][]int64
}

// batchSteps recycles batchStep buffers: the Model is read-only and may run several calls.
var batchSteps = sync.Pool{New: func() any { return new(batchStep) }}

// ForwardBatch advances several batch-1 caches in one forward pass (continuous batching): the
// items' new tokens are stacked into one set of rows for the matrix products, and attention
// runs per item over its own cache (each with its own length). dst receives one logits row per
// item, the last new position of each: (len(items), V).
//
// The result of an item does not depend on the other items: it is bit-identical to
// ForwardBatch of that item alone, and for a single new token to Forward with T=1. Caches must
// be distinct, created by this model for batch 1; bad ids or a sequence beyond n_positions are
// errors wrapping ErrInvalidInput, and leave every cache unchanged.
func (m *Model) ForwardBatch(items []BatchItem, dst []float32) error {
	defer runtime.KeepAlive(m) // its weight mapping must outlive the kernels reading it
	cfg := m.cfg
	if len(items) == 0 {
		return fmt.Errorf("%w: ForwardBatch without items", ErrInvalidInput)
	}
	R := 0
	for i, it := range items {
		c := it.Cache
		switch {
		case c == nil || c.owner != m:
			return fmt.Errorf("gpt2: ForwardBatch: item %d: the cache was not created by this model's NewCache", i)
		case c.batch != 1:
			return fmt.Errorf("%w: item %d: a cache of %d rows; ForwardBatch steps batch-1 caches", ErrInvalidInput, i, c.batch)
		}
		for j := range i {
			if items[j].Cache == c {
				return fmt.Errorf("%w: items %d and %d share a cache", ErrInvalidInput, j, i)
			}
		}
		if err := c.validate(cfg, it.IDs, 1, len(it.IDs), nil); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		R += len(it.IDs)
	}
	V, C := cfg.VocabSize, cfg.NEmbd
	if want := len(items) * V; len(dst) != want {
		return fmt.Errorf("gpt2: ForwardBatch: dst has %d values, want %d (%d items × vocab %d)", len(dst), want, len(items), V)
	}
	s := batchSteps.Get().(*batchStep)
	defer batchSteps.Put(s)
	s.x, s.h, s.q, s.att, s.proj = grow(s.x, R*C), grow(s.h, R*C), grow(s.q, R*C), grow(s.att, R*C), grow(s.proj, R*C)
	s.qkv, s.hidden, s.lnf = grow(s.qkv, R*3*C), grow(s.hidden, R*cfg.Inner()), grow(s.lnf, len(items)*C)
	s.masks = grow(s.masks, len(items))
	r := 0
	for i, it := range items {
		c, T := it.Cache, len(it.IDs)
		c.reserve(cfg, c.n+T)
		for t := range T {
			m.embed(s.x[(r+t)*C:][:C], it.IDs[t], c.seen[0]+int64(t))
		}
		s.masks[i] = nil
		if c.padded { // an earlier Infer left padding in this cache: attention needs the mask
			l := c.n + T
			mk := grow(c.buf.maskBuf, l)
			c.buf.maskBuf = mk
			copy(mk[:c.n], c.mask[:c.n])
			for j := c.n; j < l; j++ {
				mk[j] = 1
			}
			s.masks[i] = mk
		}
		r += T
	}
	last := len(m.Blocks) - 1
	for l := range m.Blocks {
		m.Blocks[l].forwardBatch(s, l, items, R, l == last)
	}
	for i := range items {
		// after the last block, item i's last position is row i (forwardBatch, lastRows)
		m.LNF.Forward(s.lnf[i*C:(i+1)*C], s.x[i*C:][:C])
	}
	m.lmHead(dst, s.lnf, len(items))
	for _, it := range items {
		it.Cache.commit(1, len(it.IDs), nil)
	}
	return nil
}

// forwardBatch is Block.Forward over the stacked rows of ForwardBatch's items. In the last
// block (lastRows) only each item's last position goes on after attention, as in
// Block.forwardLast: the items' keys and values still all go to their caches, then the last
// rows are gathered into rows 0…len(items)−1 and the projection and the MLP run on those.
func (blk *Block) forwardBatch(s *batchStep, layer int, items []BatchItem, R int, lastRows bool) {
	a := &blk.Attn
	C := a.CProj.Out
	n := R * C
	x, h := s.x[:n], s.h[:n]
	blk.LN1.Forward(h, x)
	qkv := s.qkv[:R*3*C]
	linearRows(&a.CAttn, qkv, h, R)
	d := a.HeadDim
	r := 0
	for i, it := range items {
		c, T := it.Cache, len(it.IDs)
		shape := kernels.AttentionShape{B: 1, T: T, H: a.NHead, D: d, P: c.n, S: c.capacity}
		c.split(layer, s.q[r*C:(r+T)*C], qkv[r*3*C:(r+T)*3*C], shape)
		if lastRows {
			// The last query alone (a one-position step after the others), its output to row
			// i; the residual row too (i ≤ r: rows are only read at or after where they go).
			shape.P, shape.T = c.n+T-1, 1
			c.attend(layer, s.att[i*C:(i+1)*C], s.q[(r+T-1)*C:(r+T)*C], s.masks[i], shape)
			copy(x[i*C:(i+1)*C], x[(r+T-1)*C:(r+T)*C])
		} else {
			c.attend(layer, s.att[r*C:(r+T)*C], s.q[r*C:(r+T)*C], s.masks[i], shape)
		}
		r += T
	}
	if lastRows {
		R = len(items)
		n = R * C
		x, h = x[:n], h[:n]
	}
	linearRows(&a.CProj, s.proj[:n], s.att[:n], R)
	addInPlace(x, s.proj[:n])
	blk.LN2.Forward(h, x)
	hidden := s.hidden[:R*blk.MLP.CFC.Out]
	linearRows(&blk.MLP.CFC, hidden, h, R)
	for r0 := 0; r0 < R; r0++ { // per row: a vectorized body and a scalar tail must split each row alike
		hr := hidden[r0*blk.MLP.CFC.Out:][:blk.MLP.CFC.Out]
		kernels.GeluNew(hr, hr)
	}
	linearRows(&blk.MLP.CProj, s.proj[:n], hidden, R)
	addInPlace(x, s.proj[:n])
}

// linearRows is l.Forward in groups of batchRowGroup rows — or all rows at once for int8 panels
// whose products quantize their activations, where each row has its own bits at any row count
// and a product of 16 rows or more runs the int8 GEMM (kernels.QuantizedActivations).
func linearRows(l *Linear, dst, x []float32, rows int) {
	group := batchRowGroup
	if l.Q.DType == quant.Int8 && l.Q.Panels && kernels.QuantizedActivations() {
		group = rows
	}
	for r0 := 0; r0 < rows; r0 += group {
		l.Forward(dst[r0*l.Out:], x[r0*l.In:], min(group, rows-r0))
	}
}
