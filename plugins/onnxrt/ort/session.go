package ort

import (
	"context"
	"errors"
	"fmt"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"
)

// LMSession is one batch of sequences decoded together, with its KV cache. Its methods are safe
// for concurrent use (calls are serialised: a step depends on the cache the previous one left);
// different sessions of one LM run concurrently.
//
// The cache never passes through the caller. Each cache slot (one past input and its present
// output) has two Go buffers that ONNX Runtime writes in turn: step k reads past from buffer
// k%2 and writes present into buffer (k+1)%2 as a preallocated output, and the present tensor of
// step k is passed unchanged as the past input of step k+1. Nothing copies the cache between
// steps; the buffers grow by doubling, capped at the context length.
type LMSession struct {
	lm    *LM
	batch int

	mu     sync.Mutex
	closed bool
	n      int       // positions consumed so far (Len)
	mask   [][]int64 // per row, the attention mask of the n positions
	ids    [][]int64 // per row, the ids of the n positions (no-past graphs only)
	past   []*ortgo.Tensor[float32]
	pools  [2][][]float32 // [buffer][slot]
	cur    int            // pool holding past
	ro     *ortgo.RunOptions

	// grp is the group a batched Step packed the session's cache into (nil: its own buffers
	// hold it), row its row there; changed only under lm.gmu and mu (batch.go).
	grp *group
	row int
	// padded: a group's session, whose rows are left-padded, so that its length may pass the
	// context (each row's own positions do not).
	padded bool

	// per-step scratch, grown as needed and reused
	fullIDs, fullMask, pos []int64
	i32                    [3][]int32
	f32mask                []float32
	logits                 []float32
}

// NewSession opens a session for batch sequences. Close it to release its cache.
func (m *LM) NewSession(batch int) (*LMSession, error) {
	if batch < 1 {
		return nil, fmt.Errorf("%w: batch %d, want >= 1", ErrInvalidInput, batch)
	}
	if m.fixedBatch > 0 && batch != m.fixedBatch {
		return nil, fmt.Errorf("%w: batch %d, but %s fixes the batch at %d", ErrInvalidInput, batch, m.info.Path, m.fixedBatch)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	return m.newSession(batch)
}

// newSession is NewSession for a caller that holds m.mu.
func (m *LM) newSession(batch int) (*LMSession, error) {
	ro, err := ortgo.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("ort: run options: %w", err)
	}
	s := &LMSession{lm: m, batch: batch, ro: ro, mask: make([][]int64, batch)}
	if m.info.Convention == ConventionNoPast {
		s.ids = make([][]int64, batch)
	}
	return s, nil
}

// Len returns the number of positions the session holds (past length P).
func (s *LMSession) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held()
}

// held is Len with s.mu held.
func (s *LMSession) held() int {
	if g := s.grp; g != nil {
		return g.held(s.row)
	}
	return s.n
}

// Forward appends T positions to each of the B sequences and writes their logits into dst.
//
//	ids:  (B,T) row-major, each in [0, VocabSize)
//	mask: nil (every new position attended) or (B, Len()+T), 1 = attend, 0 = padding; its first
//	      Len() columns must repeat what earlier calls gave
//	dst:  (B,T,V), or (B,1,V) holding the last position only when lastOnly
//
// Position ids follow Hugging Face generate: position = cumsum(mask) - 1 along the row, and 1
// where the mask is 0. On error the session is unchanged (the step can be retried); a cancelled
// ctx terminates the run.
func (s *LMSession) Forward(ctx context.Context, ids []int64, B, T int, mask []int64, lastOnly bool, dst []float32) error {
	lm := s.lm
	lm.mu.RLock()
	defer lm.mu.RUnlock()
	if err := s.lockOwn(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if lm.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	done, err := s.prepare(ctx, ids, B, T, mask, lastOnly, dst)
	if err != nil {
		return err
	}
	done(true)
	return nil
}

// lockOwn locks s.mu with the session's cache in its own buffers: when a batched Step left it
// packed in a group (batch.go), the group is unpacked first. It fails when s is closed.
func (s *LMSession) lockOwn() error {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		g := s.grp
		if g == nil {
			return nil
		}
		s.mu.Unlock()
		s.lm.gmu.Lock()
		if s.grp == g { // read under gmu: only Step and Close, which hold gmu, change it
			s.lm.unpack(g)
		}
		s.lm.gmu.Unlock()
	}
}

