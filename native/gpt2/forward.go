package gpt2

import (
	"context"
	"fmt"
	"runtime"

	"github.com/modelrt/modelrt/native/kernels"
)

// Cache is the KV cache of one session; its batch size is fixed when created. It also keeps the
// attention mask of the positions it holds and the working buffers of Forward, so that a decode
// step allocates nothing. A Cache is not safe for concurrent use.
type Cache struct {
	owner           *Model
	batch, capacity int
	n               int         // positions stored
	k, v            [][]float32 // per layer (B,H,S,D), S = capacity ≤ n_positions
	k16, v16        [][]uint16  // instead of k and v when half: half-precision bits, same layout
	half            bool        // the cache stores keys and values in half precision (kvcache.go)
	mask            []int64     // (B,S): 1 attend, 0 padding, for positions [0,n)
	seen            []int64     // (B): Σ mask[b, :n], the next real token's position id
	padded          bool        // some stored position is padding
	buf             step
	mem             *kvMemory // k and v's mappings when off the heap (kvmem.go)
	shrank          bool      // a Forward dropped working buffers since Shrank was last called
}

// Shrank reports whether a Forward since the last call dropped working buffers far larger than
// it needed (a large prefill's, at the first decode step after it), and so left garbage that a
// caller keeping its memory low may want returned to the system now.
func (c *Cache) Shrank() bool {
	s := c.shrank
	c.shrank = false
	return s
}

// initialCacheCapacity is the number of positions a new cache holds before it first grows.
const initialCacheCapacity = 64

// NewCache returns an empty cache for batch rows. Its memory grows with use, so that a short
// session of a large model does not hold the full 2·n_layer·n_positions·n_embd floats per row
// from the start: off the Go heap, n_positions are reserved and pages become resident as they
// are written (kvmem.go); on the heap, the cache doubles, up to n_positions. Release returns the
// memory at once. It panics when batch < 1.
func (m *Model) NewCache(batch int) *Cache {
	if batch < 1 {
		panic(fmt.Sprintf("gpt2: NewCache(%d): batch must be positive", batch))
	}
	c := &Cache{owner: m, batch: batch, seen: make([]int64, batch), half: m.halfKV(), buf: m.takeSpare()}
	if c.half {
		c.k16, c.v16 = make([][]uint16, m.cfg.NLayer), make([][]uint16, m.cfg.NLayer)
	} else {
		c.k, c.v = make([][]float32, m.cfg.NLayer), make([][]float32, m.cfg.NLayer)
	}
	c.mem = newKVMemory(c)
	c.reserve(m.cfg, min(initialCacheCapacity, m.cfg.NPositions))
	return c
}

// reserve grows the cache to hold at least need positions per row. Off the heap it maps
// n_positions at its first call (or the first after Release) and never grows again; on the heap
// it doubles, copying what it holds into the wider (B,H,S,D) layout.
func (c *Cache) reserve(cfg Config, need int) {
	if need <= c.capacity {
		return
	}
	d, groups := cfg.HeadDim(), c.batch*cfg.NHead
	capacity := min(max(need, 2*c.capacity), cfg.NPositions)
	if c.capacity == 0 && kvOffHeap && c.mapAll(groups*cfg.NPositions*d) {
		capacity = cfg.NPositions
	} else {
		for l := range c.k {
			c.k[l], c.v[l] = relayout(c.k[l], groups, c.capacity, capacity, c.n, d), relayout(c.v[l], groups, c.capacity, capacity, c.n, d)
		}
		for l := range c.k16 {
			c.k16[l], c.v16[l] = relayout(c.k16[l], groups, c.capacity, capacity, c.n, d), relayout(c.v16[l], groups, c.capacity, capacity, c.n, d)
		}
	}
	mask := make([]int64, c.batch*capacity)
	for b := 0; b < c.batch; b++ {
		copy(mask[b*capacity:][:c.n], c.mask[b*c.capacity:][:c.n])
	}
	c.mask, c.capacity = mask, capacity
}

// relayout returns a heap cache layer of groups (row, head) groups of capacity positions, with
// the first n positions of old (groups of oldCap positions) copied in.
func relayout[T float32 | uint16](old []T, groups, oldCap, capacity, n, d int) []T {
	nw := make([]T, groups*capacity*d)
	for g := 0; g < groups; g++ {
		copy(nw[g*capacity*d:][:n*d], old[g*oldCap*d:][:n*d])
	}
	return nw
}

// Len returns the number of positions already stored per row.
func (c *Cache) Len() int { return c.n }

// Batch returns the number of rows the cache was created for.
func (c *Cache) Batch() int { return c.batch }

// Reset empties the cache, keeping its memory.
func (c *Cache) Reset() {
	c.n = 0
	c.padded = false
	clear(c.seen)
}

