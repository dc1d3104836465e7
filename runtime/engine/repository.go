package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/sdk"
)

// The model table: each model the engine serves has a slot with its state, the instance loaded
// now (if any) and how many holders use it. A request that runs a model holds it (Use) until it
// is done; Unload waits for the holders, then stops the model's scheduler and frees it in its
// backend, touching no other model. A model with keep_alive is unloaded once nobody has held
// it for that long, and the next Use loads it again; a model unloaded on request stays
// unloaded until Load (Use then fails with a *NotLoadedError).

// ModelState is a model's state, named as KServe's (Triton's) model repository extension
// names them.
type ModelState string

const (
	StateReady       ModelState = "READY"
	StateLoading     ModelState = "LOADING"
	StateUnloading   ModelState = "UNLOADING"
	StateUnavailable ModelState = "UNAVAILABLE"
)

// Reasons of ModelEvents.
const (
	ReasonStartup   = "startup"    // New loaded it
	ReasonRequest   = "request"    // Load or Unload
	ReasonKeepAlive = "keep_alive" // unloaded after keep_alive idle, or loaded again on demand
)

// Kinds of ModelEvents.
const (
	EventLoad       = "load"
	EventLoadFailed = "load_failed"
	EventUnload     = "unload"
)

// Bounds of one load and one unload in a backend (a load that started goes on even when the
// request that asked for it is gone: it is done on a context of its own).
const (
	loadTimeout   = 10 * time.Minute
	unloadTimeout = time.Minute
	// maxPendingEvents bounds the events kept until OnModelEvent is called.
	maxPendingEvents = 1024
)

// ErrNotLoaded: the model is declared but unloaded on request (or its load failed); see
// NotLoadedError.
var ErrNotLoaded = errors.New("engine: model not loaded")

// NotLoadedError is a model that is not loaded and will not be loaded by using it: Load it.
type NotLoadedError struct {
	Model  string
	Reason string
}

func (e *NotLoadedError) Error() string {
	return fmt.Sprintf("model %q is not loaded (%s)", e.Model, e.Reason)
}

func (e *NotLoadedError) Is(target error) bool { return target == ErrNotLoaded }

// ModelEvent is a load or an unload, for metrics.
type ModelEvent struct {
	Model  string
	Kind   string // EventLoad, EventLoadFailed, EventUnload
	Reason string // ReasonStartup, ReasonRequest, ReasonKeepAlive
	// Elapsed is the load, or the unload from its start (waiting for the holders included).
	Elapsed time.Duration
	Err     error
}

// ModelStatus is one model of Index.
type ModelStatus struct {
	Name    string
	Task    string
	Backend string
	State   ModelState
	// Reason says why a model is not READY ("" when it is).
	Reason    string
	KeepAlive time.Duration
	// OnDemand: not loaded now, but the next request loads it (unloaded for idleness).
	OnDemand bool
	// InUse is how many holders use the model now.
	InUse int
}

// Available reports whether a request can use the model: loaded, loading, or loaded on demand.
func (s ModelStatus) Available() bool {
	return s.State == StateReady || s.State == StateLoading || s.OnDemand
}

type slot struct {
	decl *pipelines.Model
	// cur is the instance loaded now (nil when not); last the latest instance loaded, kept
	// for its facts while the model is unloaded.
	cur, last *Model
	state     ModelState
	reason    string
	// onDemand: unloaded (or being unloaded) for idleness, or being reloaded — Use waits and
	// loads it rather than failing.
	onDemand bool
	// reload: Load asked during an unload; the unload loads it again when done.
	reload   bool
	loadErr  error
	users    int
	lastUsed time.Time
	// changed is closed (and replaced) at every change of state and when the last holder
	// leaves.
	changed chan struct{}
	timer   *time.Timer
}

func (e *Engine) newSlot(decl *pipelines.Model, m *Model) *slot {
	return &slot{decl: decl, cur: m, last: m, state: StateReady, lastUsed: time.Now(), changed: make(chan struct{})}
}

func (sl *slot) notify() {
	close(sl.changed)
	sl.changed = make(chan struct{})
}

