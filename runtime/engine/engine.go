// Package engine runs modelrt pipelines: it starts the backend plugins a configuration refers
// to, configures them, loads the models once, and then runs any number of pipeline invocations
// against them — stages in dependency order, independent stages concurrently, generated text
// streamed as it comes, per-stage timings reported, cancellation honoured.
//
// An Engine is built from a loaded pipelines.Config and is safe for concurrent Runs; the daemon
// keeps one Engine per configuration and builds a new one on reload while the old one serves.
package engine

import (
	"context"
	"errors"
	"fmt"
	"github.com/modelrt/modelrt/runtime/batch"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/runtime/tokenizer"
	"github.com/modelrt/modelrt/runtime/vae"
	"github.com/modelrt/modelrt/sdk"
)

// Sentinel errors, to be checked with errors.Is.
var (
	// ErrUnknown: a pipeline, model or stage name the engine does not have.
	ErrUnknown = errors.New("engine: unknown name")
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("engine: closed")
	// ErrNoTokenizer: a stage needs the tokenizer of a model whose directory has none.
	ErrNoTokenizer = errors.New("engine: model has no tokenizer")
)

// Options are the host-side settings of an Engine.
type Options struct {
	// PluginDirs are searched for plugins named by name (plugin.SearchDirs).
	PluginDirs []string
	// LogLevel is passed to the plugins (MODELRT_LOG_LEVEL).
	LogLevel string
	// Logger receives the engine's and the plugins' records (slog.Default() when nil).
	Logger *slog.Logger
	// Pipelines restricts the engine to these pipelines: only the backends and models they
	// need are started and loaded. Empty means every backend and model of the configuration
	// (what a daemon serving raw models wants).
	Pipelines []string
	// Progress, when set, is called as backends start and models load (from New's goroutine).
	Progress func(Progress)
	// OrdinaryText makes the spelling of a special token (<|endoftext|>) in text that
	// tokenize and generate stages encode plain text, not the token: text from a network
	// client must not smuggle control tokens in (modelrt serve sets it).
	OrdinaryText bool
}

// Progress is one step of New's work, for a terminal or a log.
type Progress struct {
	// Phase is "start" (a backend plugin), "load" (a model) or "ready".
	Phase string
	// Name is the backend or model name.
	Name string
	// Index counts from 1 within the phase, out of Total.
	Index, Total int
	// Done is false when the step begins and true when it ends; Elapsed is set then.
	Done    bool
	Elapsed time.Duration
}

// Model is a loaded model as the engine serves it.
type Model struct {
	Name        string
	Task        string // pipelines task: causal-lm, vae, graph
	BackendName string
	Path        string
	Info        sdk.ModelInfo
	// ChatTemplate is the model's chat_template, nil when it declares none.
	ChatTemplate *pipelines.ChatTemplate
	backend      *backendState
	tok          *tokenizer.Tokenizer
	tokErr       error
	vae          *vae.Model // task vae
	lm           *lm.Model  // task causal-lm: the model with its scheduler as Batcher
	sched        *batch.Scheduler
}

// backendState is one started plugin.
type backendState struct {
	name   string
	plugin *plugin.Plugin
}

// Engine holds the running backends and loaded models of one configuration.
type Engine struct {
	cfg      *pipelines.Config
	log      *slog.Logger
	backends map[string]*backendState
	pipes    map[string]*pipelines.Pipeline
	ordinary bool // Options.OrdinaryText

	// slots is the model table (repository.go): one entry per model the engine serves, with
	// its state and the loaded instance; the map is fixed after New, the entries change under
	// tab.
	slots map[string]*slot
	tab   sync.Mutex
	// events receives load and unload events (OnModelEvent); pending keeps New's until then.
	events  func(ModelEvent)
	pending []ModelEvent
	bg      sync.WaitGroup // loads and unloads under way
	down    bool           // closing: the table takes no more loads or uses (under tab)

	mu     sync.Mutex
	closed bool
	runs   sync.WaitGroup
}