// step holds the working buffers of one Forward call: grown as needed, and shrunk when a call
// needs less than 1/stepShrink of them and they hold more than stepKeepBytes.
type step struct {
	cache   *Cache
	B, T, P int
	mask    []int64   // (B,P+T) for the attention kernel, nil when nothing is padded
	maskBuf []int64   // backing store of mask
	pos     []int64   // (B,T) position ids
	x, h    []float32 // (B·T,C) residual stream, normalized copy
	qkv     []float32 // (B·T,3C)
	q, att  []float32 // (B·T,C)
	proj    []float32 // (B·T,C)
	hidden  []float32 // (B·T,Inner)
	lnf     []float32 // (rows,C) final norm of the rows whose logits are wanted
	pending []float32 // the residual add a block left to the next (x += pending), or nil
}

// stepShrink is how many times larger than a call's need the working buffers may stay, once
// they hold more than stepKeepBytes. Below that they stay as they are for the cache's life, and
// Release hands them to the next NewCache of the model (Model.spare): a one-row session's
// 64-token prefill needs 2.5 MB of them for GPT-2 124M, and getting those pages back from the
// system (a page fault each, ~3 µs of system time here) cost each new session's prefill more
// than their memory is worth.
const (
	stepShrink    = 4
	stepKeepBytes = 4 << 20
)

// keepSteps is false in benchmarks that measure the cache without stepKeepBytes (every
// prefill's buffers dropped at the first decode step, none handed to the next cache).
var keepSteps = true

