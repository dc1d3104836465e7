package conformance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// from call to call (the native backend does, by about 1e-6), but a reload that reads other
	// weights or forgets a setting moves outputs far more than this.
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

// --- causal-lm.logits ---

// lmInput is a causal-lm batch: ids and an optional mask, both (B,T).
type lmInput struct {
	ids, mask []int64
	B, T      int
}

func (in lmInput) row(b int) lmInput {
	o := lmInput{ids: in.ids[b*in.T : (b+1)*in.T], B: 1, T: in.T}
	if in.mask != nil {
		o.mask = in.mask[b*in.T : (b+1)*in.T]
	}
	return o
}

// real returns row b's unpadded tokens.
func (in lmInput) real(b int) []int64 {
	r := in.row(b)
	if r.mask == nil {
		return r.ids
	}
	var out []int64
	for t, m := range r.mask {
		if m == 1 {
			out = append(out, r.ids[t])
		}
	}
	return out
}

func (in lmInput) padded() bool { return in.mask != nil && slices.Contains(in.mask, 0) }

// forward runs one Infer without a session and returns logits (B,T,V).
func forward(ctx context.Context, be sdk.Backend, model, session string, in lmInput, V int) ([]float32, error) {
	inputs := map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{int64(in.B), int64(in.T)}, slices.Clone(in.ids))}
	if in.mask != nil {
		inputs["attention_mask"] = sdk.FromInt64([]int64{int64(in.B), int64(len(in.mask) / in.B)}, slices.Clone(in.mask))
	}
	resp, err := be.Infer(ctx, &sdk.InferRequest{Model: model, Session: session, Inputs: inputs, Outputs: []string{"logits"}, Params: map[string]string{sdk.ParamLogits: "all"}})
	if err != nil {
		return nil, err
	}
	lt, ok := resp.Outputs["logits"]
	if !ok {
		return nil, fmt.Errorf("no logits output (outputs: %s)", sdk.InputNames(resp.Outputs))
	}
	want := []int64{int64(in.B), int64(in.T), int64(V)}
	if V <= 0 {
		want[2] = lastDim(lt.Shape)
	}
	if !slices.Equal(lt.Shape, want) {
		return nil, fmt.Errorf("logits shape %v, want %v", lt.Shape, want)
	}
	v, err := lt.Float32s()
	if err != nil {
		return nil, fmt.Errorf("logits: %w", err)
	}
	return slices.Clone(v), nil
}

func lastDim(s []int64) int64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

func (r *runner) logits(ctx context.Context, c *Case, l *loaded, row *Row) *outputs {
	ids := c.Inputs["input_ids"]
	in := lmInput{ids: ids.I64, B: int(ids.Shape[0]), T: int(ids.Shape[1])}
	if m, ok := c.Inputs["attention_mask"]; ok {
		in.mask = m.I64
	}
	exp := c.Expected["logits"]
	V := int(exp.Shape[2])
	be := r.t.Backend
	got, err := forward(ctx, be, l.name, "", in, V)
	if err != nil {
		row.add(failed("expected", err))
		return nil
	}
	skip := padSkip(in, V)
	row.expected(CompareFloat(got, exp.F32, exp.Shape, c.Tol, skip))
	out := &outputs{floats: map[string]*sdk.Tensor{"logits": sdk.FromFloat32(exp.Shape, got)}}
	if r.noChecks {
		return out
	}
	row.add(r.kvCache(ctx, l.name, in, got, V))
	row.add(r.batch(ctx, l.name, in, got, V))
	row.add(r.padding(ctx, l.name, in, V))
	if err := r.reload(ctx, l); err != nil {
		row.add(failed("reload", err))
	} else if again, err := forward(ctx, be, l.name, "", in, V); err != nil {
		row.add(failed("reload", err))
	} else {
		row.add(checkOf("reload", CompareFloat(again, got, exp.Shape, ReloadTol, skip)))
	}
	return out
}

// padSkip skips the logits of padding positions: they are defined but nothing may depend on them.
func padSkip(in lmInput, V int) func(int) bool {
	if in.mask == nil {
		return nil
	}
	return func(i int) bool { return in.mask[i/V] == 0 }
}

