package engine

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/sdk"
)

// repoConfig has two models in one backend and a pipeline over the first.
const repoConfig = header + `
model "other" {
  backend    = backend.native
  path       = "GPT2_TINY"
  task       = "causal-lm"
  keep_alive = "KEEP"
}
pipeline "p" {
  input "n" {
    type    = number
    default = 4
  }
  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    prompt         = "Hello"
    max_new_tokens = input.n
  }
  output "text" {
    value = stage.gen.text
  }
}
pipeline "q" {
  stage "gen" {
    use            = "generate"
    model          = model.other
    prompt         = "Hello"
    max_new_tokens = 3
  }
  output "text" {
    value = stage.gen.text
  }
}
`

// waitFor polls cond until it holds or the limit passes (a bound on a state change, not a
// measure of speed).
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// backendModels lists the models the native plugin has loaded, and its open sessions.
func backendModels(t *testing.T, e *Engine) ([]string, int) {
	t.Helper()
	b, err := e.Backend("gpt2")
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.(sdk.StatsReporter).Stats(context.Background(), &sdk.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range st.Models {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names, st.OpenSessions
}

func state(t *testing.T, e *Engine, name string) ModelStatus {
	t.Helper()
	s, ok := e.Status(name)
	if !ok {
		t.Fatalf("no model %q in the index", name)
	}
	return s
}

// TestUnloadLoad: unloading a model frees it in its backend and touches no other model;
// pipelines over it fail naming it while the others run; loading it again serves; unknown
// names are ErrUnknown.
func TestUnloadLoad(t *testing.T) {
	e := newEngine(t, load(t, strings.ReplaceAll(repoConfig, "KEEP", "0")))
	ctx := context.Background()
	if names, _ := backendModels(t, e); !slices.Equal(names, []string{"gpt2", "other"}) {
		t.Fatalf("backend models %v", names)
	}
	if err := e.Unload(ctx, "gpt2"); err != nil {
		t.Fatal(err)
	}
	if s := state(t, e, "gpt2"); s.State != StateUnavailable || s.Available() || !strings.Contains(s.Reason, "unloaded on request") {
		t.Errorf("after Unload: %+v", s)
	}
	if s := state(t, e, "other"); s.State != StateReady {
		t.Errorf("other after unloading gpt2: %+v", s)
	}
	if names, _ := backendModels(t, e); !slices.Equal(names, []string{"other"}) {
		t.Errorf("backend models after Unload: %v", names)
	}
	_, err := e.Run(ctx, "p", nil, nil)
	var nl *NotLoadedError
	if !errors.As(err, &nl) || nl.Model != "gpt2" || !errors.Is(err, ErrNotLoaded) || !strings.Contains(err.Error(), `pipeline "p"`) {
		t.Errorf("Run over an unloaded model: %v", err)
	}
	if _, _, err := e.Use(ctx, "gpt2"); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Use of an unloaded model: %v", err)
	}
	if _, err := e.Run(ctx, "q", nil, nil); err != nil {
		t.Errorf("a pipeline over the other model: %v", err)
	}
	if err := e.Unload(ctx, "gpt2"); err != nil {
		t.Errorf("second Unload: %v", err)
	}
	if err := e.Load(ctx, "gpt2"); err != nil {
		t.Fatal(err)
	}
	if s := state(t, e, "gpt2"); s.State != StateReady || s.Reason != "" {
		t.Errorf("after Load: %+v", s)
	}
	if _, err := e.Run(ctx, "p", nil, nil); err != nil {
		t.Errorf("Run after Load: %v", err)
	}
	// Load of a loaded model reloads it.
	before := e.Model("gpt2")
	if err := e.Load(ctx, "gpt2"); err != nil {
		t.Fatal(err)
	}
	if e.Model("gpt2") == before {
		t.Error("Load of a loaded model kept the old instance")
	}
	for _, f := range []func(context.Context, string) error{e.Load, e.Unload} {
		if err := f(ctx, "nope"); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), `"gpt2", "other"`) {
			t.Errorf("unknown model: %v", err)
		}
	}
}