// New starts the backends the configuration (or opts.Pipelines) needs, sends each its config
// block, and loads every needed model once, with its tokenizer for causal-lm models. cfg must
// have loaded without errors. On error everything started so far is stopped.
func New(ctx context.Context, cfg *pipelines.Config, opts Options) (_ *Engine, err error) {
	e := &Engine{
		cfg: cfg, log: opts.Logger, backends: map[string]*backendState{},
		slots: map[string]*slot{}, pipes: map[string]*pipelines.Pipeline{}, ordinary: opts.OrdinaryText,
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	backendNames, modelNames, err := e.needs(opts.Pipelines)
	if err != nil {
		return nil, err
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(Progress) {}
	}

	for i, name := range backendNames {
		b := cfg.Backends[name]
		progress(Progress{Phase: "start", Name: name, Index: i + 1, Total: len(backendNames)})
		t0 := time.Now()
		path, err := ResolvePlugin(b, opts.PluginDirs)
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", name, err)
		}
		p, err := plugin.Start(ctx, plugin.Config{Name: name, Path: path, LogLevel: opts.LogLevel, Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", name, err)
		}
		e.backends[name] = &backendState{name: name, plugin: p}
		if err := configure(ctx, b, p); err != nil {
			return nil, err
		}
		e.log.Info("backend started", "backend", name, "plugin", path, "pid", p.Pid(), "elapsed", time.Since(t0).Round(time.Millisecond))
		progress(Progress{Phase: "start", Name: name, Index: i + 1, Total: len(backendNames), Done: true, Elapsed: time.Since(t0)})
	}

	for i, name := range modelNames {
		m := cfg.Models[name]
		progress(Progress{Phase: "load", Name: name, Index: i + 1, Total: len(modelNames)})
		t0 := time.Now()
		lm, err := e.load(ctx, m)
		if err != nil {
			return nil, err
		}
		e.slots[name] = e.newSlot(m, lm)
		e.log.Info("model loaded", "model", name, "backend", m.BackendName, "task", m.Task, "path", m.Path, "reason", ReasonStartup,
			"keep_alive", m.KeepAlive, "elapsed", time.Since(t0).Round(time.Millisecond))
		e.pending = append(e.pending, ModelEvent{Model: name, Kind: EventLoad, Reason: ReasonStartup, Elapsed: time.Since(t0)})
		progress(Progress{Phase: "load", Name: name, Index: i + 1, Total: len(modelNames), Done: true, Elapsed: time.Since(t0)})
	}
	if err := e.checkTokenizers(); err != nil {
		return nil, err
	}
	for _, sl := range e.slots {
		e.tab.Lock()
		e.armIdle(sl)
		e.tab.Unlock()
	}
	progress(Progress{Phase: "ready", Done: true})
	return e, nil
}

// needs lists the backends and models to start and load, and records the pipelines served.
func (e *Engine) needs(only []string) (backends, models []string, err error) {
	if len(only) == 0 {
		maps.Copy(e.pipes, e.cfg.Pipelines)
		for _, m := range e.cfg.Models {
			models = append(models, m.Name)
		}
		for _, b := range e.cfg.Backends {
			backends = append(backends, b.Name)
		}
		slices.Sort(models)
		slices.Sort(backends)
		return backends, models, nil
	}
	bs, ms := map[string]bool{}, map[string]bool{}
	for _, name := range only {
		p, ok := e.cfg.Pipelines[name]
		if !ok {
			return nil, nil, fmt.Errorf("%w: pipeline %q (the configuration has %s)", ErrUnknown, name, quoteList(e.cfg.PipelineNames()))
		}
		e.pipes[name] = p
		for _, m := range p.ModelNames() {
			ms[m] = true
			bs[e.cfg.Models[m].BackendName] = true
		}
		for _, b := range p.BackendNames() {
			bs[b] = true
		}
	}
	return slices.Sorted(maps.Keys(bs)), slices.Sorted(maps.Keys(ms)), nil
}

// ResolvePlugin returns the executable of a backend block: its plugin path when the block names
// a path, else the plugin looked up by name in dirs.
func ResolvePlugin(b *pipelines.Backend, dirs []string) (string, error) {
	if b.PluginPath != "" {
		return b.PluginPath, nil
	}
	return plugin.Resolve(b.Plugin, dirs)
}

// configure sends the backend's config block. A plugin without a config schema gets nothing
// unless the block sets attributes.
func configure(ctx context.Context, b *pipelines.Backend, p *plugin.Plugin) error {
	js, err := b.ConfigJSON()
	if err != nil {
		return fmt.Errorf("backend %q: config: %w", b.Name, err)
	}
	if len(p.Description().ConfigSchema.Attributes) == 0 && string(js) == "{}" {
		return nil
	}
	if _, err := p.Configure(ctx, &sdk.ConfigureRequest{Config: js}); err != nil {
		return fmt.Errorf("backend %q: configure with %s: %w", b.Name, js, err)
	}
	return nil
}

// load loads one model in its backend; causal-lm models also get their tokenizer (a model
// without tokenizer files still generates from ids).
func (e *Engine) load(ctx context.Context, m *pipelines.Model) (*Model, error) {
	bs := e.backends[m.BackendName]
	opts, err := m.OptionStrings()
	if err != nil {
		return nil, fmt.Errorf("model %q: options: %w", m.Name, err)
	}
	r, err := bs.plugin.LoadModel(ctx, &sdk.LoadModelRequest{Name: m.Name, Path: m.Path, Task: m.Task, Options: opts})
	if err != nil {
		return nil, fmt.Errorf("model %q: load %s in backend %q: %w", m.Name, m.Path, m.BackendName, err)
	}
	model := &Model{Name: m.Name, Task: m.Task, BackendName: m.BackendName, Path: m.Path, Info: r.Model, ChatTemplate: m.ChatTemplate, backend: bs}
	switch m.Task {
	case pipelines.TaskCausalLM:
		model.tok, model.tokErr = tokenizer.Load(m.Path)
		if model.lm, err = lm.FromInfo(bs.plugin, r.Model); err != nil {
			return nil, fmt.Errorf("model %q: backend %q: %w", m.Name, m.BackendName, err)
		}
		model.sched = batch.New(ctx, model.lm, batch.Options{MaxBatch: m.MaxBatch, PrefillChunk: m.PrefillChunk, Logger: e.log})
		model.lm.Batcher = model.sched
	case pipelines.TaskVAE:
		if model.vae, err = vae.FromInfo(bs.plugin, r.Model); err != nil {
			return nil, fmt.Errorf("model %q: backend %q: %w", m.Name, m.BackendName, err)
		}
	}
	return model, nil
}

// checkTokenizers fails early when a tokenize or detokenize stage, or a generate stage given a
// prompt, names a model whose tokenizer did not load.
func (e *Engine) checkTokenizers() error {
	for _, p := range e.pipes {
		for _, s := range p.Stages {
			attr := ""
			switch s.Use {
			case "tokenize", "detokenize":
				attr = "tokenizer"
			case "generate":
				if _, ok := s.Attributes["prompt"]; ok {
					attr = "model"
				}
			}
			if attr == "" || s.Attributes[attr] == nil {
				continue
			}
			for _, tr := range s.Attributes[attr].Expr.Variables() {
				if tr.RootName() != "model" || len(tr) < 2 {
					continue
				}
				name := traverserName(tr[1])
				if m := e.Model(name); m != nil && m.tokErr != nil {
					r := s.Attributes[attr].Range
					return fmt.Errorf("%s: pipeline %q stage %q: %w %q: %v", r.String(), p.Name, s.Name, ErrNoTokenizer, name, m.tokErr)
				}
			}
		}
	}
	return nil
}

// Close stops every backend plugin. It waits for running pipelines to return first; cancel their
// contexts to make that quick. It is safe to call more than once.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.runs.Wait()
	e.closeModels()
	var errs []error
	for _, b := range e.backends {
		if err := b.plugin.Close(); err != nil {
			errs = append(errs, fmt.Errorf("backend %q: %w", b.name, err))
		}
	}
	return errors.Join(errs...)
}