// kvCache feeds each row's real tokens one at a time through a session and compares the
// logits with the full pass (full holds the logits of in, (B,T,V)).
func (r *runner) kvCache(ctx context.Context, model string, in lmInput, full []float32, V int) Check {
	var d Diff
	for b := range in.B {
		s, err := r.t.Backend.OpenSession(ctx, &sdk.OpenSessionRequest{Model: model, BatchSize: 1})
		if err != nil {
			return failed("kv-cache", fmt.Errorf("open session: %w", err))
		}
		var steps []float32
		toks := in.real(b)
		for p, tok := range toks {
			mask := make([]int64, p+1)
			for i := range mask {
				mask[i] = 1
			}
			lg, err := forward(ctx, r.t.Backend, model, s.Session, lmInput{ids: []int64{tok}, mask: mask, B: 1, T: 1}, V)
			if err != nil {
				r.t.Backend.CloseSession(ctx, &sdk.CloseSessionRequest{Session: s.Session})
				return failed("kv-cache", fmt.Errorf("row %d step %d: %w", b, p, err))
			}
			steps = append(steps, lg...)
		}
		r.t.Backend.CloseSession(ctx, &sdk.CloseSessionRequest{Session: s.Session})
		// The reference: the row alone, unpadded, in one pass.
		alone := full[b*in.T*V : (b+1)*in.T*V]
		if in.padded() {
			var err error
			if alone, err = forward(ctx, r.t.Backend, model, "", lmInput{ids: toks, B: 1, T: len(toks)}, V); err != nil {
				return failed("kv-cache", fmt.Errorf("row %d alone: %w", b, err))
			}
		}
		d.merge(CompareFloat(steps, alone, []int64{1, int64(len(toks)), int64(V)}, KVCacheTol, nil).atRow(b))
	}
	return checkOf("kv-cache", d)
}

// batch compares rows of a batch with the same rows run one by one. A one-row case is paired
// with its reversal so that there is a batch to compare.
func (r *runner) batch(ctx context.Context, model string, in lmInput, full []float32, V int) Check {
	if in.B == 1 {
		rev := slices.Clone(in.ids)
		slices.Reverse(rev)
		two := lmInput{ids: append(slices.Clone(in.ids), rev...), B: 2, T: in.T}
		var err error
		if full, err = forward(ctx, r.t.Backend, model, "", two, V); err != nil {
			return failed("batch", fmt.Errorf("batch of 2: %w", err))
		}
		in = two
	}
	var d Diff
	for b := range in.B {
		one, err := forward(ctx, r.t.Backend, model, "", in.row(b), V)
		if err != nil {
			return failed("batch", fmt.Errorf("row %d alone: %w", b, err))
		}
		var skip func(int) bool
		if m := in.row(b).mask; m != nil {
			skip = func(i int) bool { return m[i/V] == 0 }
		}
		d.merge(CompareFloat(full[b*in.T*V:(b+1)*in.T*V], one, []int64{1, int64(in.T), int64(V)}, BatchTol, skip).atRow(b))
	}
	return checkOf("batch", d)
}

// padding compares the real positions of left-padded rows with the rows run unpadded. An
// unpadded case gets two more rows: the last two thirds of its first row, left-padded to the
// full length. The first filler is the row's own first third — the very text that came before,
// so a backend that ignores the mask sees the whole row and answers differently even when it
// would shrug off nonsense (an n-gram model backs off past a context it never saw); the second
// is the id V-1 (GPT-2's EOS, the usual pad).
func (r *runner) padding(ctx context.Context, model string, in lmInput, V int) Check {
	if !in.padded() {
		if in.T < 2 {
			return Check{Name: "padding", Result: NotApplicable, Detail: "a one-token row cannot be padded"}
		}
		k := max(1, in.T/3)
		row0 := in.real(0)
		ids := slices.Clone(row0)
		mask := ones(in.T)
		for _, fill := range [][]int64{row0[:k], slices.Repeat([]int64{int64(V - 1)}, k)} {
			ids = append(append(ids, fill...), row0[k:]...)
			mask = append(append(mask, make([]int64, k)...), ones(in.T-k)...)
		}
		in = lmInput{ids: ids, mask: mask, B: 3, T: in.T}
	}
	full, err := forward(ctx, r.t.Backend, model, "", in, V)
	if err != nil {
		return failed("padding", fmt.Errorf("padded batch: %w", err))
	}
	var d Diff
	for b := range in.B {
		toks := in.real(b)
		alone, err := forward(ctx, r.t.Backend, model, "", lmInput{ids: toks, B: 1, T: len(toks)}, V)
		if err != nil {
			return failed("padding", fmt.Errorf("row %d unpadded: %w", b, err))
		}
		pad := in.T - len(toks)
		got := full[(b*in.T+pad)*V : (b+1)*in.T*V]
		d.merge(CompareFloat(got, alone, []int64{1, int64(len(toks)), int64(V)}, PaddingTol, nil).atRow(b))
	}
	return checkOf("padding", d)
}

