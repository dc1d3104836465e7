// Package batch is continuous batching on the host: one Scheduler per loaded causal-LM model
// advances every open generation of that model together, one backend call per step. Requests
// join and leave between steps; a prompt is fed in chunks interleaved with the other
// sessions' decode tokens, so that a newcomer does not stall the streams already running.
//
// A Scheduler hands out Sessions that implement generate.Stepper, so runtime/generate's decode
// loop (and its samplers) run unchanged per request; only the forward passes are shared. With
// a backend that advertises sdk.CapabilityStep a step is one Step call; otherwise it is one
// Infer per session (sdk.StepEach), which still keeps the scheduling and the metrics.
package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/sdk"
)

// Defaults of Options' zero values.
const (
	// DefaultMaxBatch: sessions per step. On a 2-core machine the native backend's decode
	// throughput keeps rising up to about 8 rows; beyond that a step only gets longer.
	DefaultMaxBatch = 8
	// DefaultPrefillChunk: prompt tokens one session feeds per step.
	DefaultPrefillChunk = 32
	// DefaultGather: how long a step waits, after its first token arrived, for the other open
	// sessions' tokens (they are sampling the previous step's logits).
	DefaultGather = 2 * time.Millisecond
)

// Options configure a Scheduler.
type Options struct {
	// MaxBatch bounds the sessions advanced by one step; more wait for the next step.
	MaxBatch int
	// PrefillChunk bounds the prompt tokens a session feeds per step.
	PrefillChunk int
	// Gather is how long a step waits for every open session's next token.
	Gather time.Duration
	// Logger (slog.Default() when nil).
	Logger *slog.Logger
}