// prepare runs one step without changing the session and returns done: done(true) makes the
// step the session's state (the new positions are held), done(false) drops it (the session is
// as before). Exactly one of them must be called, before the next prepare. s.mu is held.
func (s *LMSession) prepare(ctx context.Context, ids []int64, B, T int, mask []int64, lastOnly bool, dst []float32) (func(bool), error) {
	if err := s.check(ids, B, T, mask, lastOnly, dst); err != nil {
		return nil, err
	}
	total := s.n + T
	s.fullMask = grow(s.fullMask, B*total)
	for b := 0; b < B; b++ {
		row := s.fullMask[b*total : (b+1)*total]
		copy(row, s.mask[b])
		for t := s.n; t < total; t++ {
			row[t] = 1
			if mask != nil {
				row[t] = mask[b*total+t]
			}
		}
	}
	var (
		keep func(bool)
		err  error
	)
	if s.lm.info.Convention == ConventionNoPast {
		keep, err = s.forwardNoPast(ctx, ids, T, lastOnly, dst)
	} else {
		keep, err = s.forwardCached(ctx, ids, T, lastOnly, dst)
	}
	if err != nil {
		return nil, err
	}
	return func(ok bool) {
		keep(ok)
		if !ok {
			return
		}
		for b := 0; b < B; b++ {
			s.mask[b] = append(s.mask[b], s.fullMask[b*total+s.n:(b+1)*total]...)
		}
		s.n = total
	}, nil
}

// check validates a Forward request against the session and the graph.
func (s *LMSession) check(ids []int64, B, T int, mask []int64, lastOnly bool, dst []float32) error {
	info := s.lm.info
	if B != s.batch {
		return fmt.Errorf("%w: batch %d, but the session was opened for %d", ErrInvalidInput, B, s.batch)
	}
	if T < 1 {
		return fmt.Errorf("%w: %d new positions, want >= 1", ErrInvalidInput, T)
	}
	if len(ids) != B*T {
		return fmt.Errorf("%w: %d ids for shape (%d,%d)", ErrInvalidInput, len(ids), B, T)
	}
	held := s.held()
	total := held + T
	if info.MaxContext > 0 && total > info.MaxContext && !s.padded {
		return fmt.Errorf("%w: %d positions (%d held + %d new) exceed the context of %d", ErrInvalidInput, total, held, T, info.MaxContext)
	}
	for i, id := range ids {
		if id < 0 || id >= int64(info.VocabSize) {
			return fmt.Errorf("%w: input_ids[%d,%d] = %d outside the vocabulary [0,%d)", ErrInvalidInput, i/T, i%T, id, info.VocabSize)
		}
	}
	if mask != nil {
		if len(mask) != B*total {
			return fmt.Errorf("%w: attention_mask has %d values, want (%d,%d) = %d (held %d + new %d)", ErrInvalidInput, len(mask), B, total, B*total, held, T)
		}
		for i, v := range mask {
			b, j := i/total, i%total
			if v != 0 && v != 1 {
				return fmt.Errorf("%w: attention_mask[%d,%d] = %d, want 0 or 1", ErrInvalidInput, b, j, v)
			}
			if j < held && v != s.mask[b][j] {
				return fmt.Errorf("%w: attention_mask[%d,%d] = %d, but an earlier step gave %d", ErrInvalidInput, b, j, v, s.mask[b][j])
			}
			if v == 0 && !info.HasAttentionMask {
				return fmt.Errorf("%w: attention_mask[%d,%d] = 0, but %s has no attention_mask input, so padding cannot be expressed", ErrInvalidInput, b, j, info.Path)
			}
		}
	}
	want := B * T * info.VocabSize
	if lastOnly {
		want = B * info.VocabSize
	}
	if len(dst) < want {
		return fmt.Errorf("%w: logits destination holds %d values, want %d", ErrInvalidInput, len(dst), want)
	}
	return nil
}

// positions fills s.pos (B, to-from) with the position ids of columns [from,to) of s.fullMask
// (B,total): cumsum(mask)-1 where the mask is 1, and 1 where it is 0.
func (s *LMSession) positions(total, from int) []int64 {
	w := total - from
	s.pos = grow(s.pos, s.batch*w)
	for b := 0; b < s.batch; b++ {
		row := s.fullMask[b*total : (b+1)*total]
		var c int64
		for j, v := range row {
			c += v
			if j >= from {
				p := c - 1
				if v == 0 {
					p = 1
				}
				s.pos[b*w+j-from] = p
			}
		}
	}
	return s.pos[:s.batch*w]
}

