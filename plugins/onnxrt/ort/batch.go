package ort

import (
	"context"
	"fmt"

	ortgo "github.com/yalue/onnxruntime_go"
)

// Batched steps (continuous batching). Step advances several batch-1 sessions of one LM in
// one graph run when the graph can express padding (it has an attention_mask input and a
// symbolic batch axis): the sessions' caches are packed into one batch-N cache, each row
// left-padded to the longest with attention_mask zeros, position ids following the mask
// (cumsum-1), so that every row's last column is its new token.
//
// The packed batch (a group) is kept after the step: while the next Step decodes the same
// sessions (one token each, the steady state of a continuous batch), the presents of one step
// are the pasts of the next, as for a single session, and nothing is copied. A member missing
// from a step (it was still sampling when the step started, or it closed) is fed a token at a
// masked position: its row gains a gap column, computed and ignored, rather than every cache
// being copied twice; when more than a quarter of the rows would be missing, a session not in
// the group joins, a member steps alone (Forward) or the padded length reaches the context,
// the group is unpacked into each member's own buffers (one copy) and the Step packs anew.
//
// Items that feed several tokens (prompt chunks) run one session at a time within the call:
// padding every decode row to the chunk's length would multiply their work by it. A graph
// that cannot express padding (no attention_mask, or a fixed batch axis) runs every item one
// after another.

// group is a packed batch of sessions.
type group struct {
	s    *LMSession   // batch len(rows), padded: holds the packed cache
	rows []*LMSession // row b's session; nil once it closed
	pad  []int        // row b's own positions are columns [pad[b], s.n) of s but gaps[b]
	gaps [][]int      // per row, ascending: columns of steps the row missed (masked)
	live int          // rows not nil
}

// held is the number of positions row b holds.
func (g *group) held(b int) int { return g.s.n - g.pad[b] - len(g.gaps[b]) }

// own calls f for each run [from, to) of row b's own columns, in order.
func (g *group) own(b int, f func(from, to int)) {
	from := g.pad[b]
	for _, c := range g.gaps[b] {
		if c > from {
			f(from, c)
		}
		from = c + 1
	}
	if g.s.n > from {
		f(from, g.s.n)
	}
}

// BatchStats counts the batched Steps of an LM.
type BatchStats struct {
	Packed int // Steps that packed their decoding sessions into a new batch
	Kept   int // Steps that reused the previous Step's packed batch
	Gaps   int // rows of a reused batch fed a masked position because their session skipped the Step
}

// BatchStats returns the counts so far.
func (m *LM) BatchStats() BatchStats {
	m.gmu.Lock()
	defer m.gmu.Unlock()
	return m.batchStats
}

// CanBatch reports whether Step runs sessions in one padded graph run (else one by one).
func (m *LM) CanBatch() bool { return m.info.HasAttentionMask && m.fixedBatch == 0 }

// SetRepackEveryStep makes every batched Step pack its sessions afresh rather than keep the
// group of the previous step (for measuring what keeping it saves).
func (m *LM) SetRepackEveryStep(v bool) {
	m.gmu.Lock()
	defer m.gmu.Unlock()
	m.repack = v
}