// bytes returns the size of the buffers in s.
func (s *step) bytes() int {
	n := 0
	for _, b := range [][]float32{s.x, s.h, s.qkv, s.q, s.att, s.proj, s.hidden, s.lnf} {
		n += 4 * cap(b)
	}
	return n + 8*(cap(s.pos)+cap(s.maskBuf))
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// Forward appends T positions for each of B rows and writes their logits.
//
//	ids:  (B,T) row-major token ids
//	mask: nil, or (B, Len()+T) with 1 = attend, 0 = padding (left padding); its first Len()
//	      columns must repeat what earlier calls passed (nil counts as all ones)
//	dst:  (B,T,V) logits, or (B,1,V) — the last position of each row — when lastOnly
//
// Position ids follow Hugging Face generate: cumsum(mask)−1, with padding positions given id 1;
// padding keys are never attended. Ids outside [0,V), T < 1, Len()+T > n_positions, a mask of the
// wrong length or with values other than 0 and 1 are errors wrapping ErrInvalidInput, and leave
// the cache unchanged; the sequence is never truncated.
func (m *Model) Forward(c *Cache, ids []int64, B, T int, mask []int64, lastOnly bool, dst []float32) error {
	return m.ForwardContext(context.Background(), c, ids, B, T, mask, lastOnly, dst)
}

// testHookLayer, when set (tests only), is called before each block of ForwardContext.
var testHookLayer func(layer int)

// ForwardContext is Forward that checks ctx before each transformer block and before the LM
// head: once ctx ends it returns ctx's error and leaves the cache unchanged, so a cancelled
// prefill stops within one block instead of running to the end.
func (m *Model) ForwardContext(ctx context.Context, c *Cache, ids []int64, B, T int, mask []int64, lastOnly bool, dst []float32) error {
	defer runtime.KeepAlive(m) // its weight mapping must outlive the kernels reading it
	cfg := m.cfg
	if c.owner != m {
		return fmt.Errorf("gpt2: Forward: the cache was created by another model's NewCache")
	}
	if err := c.validate(cfg, ids, B, T, mask); err != nil {
		return err
	}
	rows := B * T
	if lastOnly {
		rows = B
	}
	if want := rows * cfg.VocabSize; len(dst) != want {
		return fmt.Errorf("gpt2: Forward: dst has %d values, want %d (%d rows × vocab %d)", len(dst), want, rows, cfg.VocabSize)
	}
	s := c.prepare(cfg, B, T, mask)

	C := cfg.NEmbd
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			i := b*T + t
			m.embed(s.x[i*C:(i+1)*C], ids[i], s.pos[i])
		}
	}
	for l := range m.Blocks {
		if testHookLayer != nil {
			testHookLayer(l)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if lastOnly && T > 1 && l == len(m.Blocks)-1 {
			m.Blocks[l].forwardLast(s, l)
			continue
		}
		m.Blocks[l].Forward(s, l)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.pending != nil { // the last block's residual add
		addInPlace(s.x[:B*T*C], s.pending)
		s.pending = nil
	}
	// Only the rows whose logits are wanted go through ln_f and the LM head, which for a prefill
	// with lastOnly saves T−1 of T vocabulary-sized products.
	lnf := s.lnf[:rows*C]
	if lastOnly {
		for b := 0; b < B; b++ {
			m.LNF.Forward(lnf[b*C:(b+1)*C], s.x[(b*T+T-1)*C:][:C])
		}
	} else {
		m.LNF.Forward(lnf, s.x[:rows*C])
	}
	m.lmHead(dst, lnf, rows)
	c.commit(B, T, mask)
	return nil
}

func (c *Cache) validate(cfg Config, ids []int64, B, T int, mask []int64) error {
	switch {
	case B != c.batch:
		return fmt.Errorf("%w: batch %d, but the cache was created for %d rows", ErrInvalidInput, B, c.batch)
	case T < 1:
		return fmt.Errorf("%w: no input tokens (T=%d); a prompt needs at least one token", ErrInvalidInput, T)
	case len(ids) != B*T:
		return fmt.Errorf("%w: %d ids for shape (%d,%d)", ErrInvalidInput, len(ids), B, T)
	case c.n+T > cfg.NPositions:
		return fmt.Errorf("%w: sequence of %d positions (%d cached + %d new) exceeds the model's n_positions %d", ErrInvalidInput, c.n+T, c.n, T, cfg.NPositions)
	}
	for i, id := range ids {
		if id < 0 || id >= int64(cfg.VocabSize) {
			return fmt.Errorf("%w: token id %d at (%d,%d) is outside the vocabulary [0,%d)", ErrInvalidInput, id, i/T, i%T, cfg.VocabSize)
		}
	}
	if mask == nil {
		return nil
	}
	l := c.n + T
	if len(mask) != B*l {
		return fmt.Errorf("%w: attention mask has %d values, want (%d,%d) = %d (cached %d + new %d positions)", ErrInvalidInput, len(mask), B, l, B*l, c.n, T)
	}
	for b := 0; b < B; b++ {
		for j := 0; j < l; j++ {
			v := mask[b*l+j]
			if v != 0 && v != 1 {
				return fmt.Errorf("%w: attention mask value %d at (%d,%d); want 0 or 1", ErrInvalidInput, v, b, j)
			}
			if j < c.n && v != c.mask[b*c.capacity+j] {
				return fmt.Errorf("%w: attention mask at (%d,%d) is %d but the cached position was given %d", ErrInvalidInput, b, j, v, c.mask[b*c.capacity+j])
			}
		}
	}
	return nil
}

// prepare sizes the working buffers and computes position ids and the kernel's mask.
func (c *Cache) prepare(cfg Config, B, T int, mask []int64) *step {
	c.reserve(cfg, c.n+T)
	s := &c.buf
	rows, C := B*T, cfg.NEmbd
	if cap(s.x) > stepShrink*rows*C && (s.bytes() > stepKeepBytes || !keepSteps) {
		// A prefill's buffers (B·T rows) are far more than the decode steps after it need (B
		// rows): reallocated once, at the first such step, they do not stay resident for the
		// session's life (20 MB for a batch-8 session of GPT-2 124M after 64 tokens). The
		// kernels' packed copy of the prefill's activations goes too.
		*s = step{}
		kernels.ReleaseScratch()
		c.shrank = true
	}
	s.cache, s.B, s.T, s.P, s.pending = c, B, T, c.n, nil
	s.x, s.h = grow(s.x, rows*C), grow(s.h, rows*C)
	s.qkv = grow(s.qkv, rows*3*C)
	s.q, s.att, s.proj = grow(s.q, rows*C), grow(s.att, rows*C), grow(s.proj, rows*C)
	s.hidden = grow(s.hidden, rows*cfg.Inner())
	s.lnf = grow(s.lnf, rows*C)
	s.pos = grow(s.pos, rows)

	l := c.n + T
	padded := c.padded
	for b := 0; b < B; b++ {
		seen := c.seen[b]
		for t := 0; t < T; t++ {
			on := mask == nil || mask[b*l+c.n+t] != 0
			if on {
				s.pos[b*T+t] = seen
				seen++
			} else {
				s.pos[b*T+t] = 1 // HF generate: position_ids.masked_fill_(attention_mask == 0, 1)
				padded = true
			}
		}
	}
	s.mask = nil
	if padded {
		s.maskBuf = grow(s.maskBuf, B*l)
		s.mask = s.maskBuf
		for b := 0; b < B; b++ {
			copy(s.mask[b*l:b*l+c.n], c.mask[b*c.capacity:])
			for t := 0; t < T; t++ {
				s.mask[b*l+c.n+t] = 1
				if mask != nil {
					s.mask[b*l+c.n+t] = mask[b*l+c.n+t]
				}
			}
		}
	}
	return s
}

// commit records the new positions once the step has succeeded.
func (c *Cache) commit(B, T int, mask []int64) {
	l := c.n + T
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			v := int64(1)
			if mask != nil {
				v = mask[b*l+c.n+t]
			}
			c.mask[b*c.capacity+c.n+t] = v
			c.seen[b] += v
			if v == 0 {
				c.padded = true
			}
		}
	}
	if c.n == 0 {
		c.mem.prompt = T // the first call's positions: what kvSpare keeps resident
	}
	c.n = l
	c.mem.written = max(c.mem.written, l)
}