// inputs builds the ids, attention_mask and position_ids values for ids (B,w) whose positions are
// columns [total-w, total) of s.fullMask; the caller destroys them.
func (s *LMSession) inputs(ids []int64, w, total int) ([]ortgo.Value, error) {
	lm := s.lm
	B := int64(s.batch)
	vals := make([]ortgo.Value, 0, 3+len(lm.slots))
	fail := func(err error) ([]ortgo.Value, error) {
		destroy(vals)
		return nil, err
	}
	v, err := s.intTensor(0, lm.info.IDsType, ortgo.NewShape(B, int64(w)), ids)
	if err != nil {
		return fail(err)
	}
	vals = append(vals, v)
	if lm.inMask >= 0 {
		shape := ortgo.NewShape(B, int64(total))
		if lm.maskType == "float32" {
			s.f32mask = grow(s.f32mask, len(s.fullMask[:s.batch*total]))
			for i, x := range s.fullMask[:s.batch*total] {
				s.f32mask[i] = float32(x)
			}
			v, err = ortgo.NewTensor(shape, s.f32mask)
		} else {
			v, err = s.intTensor(1, lm.maskType, shape, s.fullMask[:s.batch*total])
		}
		if err != nil {
			return fail(err)
		}
		vals = append(vals, v)
	}
	if lm.inPos >= 0 {
		v, err = s.intTensor(2, lm.posType, ortgo.NewShape(B, int64(w)), s.positions(total, total-w))
		if err != nil {
			return fail(err)
		}
		vals = append(vals, v)
	}
	if lm.cacheBranch {
		if v, err = ortgo.NewTensor(ortgo.NewShape(1), []bool{s.n > 0}); err != nil {
			return fail(err)
		}
		vals = append(vals, v)
	}
	return vals, nil
}

// intTensor wraps v as an int64 tensor, or converts it into scratch buffer k for int32.
func (s *LMSession) intTensor(k int, dtype string, shape ortgo.Shape, v []int64) (ortgo.Value, error) {
	if dtype == "int64" {
		return ortgo.NewTensor(shape, v)
	}
	s.i32[k] = grow(s.i32[k], len(v))
	for i, x := range v {
		s.i32[k][i] = int32(x)
	}
	return ortgo.NewTensor(shape, s.i32[k][:len(v)])
}

// slotShape is the shape of a cache slot holding p positions.
func (s *LMSession) slotShape(sl cacheSlot, p int) ortgo.Shape {
	i := s.lm.info
	if sl.stacked {
		return ortgo.NewShape(2, int64(s.batch), int64(i.NHead), int64(p), int64(i.HeadDim))
	}
	return ortgo.NewShape(int64(s.batch), int64(i.NHead), int64(p), int64(i.HeadDim))
}

// forwardCached runs one step of a graph with past inputs: ids (B,T) against the cache of s.n
// positions; the presents become the cache.
func (s *LMSession) forwardCached(ctx context.Context, ids []int64, T int, lastOnly bool, dst []float32) (func(bool), error) {
	lm := s.lm
	V := lm.info.VocabSize
	total := s.n + T
	base, err := s.inputs(ids, T, total)
	if err != nil {
		return nil, err
	}
	defer destroy(base)
	in := append(base[:len(base):len(base)], make([]ortgo.Value, 0, len(lm.slots))...)
	if s.past == nil {
		// Prefill: past length 0. onnxruntime_go v1.27 NewTensor accepts a zero-size shape with
		// an empty slice (it passes a nil data pointer and 0 bytes), and ONNX Runtime concatenates
		// it like any other past (docs/onnxruntime.md).
		zero := make([]ortgo.Value, 0, len(lm.slots))
		defer func() { destroy(zero) }()
		for _, sl := range lm.slots {
			z, err := ortgo.NewTensor(s.slotShape(sl, 0), []float32{})
			if err != nil {
				return nil, fmt.Errorf("ort: empty past %s: %w", sl.in, err)
			}
			zero = append(zero, z)
		}
		in = append(in, zero...)
	} else {
		for _, p := range s.past {
			in = append(in, p) // destroyed when replaced by the presents, not here
		}
	}

	out := make([]ortgo.Value, 0, 1+len(lm.slots))
	logits, direct := s.logitsBuf(dst, T, lastOnly)
	lt, err := ortgo.NewTensor(ortgo.NewShape(int64(s.batch), int64(T), int64(V)), logits)
	if err != nil {
		return nil, fmt.Errorf("ort: logits output: %w", err)
	}
	defer lt.Destroy()
	out = append(out, lt)
	next := 1 - s.cur
	if s.past == nil {
		next = s.cur
	}
	present := make([]*ortgo.Tensor[float32], 0, len(lm.slots))
	for i, sl := range lm.slots {
		shape := s.slotShape(sl, total)
		perPos := int(shape.FlattenedSize()) / total
		t, err := ortgo.NewTensor(shape, s.poolBuf(next, i, perPos, total))
		if err != nil {
			destroy(present)
			return nil, fmt.Errorf("ort: present output %s: %w", sl.out, err)
		}
		present = append(present, t)
		out = append(out, t)
	}
	if err := s.run(ctx, in, out); err != nil {
		destroy(present) // the cache is untouched: the step can be retried
		return nil, err
	}
	if !direct {
		lastRows(dst, logits, s.batch, T, V)
	}
	// The presents went into pool next, the past stays in pool cur until done(true): dropping
	// the step only destroys the presents.
	return func(ok bool) {
		if !ok {
			destroy(present)
			return
		}
		destroy(s.past)
		s.past, s.cur = present, next
	}, nil
}

