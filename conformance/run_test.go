package conformance

import (
	"context"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/conformance/internal/toylm"
	"github.com/modelrt/modelrt/sdk"
)

// toyCases are a logits and a generate case for toylm whose expected values come from the
// flawless toy, called directly.
func toyCases(t *testing.T, dir string) []*Case {
	t.Helper()
	ctx := context.Background()
	b := toylm.New(toylm.None)
	if _, err := b.LoadModel(ctx, &sdk.LoadModelRequest{Name: "m", Path: dir}); err != nil {
		t.Fatal(err)
	}
	ids := []int64{3, 1, 4, 1, 5, 9, 2, 6, 5}
	T := int64(len(ids))
	infer := func(ids []int64) []float32 {
		r, err := b.Infer(ctx, &sdk.InferRequest{Model: "m", Inputs: map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{1, int64(len(ids))}, ids)}})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := r.Outputs["logits"].Float32s()
		return v
	}
	logits := infer(ids)
	const newTokens = 6
	seq := append([]int64{}, ids...)
	for range newTokens {
		lg := infer(seq)
		best := 0
		for v, x := range lg[len(lg)-toylm.Vocab:] {
			if x > lg[len(lg)-toylm.Vocab+best] {
				best = v
			}
		}
		seq = append(seq, int64(best))
	}
	tol := Tolerance{Abs: 0.04, Rel: 0}
	return []*Case{
		{Name: "toy-logits", Model: dir, Task: TaskLogits, Tol: tol,
			Inputs:   map[string]*Tensor{"input_ids": {DType: sdk.Int64, Shape: []int64{1, T}, I64: ids}},
			Expected: map[string]*Tensor{"logits": {DType: sdk.Float32, Shape: []int64{1, T, toylm.Vocab}, F32: logits}}},
		{Name: "toy-generate", Model: dir, Task: TaskGenerate, Tol: tol, Params: Params{MaxNewTokens: newTokens, Greedy: true},
			Inputs:   map[string]*Tensor{"input_ids": {DType: sdk.Int64, Shape: []int64{1, T}, I64: ids}},
			Expected: map[string]*Tensor{"ids": {DType: sdk.Int64, Shape: []int64{1, T + newTokens}, I64: seq}}},
	}
}

// runnerFlawTarget names the runner check each flaw must fail (in some row).
var runnerFlawTarget = map[toylm.Flaw]string{
	toylm.FlawKVCache: "kv-cache",
	toylm.FlawBatch:   "batch",
	toylm.FlawPadding: "padding",
	toylm.FlawReload:  "reload",
	toylm.FlawNoise:   "seed",
	toylm.FlawOffset:  "cross:toy",
}

func checkResults(rep *Report, backend string) map[string]Result {
	out := map[string]Result{}
	for _, r := range rep.Rows {
		if r.Backend != backend {
			continue
		}
		for _, c := range r.Checks {
			if out[c.Name] != Fail {
				out[c.Name] = c.Result
			}
		}
	}
	return out
}

// TestRunnerCatchesFlaws: the flawless toy passes every case and check; each broken toy fails
// the check aimed at its flaw. The flawed toy runs second, beside the flawless one, so that
// the cross-backend check has something to compare.
func TestRunnerCatchesFlaws(t *testing.T) {
	dir := t.TempDir()
	cases := toyCases(t, dir)
	rep := Run(context.Background(), cases, []Target{{Name: "toy", Backend: toylm.New(toylm.None)}}, Options{})
	for _, r := range rep.Rows {
		if r.Result != Pass {
			t.Errorf("flawless toy: %s: %s: %s", r.Case, r.Result, r.Reason)
		}
	}
	for _, f := range toylm.RunnerFlaws {
		t.Run(string(f), func(t *testing.T) {
			want := runnerFlawTarget[f]
			rep := Run(context.Background(), cases, []Target{{Name: "toy", Backend: toylm.New(toylm.None)}, {Name: "flawed", Backend: toylm.New(f)}}, Options{})
			res := checkResults(rep, "flawed")
			if res[want] != Fail {
				var b strings.Builder
				WriteTable(&b, rep)
				t.Errorf("flaw %s: check %s = %q, want FAIL; checks %v\n%s", f, want, res[want], res, b.String())
			}
			if !rep.Failed() {
				t.Errorf("flaw %s: the report does not fail", f)
			}
		})
	}
}