// wait releases e.tab until sl changes or ctx ends, and takes it again.
func (e *Engine) wait(ctx context.Context, sl *slot) error {
	ch := sl.changed
	e.tab.Unlock()
	defer e.tab.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (e *Engine) unknownModel(name string) error {
	names := make([]string, 0, len(e.slots))
	for n := range e.slots {
		names = append(names, n)
	}
	slices.Sort(names)
	return fmt.Errorf("%w: model %q is not declared in the configuration (it declares %s)", ErrUnknown, name, quoteList(names))
}

// Index reports every model of the table, sorted by name.
func (e *Engine) Index() []ModelStatus {
	e.tab.Lock()
	defer e.tab.Unlock()
	out := make([]ModelStatus, 0, len(e.slots))
	for _, sl := range e.slots {
		out = append(out, sl.status())
	}
	slices.SortFunc(out, func(a, b ModelStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Status reports one model; ok is false when the engine does not serve it.
func (e *Engine) Status(name string) (ModelStatus, bool) {
	e.tab.Lock()
	defer e.tab.Unlock()
	sl := e.slots[name]
	if sl == nil {
		return ModelStatus{}, false
	}
	return sl.status(), true
}

func (sl *slot) status() ModelStatus {
	return ModelStatus{Name: sl.decl.Name, Task: sl.decl.Task, Backend: sl.decl.BackendName, State: sl.state,
		Reason: sl.reason, KeepAlive: sl.decl.KeepAlive, OnDemand: sl.onDemand && sl.state != StateReady, InUse: sl.users}
}

// Use returns model name loaded and held: an unload waits until release is called (call it
// once; more calls do nothing). A model being loaded is waited for; one unloaded for idleness
// is loaded again first (the wait is a ModelEvent with ReasonKeepAlive); one unloaded on
// request is a *NotLoadedError; one the engine does not serve is ErrUnknown.
func (e *Engine) Use(ctx context.Context, name string) (*Model, func(), error) {
	e.tab.Lock()
	defer e.tab.Unlock()
	sl := e.slots[name]
	if sl == nil {
		return nil, nil, e.unknownModel(name)
	}
	tried := false // a load was seen under way (or started) for this call
	for {
		if e.down {
			return nil, nil, ErrClosed
		}
		switch sl.state {
		case StateReady:
			sl.users++
			m := sl.cur
			var once sync.Once
			return m, func() { once.Do(func() { e.release(sl) }) }, nil
		case StateLoading:
			tried = true
		case StateUnloading:
			if !sl.onDemand {
				return nil, nil, &NotLoadedError{Model: name, Reason: sl.reason}
			}
		case StateUnavailable:
			switch {
			case !sl.onDemand:
				return nil, nil, &NotLoadedError{Model: name, Reason: sl.reason}
			case tried && sl.loadErr != nil:
				return nil, nil, fmt.Errorf("model %q: loading it again after keep_alive: %w", name, sl.loadErr)
			case tried:
				return nil, nil, &NotLoadedError{Model: name, Reason: sl.reason}
			}
			tried = true
			e.startLoad(sl, ReasonKeepAlive)
		}
		if err := e.wait(ctx, sl); err != nil {
			return nil, nil, err
		}
	}
}

// useAll holds every model named (sorted, once each); on error it holds none.
func (e *Engine) useAll(ctx context.Context, names []string) (map[string]*Model, func(), error) {
	held := map[string]*Model{}
	var releases []func()
	release := func() {
		for _, r := range releases {
			r()
		}
	}
	names = slices.Clone(names)
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		m, r, err := e.Use(ctx, name)
		if err != nil {
			release()
			return nil, nil, err
		}
		held[name], releases = m, append(releases, r)
	}
	return held, release, nil
}

func (e *Engine) release(sl *slot) {
	e.tab.Lock()
	defer e.tab.Unlock()
	sl.users--
	sl.lastUsed = time.Now()
	if sl.users > 0 {
		return
	}
	if sl.state == StateUnloading {
		sl.notify() // the unload waits for this
		return
	}
	e.armIdle(sl)
}

// loaded returns the instance loaded now, not held.
func (e *Engine) loaded(name string) (*Model, error) {
	e.tab.Lock()
	defer e.tab.Unlock()
	sl := e.slots[name]
	switch {
	case sl == nil:
		return nil, fmt.Errorf("%w: model %q", ErrUnknown, name)
	case sl.cur == nil:
		return nil, &NotLoadedError{Model: name, Reason: string(sl.state)}
	}
	return sl.cur, nil
}

// MaxBatch is the max_batch of causal-lm model name's scheduler (whether loaded or not), 0 for
// other models.
func (e *Engine) MaxBatch(name string) int {
	m := e.Model(name)
	if m == nil || m.Task != pipelines.TaskCausalLM {
		return 0
	}
	if m.sched != nil {
		return m.sched.MaxBatch()
	}
	return 0
}

// Load loads model name in its backend, or reloads it when it is loaded (once its holders are
// done; requests meanwhile wait for the new instance). It returns when the model is READY, or
// with the load's error; a model the engine does not serve is ErrUnknown. If ctx ends first the
// load goes on.
func (e *Engine) Load(ctx context.Context, name string) error {
	e.tab.Lock()
	defer e.tab.Unlock()
	sl := e.slots[name]
	if sl == nil {
		return e.unknownModel(name)
	}
	started := false
	for {
		if e.down {
			return ErrClosed
		}
		switch sl.state {
		case StateReady:
			if started {
				return nil
			}
			sl.reload, sl.onDemand, sl.reason = true, true, "reloading"
			e.startUnload(sl, ReasonRequest)
		case StateLoading:
		case StateUnloading:
			if !started {
				sl.reload, sl.onDemand, sl.reason = true, true, "reloading"
			}
		case StateUnavailable:
			if started {
				if sl.loadErr != nil {
					return fmt.Errorf("model %q: load: %w", name, sl.loadErr)
				}
				return &NotLoadedError{Model: name, Reason: sl.reason}
			}
			e.startLoad(sl, ReasonRequest)
		}
		started = true
		if err := e.wait(ctx, sl); err != nil {
			return err
		}
	}
}

// Unload unloads model name: new requests for it fail at once (a *NotLoadedError), the ones
// holding it finish, then its scheduler stops and its backend frees it. It returns when the
// model is UNAVAILABLE (or ctx ends: the unload goes on). Unloading an unloaded model is not
// an error; one the engine does not serve is ErrUnknown.
func (e *Engine) Unload(ctx context.Context, name string) error {
	e.tab.Lock()
	defer e.tab.Unlock()
	sl := e.slots[name]
	if sl == nil {
		return e.unknownModel(name)
	}
	const why = "unloaded on request"
	started := false
	for {
		if e.down {
			return ErrClosed
		}
		switch sl.state {
		case StateReady:
			if started {
				return nil // loaded again since: a later Load won
			}
			sl.onDemand, sl.reason = false, why
			e.startUnload(sl, ReasonRequest)
		case StateLoading:
			if started {
				return nil
			}
		case StateUnloading:
			if !started {
				sl.onDemand, sl.reload, sl.reason = false, false, why
			}
		case StateUnavailable:
			if !started {
				sl.onDemand, sl.reason = false, why
			}
			return nil
		}
		if sl.state != StateLoading {
			started = true
		}
		if err := e.wait(ctx, sl); err != nil {
			return err
		}
	}
}

// startLoad (under tab) marks sl LOADING and loads it in the background.
func (e *Engine) startLoad(sl *slot, reason string) {
	sl.state, sl.reason, sl.loadErr = StateLoading, "loading", nil
	sl.notify()
	e.background(func() { e.doLoad(sl, reason) })
}

// background runs f in a goroutine that closeModels waits for.
func (e *Engine) background(f func()) {
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		f()
	}()
}

func (e *Engine) doLoad(sl *slot, reason string) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	m, err := e.load(ctx, sl.decl)
	cancel()
	elapsed := time.Since(t0)
	e.tab.Lock()
	if err != nil {
		sl.state, sl.loadErr, sl.reason = StateUnavailable, err, "load failed: "+err.Error()
	} else {
		sl.cur, sl.last, sl.state, sl.loadErr, sl.reason, sl.onDemand = m, m, StateReady, nil, "", false
		sl.lastUsed = time.Now()
		e.armIdle(sl)
	}
	sl.notify()
	e.tab.Unlock()
	if err != nil {
		e.log.Warn("model load failed", "model", sl.decl.Name, "reason", reason, "err", err, "elapsed", elapsed.Round(time.Millisecond))
		e.emit(ModelEvent{Model: sl.decl.Name, Kind: EventLoadFailed, Reason: reason, Elapsed: elapsed, Err: err})
		return
	}
	e.log.Info("model loaded", "model", sl.decl.Name, "backend", sl.decl.BackendName, "reason", reason,
		"keep_alive", sl.decl.KeepAlive, "elapsed", elapsed.Round(time.Millisecond))
	e.emit(ModelEvent{Model: sl.decl.Name, Kind: EventLoad, Reason: reason, Elapsed: elapsed})
}

// startUnload (under tab) marks sl UNLOADING and unloads it in the background once its holders
// are done.
func (e *Engine) startUnload(sl *slot, reason string) {
	sl.state = StateUnloading
	if sl.timer != nil {
		sl.timer.Stop()
	}
	sl.notify()
	e.background(func() { e.doUnload(sl, reason) })
}

func (e *Engine) doUnload(sl *slot, reason string) {
	t0 := time.Now()
	e.tab.Lock()
	holders := sl.users
	for sl.users > 0 {
		ch := sl.changed
		e.tab.Unlock()
		<-ch
		e.tab.Lock()
	}
	m, idle := sl.cur, time.Since(sl.lastUsed)
	e.tab.Unlock()

	// Nobody holds the model: its sessions are closed. Stop its scheduler, free it in the
	// backend.
	if m.sched != nil {
		m.sched.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), unloadTimeout)
	_, err := m.backend.plugin.UnloadModel(ctx, &sdk.UnloadModelRequest{Name: m.Name})
	cancel()
	if err != nil && sdk.CodeOf(err) != sdk.CodeNotFound {
		e.log.Warn("model unload: the backend did not free it", "model", m.Name, "backend", m.BackendName, "err", err)
	}
	elapsed := time.Since(t0)

	e.tab.Lock()
	sl.cur = nil
	reload := sl.reload && !e.down
	sl.reload = false
	if reload {
		sl.state, sl.reason = StateLoading, "reloading"
	} else {
		sl.state = StateUnavailable
	}
	sl.notify()
	e.tab.Unlock()
	e.log.Info("model unloaded", "model", m.Name, "backend", m.BackendName, "reason", reason, "idle", idle.Round(time.Millisecond),
		"waited_for", holders, "elapsed", elapsed.Round(time.Millisecond))
	e.emit(ModelEvent{Model: m.Name, Kind: EventUnload, Reason: reason, Elapsed: elapsed})
	if reload {
		e.doLoad(sl, ReasonRequest)
	}
}

