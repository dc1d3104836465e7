package backend_test

import (
	"context"
	"testing"

	"github.com/modelrt/modelrt/plugins/onnxrt/backend"
	"github.com/modelrt/modelrt/sdk"
)

// TestStepModeInMetadata: the plugin (the real process) advertises the step capability; a
// graph with attention_mask is stepped as one padded batch (metadata step = batched), the plain
// export without it one session after another (step = sequential), and both step.
func TestStepModeInMetadata(t *testing.T) {
	p := startPlugin(t)
	ctx := context.Background()
	d, err := p.Describe(ctx, &sdk.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !sdk.HasCapability(d, sdk.CapabilityStep) {
		t.Fatalf("capabilities %v lack %q", d.Capabilities, sdk.CapabilityStep)
	}
	for dir, want := range map[string]string{"gpt2-odd-onnx-optimum-op17": backend.StepBatched, "gpt2-odd-onnx-plain-op14": backend.StepSequential} {
		r, err := p.LoadModel(ctx, &sdk.LoadModelRequest{Name: dir, Path: fixture(dir)})
		if err != nil {
			t.Fatalf("load %s: %v", dir, err)
		}
		if got := r.Model.Metadata[backend.MetaStep]; got != want {
			t.Errorf("%s: metadata %s = %q, want %q", dir, backend.MetaStep, got, want)
		}
		req := &sdk.StepRequest{Model: dir}
		for i := range 3 {
			s, err := p.OpenSession(ctx, &sdk.OpenSessionRequest{Model: dir, BatchSize: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer p.CloseSession(ctx, &sdk.CloseSessionRequest{Session: s.Session})
			req.Items = append(req.Items, sdk.StepItem{Session: s.Session, TokenIDs: []int64{int64(i + 1)}})
		}
		for range 2 {
			resp, err := p.Step(ctx, req)
			if err != nil {
				t.Fatalf("%s: Step: %v", dir, err)
			}
			if sh := resp.Logits.Shape; len(sh) != 2 || sh[0] != 3 || sh[1] != 384 {
				t.Fatalf("%s: Step logits shape %v, want [3 384]", dir, sh)
			}
		}
	}
}
