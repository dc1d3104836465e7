package engine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/pipelines"
)

// Observer receives a run's events as they happen. Its methods are called from the goroutines
// of concurrently running stages, so an implementation must be safe for concurrent use; they
// should return quickly (a slow OnText slows generation). Embed NopObserver to implement only
// some of them.
type Observer interface {
	// OnStageStart is called when a stage's dependencies are done and it starts.
	OnStageStart(stage, use string)
	// OnStageEnd is called when a stage finishes, with its timing and its error (nil on
	// success; a stage skipped because the run failed elsewhere is not reported).
	OnStageEnd(stage string, t StageTiming, err error)
	// OnText receives generated text of a generate stage as it becomes final: row is the
	// batch row (0 for a single prompt); the deltas concatenate to the stage's text output.
	OnText(stage string, row int, delta string)
}

// NopObserver ignores every event.
type NopObserver struct{}

func (NopObserver) OnStageStart(string, string)                {}
func (NopObserver) OnStageEnd(string, StageTiming, error)      {}
func (NopObserver) OnText(stage string, row int, delta string) {}

// StageTiming is when one stage ran, relative to the start of the run.
type StageTiming struct {
	Stage    string
	Use      string
	Start    time.Duration
	Duration time.Duration
	// Generate is set for generate stages.
	Generate *GenerateStats
}

// GenerateStats are the decode figures of a generate stage.
type GenerateStats struct {
	PromptTokens     int
	GeneratedTokens  int
	PrefillMS        float64
	DecodeTokensPerS float64
	FinishReason     string
}

// Result is the outcome of a run.
type Result struct {
	Pipeline string
	// Outputs are the pipeline's output values; tensors and images are capsules whose payload
	// is an *sdk.Tensor (see TensorOf).
	Outputs map[string]cty.Value
	// Stages are the stages' timings in the pipeline's (topological) order.
	Stages []StageTiming
	Total  time.Duration
}

// DiagnosticsError is a run failure that points into the configuration: inputs that do not bind,
// a stage attribute whose value is wrong once known, an output that does not evaluate. The CLI
// renders Diags with source snippets (pipelines.WriteDiagnostics).
type DiagnosticsError struct {
	Diags hcl.Diagnostics
}

func (e *DiagnosticsError) Error() string { return e.Diags.Error() }

// StageError is a stage that failed while running.
type StageError struct {
	Pipeline, Stage, Use string
	// Range is the stage block's declaration.
	Range hcl.Range
	Err   error
}

func (e *StageError) Error() string {
	return fmt.Sprintf("%s: pipeline %q stage %q (%s): %v", e.Range.String(), e.Pipeline, e.Stage, e.Use, e.Err)
}

func (e *StageError) Unwrap() error { return e.Err }

// BindText binds command-line inputs (`--input name=value`, text converted to each input's type)
// for Run.
func (e *Engine) BindText(pipeline string, raw map[string]string) (map[string]cty.Value, error) {
	p, err := e.pipeline(pipeline)
	if err != nil {
		return nil, err
	}
	vals, diags := p.BindInputs(raw)
	if diags.HasErrors() {
		return nil, &DiagnosticsError{Diags: diags}
	}
	return vals, nil
}

func (e *Engine) pipeline(name string) (*pipelines.Pipeline, error) {
	p := e.pipes[name]
	if p == nil {
		names := make([]string, 0, len(e.pipes))
		for _, q := range e.Pipelines() {
			names = append(names, q.Name)
		}
		return nil, fmt.Errorf("%w: pipeline %q (the engine runs %s)", ErrUnknown, name, quoteList(names))
	}
	return p, nil
}

// Run runs a pipeline with the given input values (converted to the declared input types;
// absent inputs take their defaults, a missing required one is a *DiagnosticsError). Each stage
// starts as soon as the stages it depends on are done, so independent stages run concurrently;
// its attributes are evaluated then, with the real outputs of its dependencies. The first stage
// error cancels the others and is returned as a *StageError. Cancelling ctx stops the run:
// generation stops at the next token and the backend sessions are closed.
func (e *Engine) Run(ctx context.Context, pipeline string, inputs map[string]cty.Value, obs Observer) (*Result, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	e.runs.Add(1)
	e.mu.Unlock()
	defer e.runs.Done()

	p, err := e.pipeline(pipeline)
	if err != nil {
		return nil, err
	}
	if obs == nil {
		obs = NopObserver{}
	}
	bound, diags := p.BindInputValues(inputs)
	if diags.HasErrors() {
		return nil, &DiagnosticsError{Diags: diags}
	}
	// The pipeline's models are held for the whole run: an unload waits for it, and a model
	// unloaded for idleness is loaded again first. One unloaded on request fails the run here,
	// before any stage starts.
	held, release, err := e.useAll(ctx, p.ModelNames())
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: %w", p.Name, err)
	}
	defer release()
	r := &run{e: e, p: p, obs: obs, inputs: bound, t0: time.Now(), held: held,
		outs: map[string]map[string]cty.Value{}, timing: map[string]StageTiming{}}
	if err := r.schedule(ctx); err != nil {
		return nil, err
	}
	outs, diags := pipelines.EvalOutputs(p, pipelines.Values{Inputs: bound, Stages: r.outs})
	if diags.HasErrors() {
		return nil, &DiagnosticsError{Diags: diags}
	}
	res := &Result{Pipeline: p.Name, Outputs: outs, Total: time.Since(r.t0)}
	for _, s := range p.Stages {
		res.Stages = append(res.Stages, r.timing[s.Name])
	}
	e.log.Debug("pipeline done", "pipeline", p.Name, "stages", len(p.Stages), "elapsed", res.Total.Round(time.Microsecond))
	return res, nil
}