// --- causal-lm.generate ---

func (r *runner) generate(ctx context.Context, c *Case, l *loaded, row *Row) *outputs {
	ids := c.Inputs["input_ids"]
	exp := c.Expected["ids"]
	B, P := int(ids.Shape[0]), int(ids.Shape[1])
	prompts := make([][]int, B)
	for b := range B {
		for _, v := range ids.I64[b*P : (b+1)*P] {
			prompts[b] = append(prompts[b], int(v))
		}
	}
	greedy := generate.DefaultSampling()
	got, err := r.decode(ctx, l, prompts, c.Params.MaxNewTokens, greedy)
	if err != nil {
		row.add(failed("expected", err))
		return nil
	}
	row.expected(CompareInt(got, exp.I64, exp.Shape))
	out := &outputs{ids: got, shape: exp.Shape}
	if r.noChecks {
		return out
	}
	// kv-cache: greedy decoding by full recompute, without a session.
	if rec, err := r.recompute(ctx, l, prompts, c.Params.MaxNewTokens); err != nil {
		row.add(failed("kv-cache", err))
	} else {
		row.add(checkOf("kv-cache", CompareInt(got, rec, exp.Shape)))
	}
	// seed: two sampled runs with one seed draw the same tokens.
	s1, err1 := r.decode(ctx, l, prompts, c.Params.MaxNewTokens, seedSampling)
	s2, err2 := r.decode(ctx, l, prompts, c.Params.MaxNewTokens, seedSampling)
	if err := errors.Join(err1, err2); err != nil {
		row.add(failed("seed", err))
	} else {
		row.add(checkOf("seed", CompareInt(s2, s1, exp.Shape)))
	}
	if err := r.reload(ctx, l); err != nil {
		row.add(failed("reload", err))
	} else if again, err := r.decode(ctx, l, prompts, c.Params.MaxNewTokens, greedy); err != nil {
		row.add(failed("reload", err))
	} else {
		row.add(checkOf("reload", CompareInt(again, got, exp.Shape)))
	}
	return out
}

// decode runs runtime/generate over a session of the model; no EOS ends a row, so every row
// gets exactly n new tokens.
func (r *runner) decode(ctx context.Context, l *loaded, prompts [][]int, n int, s generate.Sampling) ([]int64, error) {
	m, err := lm.FromInfo(r.t.Backend, l.info)
	if err != nil {
		return nil, err
	}
	sess, err := m.Open(ctx, len(prompts))
	if err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	defer sess.Close()
	res, err := generate.Generate(ctx, sess, prompts, generate.Options{MaxNewTokens: n, Sampling: s})
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, row := range res.Rows {
		for _, id := range row.IDs {
			out = append(out, int64(id))
		}
	}
	return out, nil
}

// recompute decodes greedily by running the whole sequence at every step.
func (r *runner) recompute(ctx context.Context, l *loaded, prompts [][]int, n int) ([]int64, error) {
	var out []int64
	for _, p := range prompts {
		seq := make([]int64, len(p))
		for i, v := range p {
			seq[i] = int64(v)
		}
		for range n {
			lg, err := forward(ctx, r.t.Backend, l.name, "", lmInput{ids: seq, B: 1, T: len(seq)}, -1)
			if err != nil {
				return nil, fmt.Errorf("recompute at length %d: %w", len(seq), err)
			}
			V := len(lg) / len(seq)
			seq = append(seq, int64(generate.Greedy(lg[len(lg)-V:])))
		}
		out = append(out, seq...)
	}
	return out, nil
}

// --- vae.encode / vae.decode ---

func vaeIO(c *Case) (task, in string, outs []string) {
	if c.Task == TaskVAEEncode {
		return sdk.TaskVAEEncode, "image", []string{"mean", "logvar"}
	}
	return sdk.TaskVAEDecode, "latent", []string{"image"}
}