func (o *Options) fill() {
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.PrefillChunk <= 0 {
		o.PrefillChunk = DefaultPrefillChunk
	}
	if o.Gather <= 0 {
		o.Gather = DefaultGather
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// ErrClosed: the scheduler was closed.
var ErrClosed = errors.New("batch: scheduler closed")

// Scheduler advances the sessions of one model together. It is safe for concurrent use.
type Scheduler struct {
	m       *lm.Model
	opts    Options
	batched bool // the backend implements sdk.CapabilityStep
	step    func(context.Context, *sdk.StepRequest) (*sdk.StepResponse, error)
	stats   *Metrics

	// inflight is held while a step runs: Session.Close waits for it before it frees a
	// backend session the step may be using.
	inflight sync.Mutex

	mu      sync.Mutex
	members int     // open sessions that may submit work
	pending []*work // FIFO
	closed  bool
	wake    chan struct{}
	done    chan struct{}
}

// work is one session's request to feed ids and get the last position's logits.
type work struct {
	s     *Session
	ctx   context.Context
	ids   []int64 // still to feed
	since time.Time
	out   chan result
}

type result struct {
	logits []float32
	err    error
}

// New starts the scheduler of m. When m's backend lists sdk.CapabilityStep (desc may be nil:
// then it is asked) and implements sdk.Stepper, each step is one Step call.
func New(ctx context.Context, m *lm.Model, opts Options) *Scheduler {
	opts.fill()
	s := &Scheduler{m: m, opts: opts, wake: make(chan struct{}, 1), done: make(chan struct{}), stats: newMetrics(m.Name)}
	st, ok := m.Backend.(sdk.Stepper)
	if ok {
		d, err := m.Backend.Describe(ctx, &sdk.DescribeRequest{})
		ok = err == nil && sdk.HasCapability(d, sdk.CapabilityStep)
	}
	if ok {
		s.batched, s.step = true, st.Step
	} else {
		s.step = func(ctx context.Context, req *sdk.StepRequest) (*sdk.StepResponse, error) {
			return sdk.StepEach(ctx, m.Backend, req)
		}
		opts.Logger.Info("backend has no batched step: sessions advance one Infer each", "model", m.Name)
	}
	go s.loop()
	return s
}

// Batched reports whether steps are single batched backend calls.
func (s *Scheduler) Batched() bool { return s.batched }

// Metrics returns the scheduler's Prometheus series.
func (s *Scheduler) Metrics() *Metrics { return s.stats }

// Close stops the scheduler: waiting and later steps fail with ErrClosed.
func (s *Scheduler) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.poke()
	<-s.done
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Session is one generation in a Scheduler: a backend session of batch 1 whose steps share
// the model's forward passes with the other Sessions. It implements generate.Stepper.
type Session struct {
	sc     *Scheduler
	ls     *lm.Session
	opened time.Time
	last   time.Time // when the previous logits were returned (zero: none yet)
	closed bool      // guarded by the scheduler's mu
}

// Open opens a backend session of batch 1 and joins it to the scheduler.
func (s *Scheduler) Open(ctx context.Context) (*Session, error) {
	ls, err := s.m.Open(ctx, 1)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ls.Close()
		return nil, ErrClosed
	}
	s.members++
	s.mu.Unlock()
	s.stats.sessions.Inc()
	return &Session{sc: s, ls: ls, opened: time.Now()}, nil
}

// ID returns the backend's session id.
func (ss *Session) ID() string { return ss.ls.ID() }

// Step implements generate.Stepper for one row (B = 1). The mask must be all ones (it is for
// a single prompt); anything else runs as a call of its own, outside the shared steps.
func (ss *Session) Step(ctx context.Context, ids []int64, B, T int, mask []int64) ([]float32, error) {
	if B != 1 || slices.Contains(mask, 0) {
		return ss.ls.Step(ctx, ids, B, T, mask)
	}
	w := &work{s: ss, ctx: ctx, ids: slices.Clone(ids[:T]), since: time.Now(), out: make(chan result, 1)}
	sc := ss.sc
	sc.mu.Lock()
	if sc.closed {
		sc.mu.Unlock()
		return nil, ErrClosed
	}
	sc.pending = append(sc.pending, w)
	sc.mu.Unlock()
	sc.poke()
	select {
	case r := <-w.out:
		if r.err != nil {
			return nil, r.err
		}
		now := time.Now()
		if ss.last.IsZero() {
			sc.stats.ttft.Observe(now.Sub(ss.opened).Seconds())
		} else {
			sc.stats.itl.Observe(now.Sub(ss.last).Seconds())
		}
		ss.last = now
		return r.logits, nil
	case <-ctx.Done():
		// The step may still run; its result is dropped (out is buffered). Close frees the
		// session once the loop no longer holds it.
		return nil, context.Cause(ctx)
	}
}

// Close leaves the scheduler and frees the backend session at once (work still queued for it
// is dropped first, so the next step does not touch a closed session).
func (ss *Session) Close() error {
	sc := ss.sc
	sc.mu.Lock()
	if ss.closed {
		sc.mu.Unlock()
		return nil
	}
	ss.closed = true
	sc.pending = slices.DeleteFunc(sc.pending, func(w *work) bool { return w.s == ss })
	sc.members--
	sc.mu.Unlock()
	sc.poke()
	sc.stats.sessions.Dec()
	// A step in flight may still hold the session; the loop serializes with this through
	// inflight.
	sc.inflight.Lock()
	defer sc.inflight.Unlock()
	return ss.ls.Close()
}

// loop runs steps until Close.
func (s *Scheduler) loop() {
	defer close(s.done)
	var timer *time.Timer
	for {
		s.mu.Lock()
		for len(s.pending) == 0 && !s.closed {
			s.mu.Unlock()
			<-s.wake
			s.mu.Lock()
		}
		if s.closed {
			for _, w := range s.pending {
				w.out <- result{err: ErrClosed}
			}
			s.pending = nil
			s.mu.Unlock()
			return
		}
		// Gather: wait (a little) until every open session has its next token queued.
		deadline := s.pending[0].since.Add(s.opts.Gather)
		for len(s.pending) > 0 && len(s.pending) < min(s.members, s.opts.MaxBatch) && !s.closed {
			d := time.Until(deadline)
			if d <= 0 {
				break
			}
			s.mu.Unlock()
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			select {
			case <-s.wake:
			case <-timer.C:
			}
			timer.Stop()
			s.mu.Lock()
		}
		n := min(len(s.pending), s.opts.MaxBatch)
		batch := slices.Clone(s.pending[:n])
		s.pending = slices.Delete(s.pending, 0, n)
		s.inflight.Lock()
		s.mu.Unlock()
		again := s.run(batch)
		s.inflight.Unlock()
		if len(again) > 0 {
			s.mu.Lock()
			again = slices.DeleteFunc(again, func(w *work) bool { return w.s.closed })
			s.pending = append(again, s.pending...) // prompts continue first in the next step
			s.mu.Unlock()
		}
	}
}

// run advances batch by one step: each work item feeds at most PrefillChunk ids. It returns
// the items with ids left to feed.
func (s *Scheduler) run(batch []*work) (again []*work) {
	req := &sdk.StepRequest{Model: s.m.Name}
	var live []*work
	now := time.Now()
	tokens := 0
	for _, w := range batch {
		if err := w.ctx.Err(); err != nil {
			w.out <- result{err: context.Cause(w.ctx)}
			continue
		}
		n := min(len(w.ids), s.opts.PrefillChunk)
		req.Items = append(req.Items, sdk.StepItem{Session: w.s.ls.ID(), TokenIDs: w.ids[:n]})
		live = append(live, w)
		s.stats.wait.Observe(now.Sub(w.since).Seconds())
		tokens += n
	}
	if len(live) == 0 {
		return nil
	}
	s.stats.batch.Observe(float64(len(live)))
	rows, errs := s.call(live, req)
	s.stats.tokens.Add(float64(tokens))
	for i, w := range live {
		if errs[i] != nil {
			w.out <- result{err: fmt.Errorf("model %q: step: %w", s.m.Name, errs[i])}
			continue
		}
		w.ids = w.ids[len(req.Items[i].TokenIDs):]
		if len(w.ids) > 0 {
			again = append(again, w)
			continue
		}
		w.out <- result{logits: rows[i]}
	}
	return again
}

// call runs one step of live (req has their items) and returns each item's logits row or
// error. A batched Step either advances every session or none (docs/sdk.md), so when it fails
// for several sessions each is retried alone to find whose it was. Without the capability each
// session is one Infer under its own request's context.
func (s *Scheduler) call(live []*work, req *sdk.StepRequest) ([][]float32, []error) {
	rows, errs := make([][]float32, len(live)), make([]error, len(live))
	one := func(i int, step func(context.Context, *sdk.StepRequest) (*sdk.StepResponse, error)) {
		resp, err := step(live[i].ctx, &sdk.StepRequest{Model: req.Model, Items: req.Items[i : i+1]})
		if err == nil {
			var v []float32
			if v, err = resp.Logits.Float32s(); err == nil {
				rows[i] = slices.Clone(v)
			}
		}
		errs[i] = err
	}
	if !s.batched {
		for i := range live {
			one(i, s.step)
		}
		return rows, errs
	}
	// A step runs for all its sessions: it ends only when every one of their requests did.
	ctx, stop := allDone(live)
	defer stop()
	resp, err := s.step(ctx, req)
	var all []float32
	if err == nil {
		all, err = resp.Logits.Float32s()
	}
	if err != nil {
		if len(live) == 1 {
			errs[0] = err
			return rows, errs
		}
		for i := range live {
			one(i, s.step)
		}
		return rows, errs
	}
	V := int(resp.Logits.Shape[1])
	for i := range live {
		rows[i] = slices.Clone(all[i*V : (i+1)*V])
	}
	return rows, errs
}

// allDone returns a context that ends when every item's context has ended, and the function
// that releases it.
func allDone(ws []*work) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	left := len(ws)
	stops := make([]func() bool, len(ws))
	for i, w := range ws {
		stops[i] = context.AfterFunc(w.ctx, func() {
			mu.Lock()
			left--
			if left == 0 {
				cancel()
			}
			mu.Unlock()
		})
	}
	return ctx, func() {
		for _, f := range stops {
			f()
		}
		cancel()
	}
}

var _ generate.Stepper = (*Session)(nil)

// OpenShared implements lm.Batcher.
func (s *Scheduler) OpenShared(ctx context.Context) (lm.StepSession, error) { return s.Open(ctx) }

// MaxBatch returns how many sessions one step advances at most: the generations a server
// should admit at once for this model (more queue for a slot).
func (s *Scheduler) MaxBatch() int { return s.opts.MaxBatch }