// TestUnloadWaitsForRun: an unload during a generation lets it finish; meanwhile new uses are
// refused; then the scheduler stops and no session or goroutine is left over.
func TestUnloadWaitsForRun(t *testing.T) {
	e := newEngine(t, load(t, strings.ReplaceAll(repoConfig, "KEEP", "0")))
	ctx := context.Background()
	goroutines := runtime.NumGoroutine()

	obs := newTextObserver()
	var once sync.Once
	unloaded := make(chan error, 1)
	streaming := make(chan struct{})
	obs.onText = func() {
		once.Do(func() {
			// Generation waits in this callback until the unload has begun: the run is
			// certainly in flight when it does.
			go func() { unloaded <- e.Unload(ctx, "gpt2") }()
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				if s, _ := e.Status("gpt2"); s.State == StateUnloading {
					break
				}
				if time.Now().After(deadline) {
					t.Error("the unload did not begin within 10s")
					break
				}
			}
			close(streaming)
		})
	}
	type out struct {
		res *Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := e.Run(ctx, "p", map[string]cty.Value{"n": cty.NumberIntVal(40)}, obs)
		done <- out{res, err}
	}()
	<-streaming
	if _, _, err := e.Use(ctx, "gpt2"); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Use during the unload: %v", err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("the run in flight: %v", r.err)
	}
	if err := <-unloaded; err != nil {
		t.Fatal(err)
	}
	if s := state(t, e, "gpt2"); s.State != StateUnavailable || s.InUse != 0 {
		t.Errorf("after the unload: %+v", s)
	}
	names, sessions := backendModels(t, e)
	if !slices.Equal(names, []string{"other"}) || sessions != 0 {
		t.Errorf("backend after the unload: models %v, %d sessions open", names, sessions)
	}
	// The scheduler's loop and the run's goroutines are gone (a margin for the runtime's own).
	waitFor(t, "goroutines back", 5*time.Second, func() bool { return runtime.NumGoroutine() <= goroutines+2 })
}

// TestKeepAlive: a model idle for its keep_alive is unloaded; the next use loads it again
// (events say why) and the model with no keep_alive stays.
func TestKeepAlive(t *testing.T) {
	e := newEngine(t, load(t, strings.ReplaceAll(repoConfig, "KEEP", "300ms")))
	var mu sync.Mutex
	var events []ModelEvent
	e.OnModelEvent(func(ev ModelEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	})
	ctx := context.Background()
	waitFor(t, "idle unload", 10*time.Second, func() bool { return state(t, e, "other").State == StateUnavailable })
	s := state(t, e, "other")
	if !s.OnDemand || !s.Available() || !strings.Contains(s.Reason, "keep_alive") {
		t.Errorf("idle model: %+v", s)
	}
	if names, _ := backendModels(t, e); !slices.Equal(names, []string{"gpt2"}) {
		t.Errorf("backend models after the idle unload: %v", names)
	}
	if _, err := e.Run(ctx, "q", nil, nil); err != nil {
		t.Fatalf("Run after the idle unload: %v", err)
	}
	if s := state(t, e, "other"); s.State != StateReady && !s.OnDemand { // (or idle again already)
		t.Errorf("after the reload: %+v", s)
	}
	if s := state(t, e, "gpt2"); s.State != StateReady {
		t.Errorf("the model without keep_alive: %+v", s)
	}
	mu.Lock()
	var got []string
	for _, ev := range events {
		got = append(got, ev.Model+":"+ev.Kind+":"+ev.Reason)
	}
	mu.Unlock()
	// (Another idle unload may follow on a slow machine.)
	want := []string{"gpt2:load:startup", "other:load:startup", "other:unload:keep_alive", "other:load:keep_alive"}
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Errorf("events %v, want %v", got, want)
	}
	// An explicit unload of an idle model makes it stay unloaded.
	waitFor(t, "idle unload again", 10*time.Second, func() bool { return state(t, e, "other").State == StateUnavailable })
	if err := e.Unload(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Run(ctx, "q", nil, nil); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Run after an explicit unload of an idle model: %v", err)
	}
}
