// Package batch is continuous batching on the host: one Scheduler per loaded causal-LM model
// advances every open generation of that model together, one backend call per step. Requests
// join and leave between steps; a long prompt is fed in chunks interleaved with the other
// sessions' decode tokens, so that a newcomer does not stall the streams already running. The
// chunk that ends a prompt runs beside the step in flight (a call of its own on the newcomer's
// session) or, between steps, in a step of its own ahead of the decode tokens, so that the
// newcomer's first token does not wait for a step of every stream (docs/server.md,
// "Newcomers: time to first token").
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
	"sync/atomic"
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
	// PromptsWithDecode runs a prompt's last (or only) chunk in the next step, with the queued
	// decode tokens. By default (false) a prompt of at most PrefillChunk tokens that comes
	// while a step runs is fed beside it, as a call of its own on its session (one such prompt
	// at a time; the next step waits for it), and the last chunks queued between steps run in
	// a step of their own, ahead of the decode tokens: a newcomer's first token does not wait
	// for a step of every stream; the streams wait for the prompt once per newcomer.
	PromptsWithDecode bool
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

	// The loop's own: the trace of steps (Logger at debug level) and the last step's end.
	trace   bool
	stepNo  int
	lastEnd time.Time
	ended   time.Time // when the last step ended (its logits were handed out)

	// running is set while the loop runs a step; side is held by a prompt fed beside it
	// (Session.sidePrefill), one at a time.
	running atomic.Bool
	side    sync.Mutex

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
	s.trace = opts.Logger.Enabled(ctx, slog.LevelDebug)
	go s.loop()
	return s
}

var traceSeq atomic.Int64

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
	sc       *Scheduler
	ls       *lm.Session
	opened   time.Time
	last     time.Time   // when the previous logits were returned (zero: none yet)
	id       int64       // trace number
	fed      int         // ids fed so far (the loop's)
	answered atomic.Bool // logits were returned to it: its prompt is fed
	closed   bool        // guarded by the scheduler's mu
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
	return &Session{sc: s, ls: ls, opened: time.Now(), id: traceSeq.Add(1)}, nil
}

// ID returns the backend's session id.
func (ss *Session) ID() string { return ss.ls.ID() }

// Step implements generate.Stepper for one row (B = 1). The mask must be all ones (it is for
// a single prompt); anything else runs as a call of its own, outside the shared steps.
func (ss *Session) Step(ctx context.Context, ids []int64, B, T int, mask []int64) ([]float32, error) {
	if B != 1 || slices.Contains(mask, 0) {
		return ss.ls.Step(ctx, ids, B, T, mask)
	}
	sc := ss.sc
	if ss.last.IsZero() && T <= sc.opts.PrefillChunk && !sc.opts.PromptsWithDecode && sc.running.Load() && sc.side.TryLock() {
		return ss.sidePrefill(ctx, ids[:T])
	}
	w := &work{s: ss, ctx: ctx, ids: slices.Clone(ids[:T]), since: time.Now(), out: make(chan result, 1)}
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
			if sc.trace {
				sc.opts.Logger.Debug("batch first token", "session", ss.id, "beside", false, "ttft_ms", float64(now.Sub(ss.opened).Microseconds())/1e3, "members", sc.memberCount())
			}
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

// memberCount returns the open sessions (for the trace).
func (s *Scheduler) memberCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members
}

