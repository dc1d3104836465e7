package backend

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelrt/modelrt/native/kernels"
	"github.com/modelrt/modelrt/sdk"
)

const fixtures = "../../../testdata/models/"

// TestWeightsOptionReachesTheModel loads one checkpoint as float32 and as int8 through
// LoadModel's options and checks that Stats reports the smaller int8 weights.
func TestWeightsOptionReachesTheModel(t *testing.T) {
	ctx := context.Background()
	b := New()
	for name, opts := range map[string]map[string]string{"f32": nil, "int8": {"weights": "int8"}} {
		if _, err := b.LoadModel(ctx, &sdk.LoadModelRequest{Name: name, Path: fixtures + "gpt2-odd", Options: opts}); err != nil {
			t.Fatalf("LoadModel %s: %v", name, err)
		}
	}
	st, err := b.Stats(ctx, &sdk.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	bytes := map[string]int64{}
	for _, m := range st.Models {
		bytes[m.Name] = m.WeightBytes
	}
	if bytes["f32"] <= 0 || bytes["int8"] <= 0 || bytes["int8"]*2 > bytes["f32"] {
		t.Errorf("weight bytes f32 %d, int8 %d: want int8 under half of f32", bytes["f32"], bytes["int8"])
	}
	_, err = b.LoadModel(ctx, &sdk.LoadModelRequest{Name: "bad", Path: fixtures + "gpt2-odd", Options: map[string]string{"weights": "int3"}})
	if sdk.CodeOf(err) != sdk.CodeInvalidArgument || !strings.Contains(err.Error(), "int3") {
		t.Errorf("bad weights option: %v, want InvalidArgument naming it", err)
	}
}

func TestLoadModelErrors(t *testing.T) {
	ctx := context.Background()
	b := New()
	cases := map[string]struct {
		req  *sdk.LoadModelRequest
		code sdk.Code
		want string
	}{
		"missing dir":  {&sdk.LoadModelRequest{Name: "m", Path: "/nonexistent/dir"}, sdk.CodeNotFound, "/nonexistent/dir"},
		"no config":    {&sdk.LoadModelRequest{Name: "m", Path: fixtures}, sdk.CodeNotFound, "config.json"},
		"unknown task": {&sdk.LoadModelRequest{Name: "m", Path: fixtures + "gpt2-odd", Task: "speech"}, sdk.CodeUnimplemented, "speech"},
		"empty name":   {&sdk.LoadModelRequest{Path: fixtures + "gpt2-odd"}, sdk.CodeInvalidArgument, "empty name"},
	}
	for name, c := range cases {
		_, err := b.LoadModel(ctx, c.req)
		if sdk.CodeOf(err) != c.code || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %v containing %q", name, err, c.code, c.want)
		}
	}
	if _, err := b.OpenSession(ctx, &sdk.OpenSessionRequest{Model: "nope"}); sdk.CodeOf(err) != sdk.CodeNotFound {
		t.Errorf("OpenSession on an unknown model: %v", err)
	}
	if _, err := b.LoadModel(ctx, &sdk.LoadModelRequest{Name: "vae", Path: fixtures + "vae-tiny"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.OpenSession(ctx, &sdk.OpenSessionRequest{Model: "vae"}); sdk.CodeOf(err) != sdk.CodeFailedPrecondition {
		t.Errorf("OpenSession on a VAE: %v, want FailedPrecondition", err)
	}
}

// TestLingerHintIsOnlyAHint sends the same steps with ParamLinger well-formed, malformed and
// absent: every call succeeds and the logits are the same bits (the hint changes how the
// pool's helpers wait, never what they compute); a well-formed hint reaches kernels.Linger
// (clamped to MaxLinger) and a malformed or absent one does not.
func TestLingerHintIsOnlyAHint(t *testing.T) {
	ctx := context.Background()
	b := New()
	if _, err := b.LoadModel(ctx, &sdk.LoadModelRequest{Name: "m", Path: fixtures + "gpt2-odd"}); err != nil {
		t.Fatal(err)
	}
	var first []float32
	for _, linger := range []string{"", "3ms", "soon", "-1ms", "1h"} {
		// A well-formed hint must reach the pool (a step's linger ends after the step returns,
		// at most kernels.MaxLinger later); the others must leave no linger in force.
		wantLinger := linger == "3ms" || linger == "1h"
		if !wantLinger {
			time.Sleep(time.Until(kernels.LingerDeadline())) // let an earlier case's linger end
		}
		s, err := b.OpenSession(ctx, &sdk.OpenSessionRequest{Model: "m", BatchSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		var got []float32
		for _, ids := range [][]int64{{1, 2, 3}, {4}} {
			params := map[string]string{sdk.ParamLogits: "last"}
			if linger != "" {
				params[sdk.ParamLinger] = linger
			}
			r, err := b.Infer(ctx, &sdk.InferRequest{Model: "m", Session: s.Session, Params: params,
				Inputs: map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{1, int64(len(ids))}, ids)}})
			if err != nil {
				t.Fatalf("linger %q: %v", linger, err)
			}
			v, err := r.Outputs["logits"].Float32s()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v...)
			after := time.Now()
			if until := kernels.LingerDeadline(); wantLinger != until.After(after) || until.After(after.Add(kernels.MaxLinger)) {
				t.Errorf("linger %q: the pool lingers until %v after the step (want lingering: %v, at most %v)",
					linger, until.Sub(after), wantLinger, kernels.MaxLinger)
			}
		}
		if first == nil {
			first = got
		} else if !slices.Equal(got, first) {
			t.Errorf("linger %q: logits differ from the steps without the hint", linger)
		}
		if _, err := b.CloseSession(ctx, &sdk.CloseSessionRequest{Session: s.Session}); err != nil {
			t.Fatal(err)
		}
	}
}