// Config returns the configuration the engine runs.
func (e *Engine) Config() *pipelines.Config { return e.cfg }

// Models lists the models the engine serves, sorted by name: each as it was last loaded (see
// Model).
func (e *Engine) Models() []*Model {
	e.tab.Lock()
	defer e.tab.Unlock()
	out := make([]*Model, 0, len(e.slots))
	for _, sl := range e.slots {
		out = append(out, sl.last)
	}
	slices.SortFunc(out, func(a, b *Model) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Model returns the model called name as it was last loaded (its declaration and the facts its
// backend reported), or nil when the engine does not serve it. The model may have been
// unloaded since (Index tells); a request that runs it holds it with Use.
func (e *Engine) Model(name string) *Model {
	e.tab.Lock()
	defer e.tab.Unlock()
	if sl := e.slots[name]; sl != nil {
		return sl.last
	}
	return nil
}

// Backend returns the backend serving a model, for raw Infer calls (the model is loaded there
// under its own name while it is loaded: hold it with Use).
func (e *Engine) Backend(model string) (lm.Backend, error) {
	m := e.Model(model)
	if m == nil {
		return nil, fmt.Errorf("%w: model %q", ErrUnknown, model)
	}
	return m.backend.plugin, nil
}

// encode tokenizes text for a stage: special-token spellings are text under
// Options.OrdinaryText.
func (e *Engine) encode(tok *tokenizer.Tokenizer, text string) []int {
	if e.ordinary {
		return tok.EncodeOrdinary(text)
	}
	return tok.Encode(text)
}

// LM returns the causal-lm model called name, with its continuous-batching scheduler as its
// Batcher: single-prompt generations opened with OpenStepSession share its steps.
func (e *Engine) LM(name string) (*lm.Model, error) {
	m, err := e.loaded(name)
	if err != nil {
		return nil, err
	}
	if m.lm == nil {
		return nil, fmt.Errorf("model %q is a %s model, not a causal-lm", name, m.Task)
	}
	return m.lm, nil
}

// Scheduler returns the continuous-batching scheduler of model name (nil for a model that is
// not a causal LM, or not loaded now).
func (e *Engine) Scheduler(name string) *batch.Scheduler {
	if m, err := e.loaded(name); err == nil {
		return m.sched
	}
	return nil
}

// Tokenizer returns a causal-lm model's tokenizer.
func (e *Engine) Tokenizer(model string) (*tokenizer.Tokenizer, error) {
	m := e.Model(model) // the tokenizer is files, read at load: the last load's serves
	if m == nil {
		return nil, fmt.Errorf("%w: model %q", ErrUnknown, model)
	}
	if m.tok == nil {
		if m.tokErr != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrNoTokenizer, model, m.tokErr)
		}
		return nil, fmt.Errorf("%w %q (task %s)", ErrNoTokenizer, model, m.Task)
	}
	return m.tok, nil
}

// Pipelines lists the pipelines the engine runs, sorted by name; each carries its Inputs and
// Outputs declarations.
func (e *Engine) Pipelines() []*pipelines.Pipeline {
	out := slices.Collect(maps.Values(e.pipes))
	slices.SortFunc(out, func(a, b *pipelines.Pipeline) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// BackendStatus reports one running backend plugin.
type BackendStatus struct {
	Name     string
	Plugin   string // executable path
	Pid      int
	State    string // running, restarting, failed (restarts go on with backoff), closed
	Restarts int
	// CrashesInARow, LastError and NextRestart say why a backend is not running and when the
	// host tries again (runtime/plugin.Status).
	CrashesInARow int
	LastError     string
	NextRestart   time.Time
}

// Backends reports the running backends, sorted by name.
func (e *Engine) Backends() []BackendStatus {
	var out []BackendStatus
	for _, b := range e.backends {
		st := b.plugin.Status()
		out = append(out, BackendStatus{Name: b.name, Plugin: b.plugin.Path(), Pid: b.plugin.Pid(), State: st.State.String(), Restarts: st.Restarts,
			CrashesInARow: st.CrashesInARow, LastError: st.LastError, NextRestart: st.NextRestart})
	}
	slices.SortFunc(out, func(a, b BackendStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func quoteList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}