// sidePrefill feeds a whole prompt (one chunk at most) as a call of its own, beside the step
// in flight, rather than after it (sc.side held; released here). On 2 cores the two calls
// share the cores until the step ends, so the first token costs about the prompt's own step
// and part of the step in flight, instead of the rest of that step and then a step.
func (ss *Session) sidePrefill(ctx context.Context, ids []int64) ([]float32, error) {
	sc := ss.sc
	defer sc.side.Unlock()
	t0 := time.Now()
	logits, err := ss.ls.Step(ctx, ids, 1, len(ids), nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	now := time.Now()
	ss.answered.Store(true)
	sc.stats.beside.Inc()
	sc.stats.wait.Observe(0)
	sc.stats.tokens.Add(float64(len(ids)))
	sc.stats.ttft.Observe(now.Sub(ss.opened).Seconds())
	if sc.trace {
		sc.opts.Logger.Debug("batch first token", "session", ss.id, "beside", true, "ttft_ms", float64(now.Sub(ss.opened).Microseconds())/1e3,
			"call_ms", float64(now.Sub(t0).Microseconds())/1e3, "prompt_tokens", len(ids), "members", sc.memberCount())
	}
	ss.last = now
	return logits, nil
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
		// Gather: wait (a little) until every open session has its next token queued. The
		// wait counts from the later of the first item's queueing and the previous step's end:
		// tokens queued while a step ran are not late, and the sessions of that step are
		// sampling its logits now. (Counting from the queueing alone split the sessions into
		// cohorts that never met again: a session that missed one step by a millisecond was
		// stepped alone, and while it ran the others queued, so they ran without it, for good.)
		from := s.pending[0].since
		if s.ended.After(from) {
			from = s.ended
		}
		deadline := from.Add(s.opts.Gather)
		for len(s.pending) > 0 && len(s.pending) < min(s.members, s.opts.MaxBatch) && !s.closed && !s.promptsFirst() {
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
		if len(s.pending) == 0 { // every queued item's session closed while we gathered
			s.mu.Unlock()
			continue
		}
		// A prompt fed beside the step that just ended finishes before the next step starts:
		// it has the cores to itself, and the streams wait for it as they would for a step of
		// its own.
		s.mu.Unlock()
		s.side.Lock()
		s.side.Unlock()
		s.mu.Lock()
		if len(s.pending) == 0 {
			s.mu.Unlock()
			continue
		}
		batch := s.take()
		s.inflight.Lock()
		s.running.Store(true)
		s.mu.Unlock()
		again := s.run(batch)
		s.running.Store(false)
		s.inflight.Unlock()
		s.ended = time.Now()
		if len(again) > 0 {
			s.mu.Lock()
			again = slices.DeleteFunc(again, func(w *work) bool { return w.s.closed })
			s.pending = append(again, s.pending...) // prompts continue first in the next step
			s.mu.Unlock()
		}
	}
}

// first reports whether w feeds the end of a prompt: its session has had no logits yet and
// what is left of its prompt fits one chunk, so the step that runs it yields its first token.
func (s *Scheduler) first(w *work) bool {
	return !w.s.answered.Load() && len(w.ids) <= s.opts.PrefillChunk
}

// promptsFirst reports whether the next step is one of prompts' last chunks, ahead of the
// decode tokens: some are queued and PromptsWithDecode is off (mu held; the loop's).
func (s *Scheduler) promptsFirst() bool {
	return !s.opts.PromptsWithDecode && slices.ContainsFunc(s.pending, s.first)
}

// take removes the next step's items from pending (mu held): up to MaxBatch in queue order,
// except that (unless PromptsWithDecode) the prompts' last chunks, when some are queued, run
// in a step of their own, ahead of the decode tokens.
func (s *Scheduler) take() []*work {
	if s.promptsFirst() {
		var batch []*work
		s.pending = slices.DeleteFunc(s.pending, func(w *work) bool {
			if len(batch) < s.opts.MaxBatch && s.first(w) {
				batch = append(batch, w)
				return true
			}
			return false
		})
		return batch
	}
	n := min(len(s.pending), s.opts.MaxBatch)
	batch := slices.Clone(s.pending[:n])
	s.pending = slices.Delete(s.pending, 0, n)
	return batch
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
	t0 := time.Now()
	rows, errs := s.call(live, req)
	t1 := time.Now()
	s.stats.tokens.Add(float64(tokens))
	if s.trace {
		s.traceStep(live, req, now, t0, t1)
	}
	for i, w := range live {
		if errs[i] != nil {
			w.out <- result{err: fmt.Errorf("model %q: step: %w", s.m.Name, errs[i])}
			continue
		}
		w.ids = w.ids[len(req.Items[i].TokenIDs):]
		w.s.fed += len(req.Items[i].TokenIDs)
		if len(w.ids) > 0 {
			again = append(again, w)
			continue
		}
		w.s.answered.Store(true)
		w.out <- result{logits: rows[i]}
	}
	return again
}

// traceStep logs one step at debug level: its rows, how long its items waited, the gap since
// the previous step ended, the backend call, and each newcomer's (first feed's) breakdown.
func (s *Scheduler) traceStep(live []*work, req *sdk.StepRequest, start, t0, t1 time.Time) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
	s.stepNo++
	dec, prompt := 0, 0
	for _, it := range req.Items {
		if len(it.TokenIDs) == 1 {
			dec++
		} else {
			prompt += len(it.TokenIDs)
		}
	}
	var gap float64
	if !s.lastEnd.IsZero() {
		gap = ms(start.Sub(s.lastEnd))
	}
	s.opts.Logger.Debug("batch step", "n", s.stepNo, "rows", len(live), "decode", dec, "prompt_tokens", prompt,
		"gap_ms", gap, "call_ms", ms(t1.Sub(t0)), "prep_ms", ms(t0.Sub(start)))
	for _, w := range live {
		if w.s.fed > 0 {
			continue
		}
		// A newcomer: the residual of the step running when it queued, then its own.
		var residual float64
		if s.lastEnd.After(w.since) {
			residual = ms(s.lastEnd.Sub(w.since))
		}
		s.opts.Logger.Debug("batch newcomer", "session", w.s.id, "step", s.stepNo, "open_to_queue_ms", ms(w.since.Sub(w.s.opened)),
			"queue_ms", ms(start.Sub(w.since)), "residual_ms", residual, "call_ms", ms(t1.Sub(t0)), "rows", len(live))
	}
	s.lastEnd = t1
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