// run is one invocation of a pipeline.
type run struct {
	e      *Engine
	p      *pipelines.Pipeline
	obs    Observer
	inputs map[string]cty.Value
	t0     time.Time
	held   map[string]*Model // the models the run holds (Use), by name

	// outs and timing are written by schedule's collecting goroutine only, and read once
	// every stage has finished.
	outs   map[string]map[string]cty.Value
	timing map[string]StageTiming
}

// schedule runs every stage in its own goroutine, started when its dependencies are done: a DAG
// schedule rather than Waves' barriers, so a slow stage holds back only the stages that need it.
func (r *run) schedule(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	// Each stage has a slot, made before any goroutine starts so the map is only read
	// concurrently; a slot's outputs are written before its done channel is closed, which
	// orders the write before every read by a dependent stage.
	type slot struct {
		done chan struct{}
		outs map[string]cty.Value
	}
	slots := make(map[string]*slot, len(r.p.Stages))
	for _, s := range r.p.Stages {
		slots[s.Name] = &slot{done: make(chan struct{})}
	}
	type result struct {
		stage *pipelines.Stage
		outs  map[string]cty.Value
		t     StageTiming
		err   error
	}
	results := make(chan result)
	for _, s := range r.p.Stages {
		go func() {
			for _, d := range s.DependsOn {
				select {
				case <-slots[d].done:
				case <-ctx.Done():
					results <- result{stage: s, err: ctx.Err()}
					return
				}
			}
			vals := pipelines.Values{Inputs: r.inputs, Stages: make(map[string]map[string]cty.Value, len(s.DependsOn))}
			for _, d := range s.DependsOn {
				vals.Stages[d] = slots[d].outs
			}
			outs, t, err := r.stage(ctx, s, vals)
			results <- result{stage: s, outs: outs, t: t, err: err}
		}()
	}
	var first error
	for range r.p.Stages {
		res := <-results
		if res.err != nil {
			if first == nil {
				first = res.err
				cancel()
			}
			continue
		}
		r.outs[res.stage.Name] = res.outs
		r.timing[res.stage.Name] = res.t
		sl := slots[res.stage.Name]
		sl.outs = res.outs
		close(sl.done)
	}
	if first != nil && parent.Err() != nil {
		// The caller cancelled: say so rather than which stage noticed first.
		return fmt.Errorf("pipeline %q: %w", r.p.Name, context.Cause(parent))
	}
	return first
}

// stage evaluates a stage's attributes and runs it.
func (r *run) stage(ctx context.Context, s *pipelines.Stage, vals pipelines.Values) (map[string]cty.Value, StageTiming, error) {
	t := StageTiming{Stage: s.Name, Use: s.Use, Start: time.Since(r.t0)}
	args, diags := pipelines.EvalStage(s, vals)
	if diags.HasErrors() {
		return nil, t, &DiagnosticsError{Diags: diags}
	}
	impl := stageImpls[s.Use]
	if impl == nil {
		return nil, t, r.fail(s, fmt.Errorf("%w: stage type %q has no implementation in this engine", ErrUnknown, s.Use))
	}
	r.obs.OnStageStart(s.Name, s.Use)
	start := time.Now()
	call := &stageCall{run: r, s: s, args: args, timing: &t}
	outs, err := impl(ctx, call)
	t.Duration = time.Since(start)
	if err != nil {
		err = r.fail(s, err)
	}
	r.obs.OnStageEnd(s.Name, t, err)
	if err == nil {
		r.e.log.Debug("stage done", "pipeline", r.p.Name, "stage", s.Name, "use", s.Use, "elapsed", t.Duration.Round(time.Microsecond))
	} else {
		r.e.log.Log(ctx, slog.LevelDebug, "stage failed", "pipeline", r.p.Name, "stage", s.Name, "err", err)
	}
	return outs, t, err
}

func (r *run) fail(s *pipelines.Stage, err error) error {
	return &StageError{Pipeline: r.p.Name, Stage: s.Name, Use: s.Use, Range: s.DeclRange, Err: err}
}

func traverserName(t hcl.Traverser) string {
	switch t := t.(type) {
	case hcl.TraverseAttr:
		return t.Name
	case hcl.TraverseIndex:
		if t.Key.Type() == cty.String && t.Key.IsKnown() && !t.Key.IsNull() {
			return t.Key.AsString()
		}
	}
	return ""
}