// armIdle (under tab) starts sl's keep_alive timer when it is loaded, unused and has one.
func (e *Engine) armIdle(sl *slot) {
	ka := sl.decl.KeepAlive
	if ka <= 0 || e.down || sl.state != StateReady || sl.users > 0 {
		return
	}
	if sl.timer != nil {
		sl.timer.Stop()
	}
	sl.timer = time.AfterFunc(ka, func() { e.idle(sl) })
}

// idle unloads sl if nobody has held it for its keep_alive (a timer armed later than this one
// covers a later release).
func (e *Engine) idle(sl *slot) {
	e.tab.Lock()
	defer e.tab.Unlock()
	ka := sl.decl.KeepAlive
	if e.down || sl.state != StateReady || sl.users > 0 || time.Since(sl.lastUsed) < ka {
		return
	}
	sl.onDemand = true
	sl.reason = fmt.Sprintf("unloaded after %s idle (keep_alive); the next request loads it again", ka)
	e.startUnload(sl, ReasonKeepAlive)
}

// OnModelEvent makes f receive every load and unload from now on, after the ones so far (New's
// loads); f is called from the goroutine that loaded or unloaded, and must be quick.
func (e *Engine) OnModelEvent(f func(ModelEvent)) {
	e.tab.Lock()
	pending := e.pending
	e.pending, e.events = nil, f
	e.tab.Unlock()
	for _, ev := range pending {
		f(ev)
	}
}

func (e *Engine) emit(ev ModelEvent) {
	e.tab.Lock()
	f := e.events
	if f == nil && len(e.pending) < maxPendingEvents {
		e.pending = append(e.pending, ev)
	}
	e.tab.Unlock()
	if f != nil {
		f(ev)
	}
}

// closeModels stops the table (no more loads, unloads or uses), waits for the loads and
// unloads under way, and stops the schedulers of the loaded models. The backends free the
// models as they stop.
func (e *Engine) closeModels() {
	e.tab.Lock()
	e.down = true
	for _, sl := range e.slots {
		if sl.timer != nil {
			sl.timer.Stop()
		}
		sl.notify() // waiters see down
	}
	e.tab.Unlock()
	e.bg.Wait()
	e.tab.Lock()
	defer e.tab.Unlock()
	for _, sl := range e.slots {
		if sl.cur != nil && sl.cur.sched != nil {
			sl.cur.sched.Close()
		}
	}
}
