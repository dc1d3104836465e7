package conformance

// The causal-lm cases (logits, generate) and their checks without expected values.

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/sdk"
)

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
	if why := l.lacksInput("attention_mask"); why != "" && in.padded() {
		row.Result, row.Reason = NotApplicable, "the case pads its rows, but "+why
		return nil
	}
	if why := l.fixedBatch("input_ids"); why != "" && in.B > 1 {
		row.Result, row.Reason = NotApplicable, fmt.Sprintf("the case has %d rows, but %s", in.B, why)
		return nil
	}
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
	row.add(r.kvCache(ctx, l, in, got, V))
	row.add(r.batch(ctx, l, in, got, V))
	row.add(r.padding(ctx, l, in, V))
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
// logits with the full pass (full holds the logits of in, (B,T,V)). It is n/a for a backend
// without sessions. The all-ones mask of each step goes only to a model that declares one.
func (r *runner) kvCache(ctx context.Context, l *loaded, in lmInput, full []float32, V int) Check {
	model := l.name
	withMask := l.lacksInput("attention_mask") == ""
	var d Diff
	for b := range in.B {
		s, err := r.t.Backend.OpenSession(ctx, &sdk.OpenSessionRequest{Model: model, BatchSize: 1})
		if why := noSessions(err); why != "" {
			return notApplicable("kv-cache", why)
		}
		if err != nil {
			return failed("kv-cache", fmt.Errorf("open session: %w", err))
		}
		var steps []float32
		toks := in.real(b)
		for p, tok := range toks {
			var mask []int64
			if withMask {
				mask = ones(p + 1)
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
// with its reversal so that there is a batch to compare. It is n/a for a model whose batch
// size is fixed at 1.
func (r *runner) batch(ctx context.Context, l *loaded, in lmInput, full []float32, V int) Check {
	model := l.name
	if why := l.fixedBatch("input_ids"); why != "" {
		return notApplicable("batch", why)
	}
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
// is the id V-1 (GPT-2's EOS, the usual pad). It is n/a for a model that cannot express
// padding (no attention_mask input, such as a plain torch.onnx.export of GPT-2) or take a
// batch.
func (r *runner) padding(ctx context.Context, l *loaded, in lmInput, V int) Check {
	model := l.name
	if why := l.lacksInput("attention_mask"); why != "" {
		return notApplicable("padding", "padding cannot be expressed: "+why)
	}
	if why := l.fixedBatch("input_ids"); why != "" && (in.B > 1 || !in.padded()) {
		return notApplicable("padding", "the padded rows need a batch: "+why)
	}
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
	if why := l.fixedBatch("input_ids"); why != "" && B > 1 {
		row.Result, row.Reason = NotApplicable, fmt.Sprintf("the case has %d prompts, but %s", B, why)
		return nil
	}
	prompts := make([][]int, B)
	for b := range B {
		for _, v := range ids.I64[b*P : (b+1)*P] {
			prompts[b] = append(prompts[b], int(v))
		}
	}
	greedy := generate.DefaultSampling()
	got, err := r.decode(ctx, l, prompts, c.Params.MaxNewTokens, greedy)
	if why := noSessions(err); why != "" {
		// The decode loop (runtime/generate) runs in a session; the case cannot be run.
		row.Result, row.Reason = NotApplicable, "generate needs sessions, but "+why
		return nil
	}
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
	// batching: through the host's scheduler, alone and together, the same ids.
	row.add(r.batching(ctx, l, prompts, c.Params.MaxNewTokens))
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