func (r *runner) vaeInfer(ctx context.Context, model, task, in string, x *sdk.Tensor, outs []string, want map[string]*Tensor) (map[string]*sdk.Tensor, error) {
	resp, err := r.t.Backend.Infer(ctx, &sdk.InferRequest{Model: model, Inputs: map[string]*sdk.Tensor{in: x}, Outputs: outs, Params: map[string]string{sdk.ParamTask: task}})
	if err != nil {
		return nil, err
	}
	res := map[string]*sdk.Tensor{}
	for _, o := range outs {
		t, ok := resp.Outputs[o]
		if !ok {
			return nil, fmt.Errorf("%s: no output %q (outputs: %s)", task, o, sdk.InputNames(resp.Outputs))
		}
		if t.DType != sdk.Float32 {
			return nil, fmt.Errorf("%s: output %q is %s, want float32", task, o, t.DType)
		}
		if len(t.Shape) != 4 || t.Shape[0] != x.Shape[0] || want[o] != nil && !slices.Equal(t.Shape[1:], want[o].Shape[1:]) {
			return nil, fmt.Errorf("%s: output %q has shape %v for input %v", task, o, t.Shape, x.Shape)
		}
		res[o] = t
	}
	return res, nil
}

func (r *runner) vae(ctx context.Context, c *Case, l *loaded, row *Row) *outputs {
	task, inName, outs := vaeIO(c)
	x := c.Inputs[inName].SDK()
	got, err := r.vaeInfer(ctx, l.name, task, inName, x, outs, c.Expected)
	if err != nil {
		row.add(failed("expected", err))
		return nil
	}
	var d Diff
	for _, o := range outs {
		g, _ := got[o].Float32s()
		e := c.Expected[o]
		d.merge(CompareFloat(g, e.F32, e.Shape, c.Tol, nil))
	}
	row.expected(d)
	out := &outputs{floats: got}
	if r.noChecks {
		return out
	}
	row.add(r.vaeBatch(ctx, l.name, task, inName, x, outs, got, c.Expected))
	if err := r.reload(ctx, l); err != nil {
		row.add(failed("reload", err))
	} else if again, err := r.vaeInfer(ctx, l.name, task, inName, x, outs, c.Expected); err != nil {
		row.add(failed("reload", err))
	} else {
		var d Diff
		for _, o := range outs {
			a, _ := again[o].Float32s()
			g, _ := got[o].Float32s()
			d.merge(CompareFloat(a, g, got[o].Shape, ReloadTol, nil))
		}
		row.add(checkOf("reload", d))
	}
	return out
}

// vaeBatch compares the batch's items with the items run one by one; a one-item case is
// paired with its negation (still in [-1,1] for an image).
func (r *runner) vaeBatch(ctx context.Context, model, task, in string, x *sdk.Tensor, outs []string, got map[string]*sdk.Tensor, want map[string]*Tensor) Check {
	xs, _ := x.Float32s()
	xs = slices.Clone(xs)
	shape := slices.Clone(x.Shape)
	if shape[0] == 1 {
		neg := make([]float32, len(xs))
		for i, v := range xs {
			neg[i] = -v
		}
		xs = append(xs, neg...)
		shape[0] = 2
		var err error
		if got, err = r.vaeInfer(ctx, model, task, in, sdk.FromFloat32(shape, xs), outs, want); err != nil {
			return failed("batch", fmt.Errorf("batch of 2: %w", err))
		}
	}
	n := len(xs) / int(shape[0])
	one := slices.Clone(shape)
	one[0] = 1
	var d Diff
	for b := range int(shape[0]) {
		alone, err := r.vaeInfer(ctx, model, task, in, sdk.FromFloat32(one, slices.Clone(xs[b*n:(b+1)*n])), outs, want)
		if err != nil {
			return failed("batch", fmt.Errorf("item %d alone: %w", b, err))
		}
		for _, o := range outs {
			g, _ := got[o].Float32s()
			a, _ := alone[o].Float32s()
			m := len(a)
			d.merge(CompareFloat(g[b*m:(b+1)*m], a, alone[o].Shape, BatchTol, nil).atRow(b))
		}
	}
	return checkOf("batch", d)
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
