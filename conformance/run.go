package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/sdk"
)

// Tolerances of the checks that need no expected values. An element passes when
// |got − want| ≤ Abs + Rel·|want|.
var (
	// KVCacheTol: logits fed one token at a time through a session against one full pass.
	// The arithmetic differs (attention over a growing cache), so a little float noise is allowed.
	KVCacheTol = Tolerance{Abs: 1e-4, Rel: 1e-4}
	// BatchTol: rows of a batch against the same rows run one by one.
	BatchTol = Tolerance{Abs: 1e-4, Rel: 1e-4}
	// PaddingTol: the real positions of a left-padded row against the row run unpadded.
	PaddingTol = Tolerance{Abs: 1e-4, Rel: 1e-4}
	// ReloadTol: the same inputs after unloading and loading the model again. Identical up to
	// the order of float sums: a backend that splits work across threads may round differently
	// from call to call, but a reload that reads other weights or forgets a setting moves
	// outputs far more than this. (Both first-party backends are bitwise identical on reload:
	// 0 on every repository case since native/kernels fixed its summation order.)
	ReloadTol = Tolerance{Abs: 1e-5, Rel: 1e-5}
)

// CrossFactor scales a case's tolerance when two backends are compared with each other: each
// is within the tolerance of the reference, so they are within twice it of each other.
const CrossFactor = 2

// seedSampling is the sampler of the fixed-seed check: plain temperature-1 sampling.
var seedSampling = generate.Sampling{Temperature: 1, TopP: 1, RepetitionPenalty: 1, Seed: 20261128}

// Result is the outcome of a row or a check.
type Result string

// Results.
const (
	Pass          Result = "pass"
	Fail          Result = "FAIL"
	NotApplicable Result = "n/a"
)

// Target is a backend to run cases on: a started plugin, or any in-process backend.
type Target struct {
	Name    string
	Backend lm.Backend
}

// Row is the outcome of one case on one backend.
type Row struct {
	Case    string `json:"case"`
	File    string `json:"file"`
	Task    string `json:"task"`
	Backend string `json:"backend"`
	Result  Result `json:"result"`
	// Reason says why a row is n/a, or what failed first.
	Reason string `json:"reason,omitempty"`
	// MaxAbs and MaxRel are the errors against the case's expected values.
	MaxAbs   float64       `json:"max_abs_err"`
	MaxRel   float64       `json:"max_rel_err"`
	Duration time.Duration `json:"-"`
	Millis   float64       `json:"time_ms"`
	Checks   []Check       `json:"checks,omitempty"`
}

// Check is one comparison within a row: "expected", or a check without expected values
// ("kv-cache", "batch", "padding", "reload", "seed", "cross:<backend>").
type Check struct {
	Name   string  `json:"name"`
	Result Result  `json:"result"`
	MaxAbs float64 `json:"max_abs_err"`
	MaxRel float64 `json:"max_rel_err"`
	Detail string  `json:"detail,omitempty"`
}

// Report is the outcome of a run.
type Report struct {
	Rows []Row `json:"rows"`
}

// Failed reports whether any row failed.
func (r *Report) Failed() bool {
	return slices.ContainsFunc(r.Rows, func(x Row) bool { return x.Result == Fail })
}

// Options tune Run.
type Options struct {
	// NoChecks runs only the comparisons with expected values.
	NoChecks bool
	// OnRow is called as each row is done (progress); the report also has every row.
	OnRow func(Row)
	// Logger receives progress records (slog.Default() when nil).
	Logger *slog.Logger
}

// outputs are what one case produced on one backend, kept for the cross-backend check.
type outputs struct {
	floats map[string]*sdk.Tensor
	ids    []int64
	shape  []int64
}