// Step appends ids[i] to the cache of batch-1 session sess[i] (each at its own length) and
// writes the logits of each one's last new position into dst (N,V), row i for sess[i]. The
// sessions must be distinct sessions of m. On error every session is as before; a cancelled
// ctx terminates the run.
func (m *LM) Step(ctx context.Context, sess []*LMSession, ids [][]int64, dst []float32) error {
	N, V := len(sess), m.info.VocabSize
	if N == 0 || len(ids) != N {
		return fmt.Errorf("%w: step of %d sessions with %d id lists", ErrInvalidInput, N, len(ids))
	}
	if len(dst) < N*V {
		return fmt.Errorf("%w: logits destination holds %d values, want %d", ErrInvalidInput, len(dst), N*V)
	}
	seen := make(map[*LMSession]bool, N)
	for i, s := range sess {
		if s == nil || s.lm != m || s.padded {
			return fmt.Errorf("%w: step item %d: not a session of %s", ErrInvalidInput, i, m.info.Path)
		}
		if seen[s] {
			return fmt.Errorf("%w: step item %d: the session appears twice", ErrInvalidInput, i)
		}
		seen[s] = true
		if s.batch != 1 {
			return fmt.Errorf("%w: step item %d: the session was opened for batch %d; Step advances batch-1 sessions", ErrInvalidInput, i, s.batch)
		}
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	m.gmu.Lock()
	defer m.gmu.Unlock()

	// Which items decode together: one new token each, at least two of them.
	var dec, alone []int
	for i := range sess {
		if m.CanBatch() && len(ids[i]) == 1 {
			dec = append(dec, i)
		} else {
			alone = append(alone, i)
		}
	}
	if len(dec) == 1 {
		alone, dec = append(alone, dec[0]), nil
	}
	var g *group
	if len(dec) > 0 {
		g = sess[dec[0]].grp
		if m.repack || g == nil || len(g.rows)-len(dec) > len(g.rows)/4 ||
			(m.info.MaxContext > 0 && g.s.n+1 > m.info.MaxContext) {
			g = nil
		}
		for _, i := range dec {
			if g != nil && sess[i].grp != g {
				g = nil
			}
		}
		for _, i := range alone { // a member feeding a chunk runs on its own buffers
			if g != nil && sess[i].grp == g {
				g = nil
			}
		}
	}
	// Unpack every group that a session of this step belongs to, except the one kept.
	for _, s := range sess {
		if s.grp != nil && s.grp != g {
			m.unpack(s.grp)
		}
	}
	for _, s := range sess {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return ErrClosed
		}
	}
	// The kept group's members that skip this step gain a gap column: hold them too.
	var skip []int
	if g != nil {
		for b, s := range g.rows {
			if s != nil && !seen[s] {
				s.mu.Lock()
				defer s.mu.Unlock()
			}
			if !seen[s] {
				skip = append(skip, b)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Check every item first, so that a bad one fails the step before anything runs.
	for i, s := range sess {
		if err := s.check(ids[i], 1, len(ids[i]), nil, true, dst[i*V:(i+1)*V]); err != nil {
			return fmt.Errorf("step item %d: %w", i, err)
		}
	}
	if g != nil {
		m.batchStats.Kept++
	} else if len(dec) > 0 {
		m.batchStats.Packed++
		members := make([]*LMSession, len(dec))
		for k, i := range dec {
			members[k] = sess[i]
		}
		var err error
		if g, err = m.pack(members); err != nil {
			return err
		}
	}

	var done []func(bool)
	finish := func(ok bool) {
		for _, d := range done {
			d(ok)
		}
	}
	if g != nil {
		n := len(g.rows)
		gids := make([]int64, n)
		rowOf := make([]int, len(dec))
		for k, i := range dec {
			rowOf[k] = sess[i].row
			gids[sess[i].row] = ids[i][0]
		}
		var mask []int64 // nil: every row's new column is attended
		col := g.s.n
		if len(skip) > 0 {
			total := col + 1
			mask = make([]int64, n*total)
			for b := range n {
				copy(mask[b*total:], g.s.mask[b])
				mask[b*total+col] = 1
			}
			for _, b := range skip {
				mask[b*total+col] = 0
			}
		}
		logits := make([]float32, n*V)
		d, err := g.s.prepare(ctx, gids, n, 1, mask, true, logits)
		if err != nil {
			return err
		}
		done = append(done, d)
		if len(skip) > 0 {
			done = append(done, func(ok bool) {
				if ok {
					for _, b := range skip {
						g.gaps[b] = append(g.gaps[b], col)
					}
					m.batchStats.Gaps += len(skip)
				}
			})
		}
		for k, i := range dec {
			copy(dst[i*V:(i+1)*V], logits[rowOf[k]*V:(rowOf[k]+1)*V])
		}
	}
	for _, i := range alone {
		d, err := sess[i].prepare(ctx, ids[i], 1, len(ids[i]), nil, true, dst[i*V:(i+1)*V])
		if err != nil {
			finish(false)
			return err
		}
		done = append(done, d)
	}
	finish(true)
	return nil
}

// pack makes a group of members (their caches in their own buffers; gmu and their mu held).
func (m *LM) pack(members []*LMSession) (*group, error) {
	N := len(members)
	P := 0
	for _, s := range members {
		P = max(P, s.n)
	}
	gs, err := m.newSession(N)
	if err != nil {
		return nil, err
	}
	gs.padded, gs.n = true, P
	g := &group{s: gs, rows: members, pad: make([]int, N), gaps: make([][]int, N), live: N}
	for b, s := range members {
		pad := P - s.n
		g.pad[b] = pad
		gs.mask[b] = append(make([]int64, pad, P), s.mask[0]...)
		if gs.ids != nil {
			gs.ids[b] = append(make([]int64, pad, P), s.ids[0]...)
		}
	}
	if P > 0 && gs.ids == nil {
		outer, H, D := m.cacheDims()
		for i, sl := range m.slots {
			shape := gs.slotShape(sl, P)
			buf := gs.poolBuf(0, i, int(shape.FlattenedSize())/P, P)
			for b, s := range members {
				if s.n > 0 {
					copyCache(buf, N, P, b, g.pad[b], s.pools[s.cur][i], 1, s.n, 0, 0, outer, H, D, s.n)
				}
			}
			t, err := ortgo.NewTensor(shape, buf)
			if err != nil {
				gs.Close()
				return nil, fmt.Errorf("ort: packed past %s: %w", sl.in, err)
			}
			gs.past = append(gs.past, t)
		}
	}
	for b, s := range members {
		s.grp, s.row = g, b
	}
	return g, nil
}

// unpack copies each live row of g into its session's own buffers and closes g (gmu held, no
// member's mu).
func (m *LM) unpack(g *group) {
	outer, H, D := m.cacheDims()
	for b, s := range g.rows {
		if s == nil {
			continue
		}
		s.mu.Lock()
		n := g.held(b)
		s.mask[0] = s.mask[0][:0]
		if s.ids != nil {
			s.ids[0] = s.ids[0][:0]
		}
		g.own(b, func(from, to int) {
			s.mask[0] = append(s.mask[0], g.s.mask[b][from:to]...)
			if s.ids != nil {
				s.ids[0] = append(s.ids[0], g.s.ids[b][from:to]...)
			}
		})
		destroy(s.past)
		s.past = nil
		if n > 0 && s.ids == nil && g.s.past != nil {
			for i, sl := range m.slots {
				shape := s.slotShape(sl, n)
				buf := s.poolBuf(s.cur, i, int(shape.FlattenedSize())/n, n)
				at := 0
				g.own(b, func(from, to int) {
					copyCache(buf, 1, n, 0, at, g.s.pools[g.s.cur][i], len(g.rows), g.s.n, b, from, outer, H, D, to-from)
					at += to - from
				})
				t, err := ortgo.NewTensor(shape, buf)
				if err != nil {
					// Creating a tensor over Go memory fails only when ONNX Runtime is out of
					// memory; the session cannot go on.
					s.closed = true
					break
				}
				s.past = append(s.past, t)
			}
		}
		s.n = n
		s.grp = nil
		s.mu.Unlock()
	}
	g.rows = nil
	g.live = 0
	g.s.Close()
}

// leave drops row b from g, closing g when no row is left (gmu and the row's mu held).
func (g *group) leave(b int) {
	g.rows[b] = nil
	g.live--
	if g.live == 0 {
		g.s.Close()
	}
}

// cacheDims returns the cache slots' outer size (2 for stacked key/value), heads and head size.
func (m *LM) cacheDims() (outer, H, D int) {
	outer = 1
	if m.info.Convention == ConventionStacked {
		outer = 2
	}
	return outer, m.info.NHead, m.info.HeadDim
}

// copyCache copies n positions of row sb, from column sc, of src (outer,sB,H,sP,D) into row db,
// from column dc, of dst (outer,dB,H,dP,D).
func copyCache(dst []float32, dB, dP, db, dc int, src []float32, sB, sP, sb, sc int, outer, H, D, n int) {
	for o := range outer {
		for h := range H {
			so := (((o*sB+sb)*H+h)*sP + sc) * D
			do := (((o*dB+db)*H+h)*dP + dc) * D
			copy(dst[do:do+n*D], src[so:so+n*D])
		}
	}
}