// TestRunnerNotApplicable: a backend that cannot load a case's model reports n/a with the
// reason, never a pass, and the report does not fail because of it.
func TestRunnerNotApplicable(t *testing.T) {
	cases := toyCases(t, t.TempDir())
	cases[0].Model = "/nonexistent/model"
	rep := Run(context.Background(), cases[:1], []Target{{Name: "toy", Backend: toylm.New(toylm.None)}}, Options{})
	r := rep.Rows[0]
	if r.Result != NotApplicable || !strings.Contains(r.Reason, "NotFound") || rep.Failed() {
		t.Errorf("row = %+v; want n/a with the load error", r)
	}
	var b strings.Builder
	WriteTable(&b, rep)
	if !strings.Contains(b.String(), "toy-logits on toy: cannot load the model") {
		t.Errorf("table does not give the n/a reason:\n%s", b.String())
	}
}

// limited is the flawless toy declaring less than it can do: the inputs it lists (nil: none
// listed) and, with noSessions, OpenSession answered Unimplemented as by a backend without the
// Sessions capability. The checks must read the declaration, not try and fail.
type limited struct {
	*toylm.Backend
	inputs     []sdk.TensorSpec
	noSessions bool
}

func (b *limited) LoadModel(ctx context.Context, req *sdk.LoadModelRequest) (*sdk.LoadModelResponse, error) {
	resp, err := b.Backend.LoadModel(ctx, req)
	if err == nil {
		resp.Model.Inputs = b.inputs
	}
	return resp, err
}

func (b *limited) OpenSession(ctx context.Context, req *sdk.OpenSessionRequest) (*sdk.OpenSessionResponse, error) {
	if b.noSessions {
		return nil, sdk.Unimplemented("limited toy: no sessions")
	}
	return b.Backend.OpenSession(ctx, req)
}

// TestRunnerChecksNotApplicable: a check the model cannot express is n/a with its reason, never
// a failure, and the row still passes; a case the model cannot express at all is an n/a row.
func TestRunnerChecksNotApplicable(t *testing.T) {
	ids := sdk.TensorSpec{Name: "input_ids", DType: sdk.Int64, Shape: []int64{-1, -1}}
	mask := sdk.TensorSpec{Name: "attention_mask", DType: sdk.Int64, Shape: []int64{-1, -1}}
	fixed := func(s sdk.TensorSpec) sdk.TensorSpec { s.Shape = []int64{1, -1}; return s }
	for _, tc := range []struct {
		name    string
		backend *limited
		// want: check or row ("row:<case>") → the n/a reason it must give.
		want map[string]string
	}{
		{"no attention_mask", &limited{inputs: []sdk.TensorSpec{ids}},
			map[string]string{"padding": "padding cannot be expressed: the model declares no attention_mask input (its inputs: input_ids)"}},
		{"fixed batch", &limited{inputs: []sdk.TensorSpec{fixed(ids), fixed(mask)}},
			map[string]string{"batch": "the model's input_ids input has a fixed batch size of 1 (shape [1 -1])",
				"padding": "the padded rows need a batch: the model's input_ids input has a fixed batch size of 1"}},
		{"no sessions", &limited{noSessions: true},
			map[string]string{"kv-cache": "the backend has no sessions (Unimplemented: limited toy: no sessions)",
				"row:toy-generate": "generate needs sessions, but the backend has no sessions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.backend.Backend = toylm.New(toylm.None)
			rep := Run(context.Background(), toyCases(t, t.TempDir()), []Target{{Name: "toy", Backend: tc.backend}}, Options{})
			var b strings.Builder
			WriteTable(&b, rep)
			if rep.Failed() {
				t.Fatalf("the report fails:\n%s", b.String())
			}
			got := map[string]string{}
			for _, r := range rep.Rows {
				if r.Result == NotApplicable {
					got["row:"+r.Case] = r.Reason
				}
				for _, c := range r.Checks {
					if c.Result == NotApplicable {
						got[c.Name] = c.Detail
					}
				}
			}
			for name, reason := range tc.want {
				if !strings.Contains(got[name], reason) {
					t.Errorf("%s: n/a reason %q, want it to contain %q", name, got[name], reason)
				}
				if !strings.HasPrefix(name, "row:") && !strings.Contains(b.String(), name+": "+got[name]) {
					t.Errorf("the table does not give the reason of %s:\n%s", name, b.String())
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("n/a: %v; want only %v", got, tc.want)
			}
		})
	}
}