// Run runs every case on every target that can load the case's model directory. A case whose
// model a target cannot load is NotApplicable for it, with the load error as the reason.
// Rows come in case order, targets in the given order within a case.
func Run(ctx context.Context, cases []*Case, targets []Target, opts Options) *Report {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	rep := &Report{}
	runners := make([]*runner, len(targets))
	for i, t := range targets {
		runners[i] = &runner{t: t, loaded: map[string]*loaded{}, noChecks: opts.NoChecks}
	}
	defer func() {
		for _, r := range runners {
			r.unloadAll()
		}
	}()
	for _, c := range cases {
		var ref *outputs
		var refName string
		var refTol Tolerance
		for _, r := range runners {
			start := time.Now()
			row, out := r.run(ctx, c)
			if out != nil && row.Result != NotApplicable {
				if ref == nil {
					ref, refName, refTol = out, r.t.Name, c.Tol
				} else {
					tol := Tolerance{Abs: refTol.Abs * CrossFactor, Rel: refTol.Rel * CrossFactor}
					row.add(compareOutputs("cross:"+refName, out, ref, tol, c))
				}
			}
			row.Duration = time.Since(start)
			row.Millis = float64(row.Duration.Microseconds()) / 1000
			log.Info("conformance", "case", c.Name, "backend", r.t.Name, "result", row.Result, "max_abs_err", row.MaxAbs, "ms", row.Millis)
			rep.Rows = append(rep.Rows, row)
			if opts.OnRow != nil {
				opts.OnRow(row)
			}
		}
	}
	return rep
}

// add appends a check and fails the row when the check failed.
func (row *Row) add(ch Check) {
	row.Checks = append(row.Checks, ch)
	if ch.Result == Fail && row.Result != Fail {
		row.Result = Fail
		row.Reason = ch.Name + ": " + ch.Detail
	}
}

func checkOf(name string, d Diff) Check {
	ch := Check{Name: name, Result: Pass, MaxAbs: d.MaxAbs, MaxRel: d.MaxRel, Detail: d.String()}
	if !d.OK() {
		ch.Result = Fail
	}
	return ch
}

func failed(name string, err error) Check {
	return Check{Name: name, Result: Fail, Detail: err.Error()}
}

// notApplicable is a check the model cannot express: n/a with the reason, never a failure.
func notApplicable(name, reason string) Check {
	return Check{Name: name, Result: NotApplicable, Detail: reason}
}

// What a check may need that a model can lack. Each is learnt from what the model declares
// (ModelInfo.Inputs) or from the backend's answer when the check asks for it (Unimplemented:
// the backend has no such capability), never from a failure of the computation itself: a
// backend that declares an input and then refuses it fails.

// lacksInput says why the model cannot take input name ("" when it can): it declares inputs and
// name is not among them. A model that declares no inputs is taken to accept what its task
// allows.
func (l *loaded) lacksInput(name string) string {
	if len(l.info.Inputs) == 0 {
		return ""
	}
	var names []string
	for _, in := range l.info.Inputs {
		if in.Name == name {
			return ""
		}
		names = append(names, in.Name)
	}
	return fmt.Sprintf("the model declares no %s input (its inputs: %s)", name, strings.Join(names, ", "))
}

// fixedBatch says why the model cannot take a batch of more than one item through input name
// ("" when it can): it declares that input with a static batch dimension of 1.
func (l *loaded) fixedBatch(name string) string {
	for _, in := range l.info.Inputs {
		if in.Name == name && len(in.Shape) > 0 && in.Shape[0] == 1 {
			return fmt.Sprintf("the model's %s input has a fixed batch size of 1 (shape %v)", name, in.Shape)
		}
	}
	return ""
}

// noSessions says why a backend cannot open a session ("" when err is another failure): it
// answered OpenSession with Unimplemented, as a backend without the Sessions capability does.
func noSessions(err error) string {
	if sdk.CodeOf(err) != sdk.CodeUnimplemented {
		return ""
	}
	return fmt.Sprintf("the backend has no sessions (%v)", err)
}

type loaded struct {
	name string
	info sdk.ModelInfo
	req  *sdk.LoadModelRequest
	err  error
}

// runner runs cases on one target and keeps the models it loaded.
type runner struct {
	t        Target
	loaded   map[string]*loaded // by task + "\x00" + dir
	seq      int
	noChecks bool
}

func (r *runner) load(ctx context.Context, dir, task string) *loaded {
	key := task + "\x00" + dir
	if l, ok := r.loaded[key]; ok {
		return l
	}
	r.seq++
	l := &loaded{name: fmt.Sprintf("conformance-%d", r.seq)}
	l.req = &sdk.LoadModelRequest{Name: l.name, Path: dir, Task: task}
	resp, err := r.t.Backend.LoadModel(ctx, l.req)
	if err != nil {
		l.err = err
	} else {
		l.info = resp.Model
	}
	r.loaded[key] = l
	return l
}

