package main

import (
	"context"
	"testing"

	"github.com/modelrt/modelrt/conformance"
	"github.com/modelrt/modelrt/sdk"
)

// TestOversizedRequestsAreRefused: requests beyond the context or whose logits exceed
// max_infer_bytes are refused with InvalidArgument before the logits are allocated.
func TestOversizedRequestsAreRefused(t *testing.T) {
	b := newBackend()
	ctx := context.Background()
	if _, err := b.Configure(ctx, &sdk.ConfigureRequest{Config: []byte(`{"max_infer_bytes": 1048576}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Configure(ctx, &sdk.ConfigureRequest{Config: []byte(`{"max_infer_bytes": -1}`)}); sdk.CodeOf(err) != sdk.CodeInvalidArgument {
		t.Errorf("negative max_infer_bytes: %v, want InvalidArgument", err)
	}
	if _, err := b.Configure(ctx, &sdk.ConfigureRequest{Config: []byte(`{"max_infer_bytes": 1048576}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.LoadModel(ctx, &sdk.LoadModelRequest{Name: "m", Path: modelDir}); err != nil {
		t.Fatal(err)
	}
	conformance.CheckRefusals(t, b, []conformance.Refusal{
		{Name: "200000 positions", Request: &sdk.InferRequest{Model: "m", Inputs: conformance.IDs(1, 200000, 'a')}, Want: []string{"input_ids", "200000", "n_positions"}},
		{Name: "logits over the budget", Request: &sdk.InferRequest{Model: "m", Inputs: conformance.IDs(64, 64, 'a')}, Want: []string{"input_ids", "batch 64", "max_infer_bytes", "1.0 MiB"}},
	})
	if _, err := b.Infer(ctx, &sdk.InferRequest{Model: "m", Inputs: conformance.IDs(4, 64, 'a')}); err != nil {
		t.Errorf("a request within the budget: %v", err)
	}
}