// forwardNoPast recomputes the whole sequence: held ids + the new ones.
func (s *LMSession) forwardNoPast(ctx context.Context, ids []int64, T int, lastOnly bool, dst []float32) (func(bool), error) {
	lm := s.lm
	V := lm.info.VocabSize
	total := s.n + T
	s.fullIDs = grow(s.fullIDs, s.batch*total)
	for b := 0; b < s.batch; b++ {
		copy(s.fullIDs[b*total:], s.ids[b])
		copy(s.fullIDs[b*total+s.n:(b+1)*total], ids[b*T:(b+1)*T])
	}
	in, err := s.inputs(s.fullIDs[:s.batch*total], total, total)
	if err != nil {
		return nil, err
	}
	defer destroy(in)
	var logits []float32
	direct := s.n == 0 && !lastOnly
	if direct {
		logits = dst[:s.batch*T*V]
	} else {
		s.logits = grow(s.logits, s.batch*total*V)
		logits = s.logits[:s.batch*total*V]
	}
	lt, err := ortgo.NewTensor(ortgo.NewShape(int64(s.batch), int64(total), int64(V)), logits)
	if err != nil {
		return nil, fmt.Errorf("ort: logits output: %w", err)
	}
	defer lt.Destroy()
	if err := s.run(ctx, in, []ortgo.Value{lt}); err != nil {
		return nil, err
	}
	if !direct {
		keep := T
		if lastOnly {
			keep = 1
		}
		for b := 0; b < s.batch; b++ {
			src := logits[(b*total+total-keep)*V : (b+1)*total*V]
			copy(dst[b*keep*V:(b+1)*keep*V], src)
		}
	}
	return func(ok bool) {
		if ok {
			for b := 0; b < s.batch; b++ {
				s.ids[b] = append(s.ids[b], ids[b*T:(b+1)*T]...)
			}
		}
	}, nil
}

// logitsBuf returns where the graph writes its (B,T,V) logits: dst itself when the caller wants
// all of them or T is 1 (direct), else a scratch buffer that lastRows reduces.
func (s *LMSession) logitsBuf(dst []float32, T int, lastOnly bool) ([]float32, bool) {
	n := s.batch * T * s.lm.info.VocabSize
	if !lastOnly || T == 1 {
		return dst[:n], true
	}
	s.logits = grow(s.logits, n)
	return s.logits[:n], false
}

// lastRows copies the last position of src (B,T,V) into dst (B,1,V).
func lastRows(dst, src []float32, B, T, V int) {
	for b := 0; b < B; b++ {
		copy(dst[b*V:(b+1)*V], src[(b*T+T-1)*V:(b*T+T)*V])
	}
}

// poolBuf returns perPos*positions floats of buffer pool[p][slot], growing it by doubling,
// capped at the context length when it is known.
func (s *LMSession) poolBuf(p, slot, perPos, positions int) []float32 {
	for len(s.pools[p]) <= slot {
		s.pools[p] = append(s.pools[p], nil)
	}
	n := perPos * positions
	buf := s.pools[p][slot]
	if cap(buf) < n {
		c := 2 * cap(buf)
		if mc := s.lm.info.MaxContext; mc > 0 && c > perPos*mc {
			c = perPos * mc
		}
		if c < n {
			c = n
		}
		buf = make([]float32, c)
		s.pools[p][slot] = buf
	}
	return buf[:n]
}

// run executes the graph with the session's run options.
func (s *LMSession) run(ctx context.Context, in, out []ortgo.Value) error {
	return runCtx(ctx, s.lm.sess, s.ro, s.lm.info.Path, in, out)
}

// Close releases the session's cache.
func (s *LMSession) Close() error {
	if !s.padded { // a group's own session is closed under gmu (batch.go)
		s.lm.gmu.Lock()
		defer s.lm.gmu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if g := s.grp; g != nil {
		s.grp = nil
		g.leave(s.row)
	}
	var errs []error
	for _, p := range s.past {
		errs = append(errs, p.Destroy())
	}
	s.past, s.pools = nil, [2][][]float32{}
	errs = append(errs, s.ro.Destroy())
	return errors.Join(errs...)
}

func destroy[V ortgo.Value](vals []V) {
	for _, v := range vals {
		if any(v) != nil {
			v.Destroy()
		}
	}
}

// grow returns buf with length n, reallocating only when its capacity is short.
func grow[T any](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n)
	}
	return buf[:n]
}