func (r *runner) reload(ctx context.Context, l *loaded) error {
	if _, err := r.t.Backend.UnloadModel(ctx, &sdk.UnloadModelRequest{Name: l.name}); err != nil {
		return fmt.Errorf("unload: %w", err)
	}
	resp, err := r.t.Backend.LoadModel(ctx, l.req)
	if err != nil {
		l.err = err
		return fmt.Errorf("load again: %w", err)
	}
	l.info = resp.Model
	return nil
}

func (r *runner) unloadAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, l := range r.loaded {
		if l.err == nil {
			r.t.Backend.UnloadModel(ctx, &sdk.UnloadModelRequest{Name: l.name})
		}
	}
}

func (r *runner) run(ctx context.Context, c *Case) (Row, *outputs) {
	row := Row{Case: c.Name, File: c.File, Task: c.Task, Backend: r.t.Name, Result: Pass}
	l := r.load(ctx, c.Model, c.LoadTask())
	if l.err != nil {
		row.Result = NotApplicable
		row.Reason = fmt.Sprintf("cannot load the model: %v", l.err)
		return row, nil
	}
	var out *outputs
	switch c.Task {
	case TaskLogits:
		out = r.logits(ctx, c, l, &row)
	case TaskGenerate:
		out = r.generate(ctx, c, l, &row)
	case TaskVAEEncode, TaskVAEDecode:
		out = r.vae(ctx, c, l, &row)
	}
	if ctx.Err() != nil && row.Result != Fail {
		row.add(failed("run", ctx.Err()))
	}
	return row, out
}

func (row *Row) expected(d Diff) {
	row.MaxAbs, row.MaxRel = d.MaxAbs, d.MaxRel
	row.add(checkOf("expected", d))
}

// compareOutputs compares one backend's outputs with another's for the same case.
func compareOutputs(name string, got, ref *outputs, tol Tolerance, c *Case) Check {
	if ref.ids != nil || got.ids != nil {
		if got.ids == nil || ref.ids == nil {
			return Check{Name: name, Result: Fail, Detail: "one backend produced ids, the other did not"}
		}
		return checkOf(name, CompareInt(got.ids, ref.ids, ref.shape))
	}
	var skip func(int) bool
	if m, ok := c.Inputs["attention_mask"]; ok && c.Task == TaskLogits {
		V := int(c.Expected["logits"].Shape[2])
		skip = padSkip(lmInput{mask: m.I64}, V)
	}
	var d Diff
	for out, rt := range ref.floats {
		gt, ok := got.floats[out]
		if !ok || !slices.Equal(gt.Shape, rt.Shape) {
			return Check{Name: name, Result: Fail, Detail: fmt.Sprintf("output %q missing or of another shape", out)}
		}
		g, _ := gt.Float32s()
		r, _ := rt.Float32s()
		d.merge(CompareFloat(g, r, rt.Shape, tol, skip))
	}
	return checkOf(name, d)
}

// PluginSpec names a backend plugin binary to start for Run.
type PluginSpec struct {
	Name string
	Path string
	Env  []string
}

// StartPlugins starts each plugin as a real process and returns them as targets, with a
// function that stops them all. When one cannot start, the ones already started are stopped.
func StartPlugins(ctx context.Context, specs []PluginSpec, logger *slog.Logger, logLevel string) ([]Target, func(), error) {
	var ps []*plugin.Plugin
	stop := func() {
		for _, p := range ps {
			p.Close()
		}
	}
	var targets []Target
	for _, s := range specs {
		p, err := plugin.Start(ctx, plugin.Config{Name: s.Name, Path: s.Path, Env: s.Env, Logger: logger, LogLevel: logLevel})
		if err != nil {
			stop()
			return nil, func() {}, fmt.Errorf("start backend %s: %w", s.Name, err)
		}
		ps = append(ps, p)
		targets = append(targets, Target{Name: s.Name, Backend: p})
	}
	return targets, stop, nil
}
