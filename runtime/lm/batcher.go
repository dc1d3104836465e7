package lm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/modelrt/modelrt/runtime/generate"
)

// StepSession is a session a decode loop can run: a *Session, or a session of a continuous-
// batching scheduler (runtime/batch) whose steps are shared with other generations.
type StepSession interface {
	generate.Stepper
	ID() string
	// Close frees the session in the backend, even when the request was cancelled.
	Close() error
}

// Batcher opens batch-1 sessions whose steps are shared with the model's other generations
// (runtime/batch's Scheduler).
type Batcher interface {
	OpenShared(ctx context.Context) (StepSession, error)
}

// OpenStepSession opens a session for batch rows. With m.Batcher set, every row shares the
// model's steps: one prompt is one shared session, several rows (n > 1, classifier-free
// guidance) are Rows, one shared session per row. Without it, one session of its own (Open).
func (m *Model) OpenStepSession(ctx context.Context, batch int) (StepSession, error) {
	switch {
	case m.Batcher == nil:
		return m.Open(ctx, batch)
	case batch == 1:
		return m.Batcher.OpenShared(ctx)
	}
	return OpenRows(ctx, m.Batcher, batch)
}

// Rows runs a batch of B rows as B shared batch-1 sessions, so that the rows of one request
// are advanced in the same steps as each other and as other requests (one step of the
// scheduler holds them all, up to its batch size). It implements generate.Stepper: each row
// is fed its new ids where the mask is 1 — a left-padded row skips its padding, which with
// Hugging Face's position ids (cumsum of the mask) gives the logits the padded batch gives. A
// row fed no id in a call (its new positions all padding) gets a zero logits row, which is
// what nothing reads: the logits of a padding position.
type Rows struct {
	rows []StepSession
	out  []float32
}

// OpenRows opens batch shared sessions through b.
func OpenRows(ctx context.Context, b Batcher, batch int) (*Rows, error) {
	if batch < 1 {
		return nil, fmt.Errorf("open rows: batch %d, want >= 1", batch)
	}
	r := &Rows{rows: make([]StepSession, 0, batch)}
	for range batch {
		s, err := b.OpenShared(ctx)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.rows = append(r.rows, s)
	}
	return r, nil
}

// ID lists the rows' session ids, comma-separated.
func (r *Rows) ID() string {
	ids := make([]string, len(r.rows))
	for i, s := range r.rows {
		ids[i] = s.ID()
	}
	return strings.Join(ids, ",")
}

// Step implements generate.Stepper; the returned logits are valid until the next Step.
func (r *Rows) Step(ctx context.Context, ids []int64, B, T int, mask []int64) ([]float32, error) {
	if B != len(r.rows) || T < 1 || len(ids) != B*T {
		return nil, fmt.Errorf("rows step: %d ids for (%d,%d) on %d rows", len(ids), B, T, len(r.rows))
	}
	L := T
	if mask != nil {
		if len(mask)%B != 0 || len(mask)/B < T {
			return nil, fmt.Errorf("rows step: attention mask of %d values for %d rows of %d new positions", len(mask), B, T)
		}
		L = len(mask) / B
	}
	feed := make([][]int64, B)
	for b := range B {
		for j := range T {
			if mask == nil || mask[b*L+L-T+j] != 0 {
				feed[b] = append(feed[b], ids[b*T+j])
			}
		}
	}
	res := make([][]float32, B)
	errs := make([]error, B)
	var wg sync.WaitGroup
	for b := range B {
		if len(feed[b]) == 0 {
			continue
		}
		wg.Go(func() {
			res[b], errs[b] = r.rows[b].Step(ctx, feed[b], 1, len(feed[b]), nil)
			if errs[b] != nil {
				errs[b] = fmt.Errorf("row %d: %w", b, errs[b])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	V := 0
	for _, v := range res {
		if v != nil {
			V = len(v)
			break
		}
	}
	if V == 0 {
		return nil, fmt.Errorf("rows step: no row was fed an id (every new position is padding)")
	}
	if cap(r.out) < B*V {
		r.out = make([]float32, B*V)
	}
	r.out = r.out[:B*V]
	for b, v := range res {
		row := r.out[b*V : (b+1)*V]
		if v == nil {
			clear(row)
			continue
		}
		if len(v) != V {
			return nil, fmt.Errorf("rows step: row %d returned %d logits, row 0 %d", b, len(v), V)
		}
		copy(row, v)
	}
	return r.out, nil
}

// Close closes every row's session.
func (r *Rows) Close() error {
	var errs []error
	for _, s := range r.rows {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
