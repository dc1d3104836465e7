package backend_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/modelrt/modelrt/conformance"
	"github.com/modelrt/modelrt/sdk"
)

// TestOversizedRequestsAreRefused sends the onnxrt plugin (the real process) requests it must
// refuse before allocating or running anything: a [1,200000] prompt to a 32-position model, a
// batch whose logits exceed max_infer_bytes, an id outside the vocabulary, and a VAE latent
// beyond sample_size × max_image_scale. Each is InvalidArgument naming the input and the limit,
// and the process is the same afterwards.
func TestOversizedRequestsAreRefused(t *testing.T) {
	p := startPlugin(t)
	ctx := context.Background()
	if _, err := p.Configure(ctx, &sdk.ConfigureRequest{Config: json.RawMessage(`{"max_infer_bytes": 1048576}`)}); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{"lm": "gpt2-odd-onnx-optimum-op17", "vae": "vae-tiny-onnx"} {
		if _, err := p.LoadModel(ctx, &sdk.LoadModelRequest{Name: name, Path: fixture(dir)}); err != nil {
			t.Fatalf("load %s: %v", dir, err)
		}
	}
	pid := p.Pid()
	conformance.CheckRefusals(t, p, []conformance.Refusal{
		{Name: "200000 positions", Request: &sdk.InferRequest{Model: "lm", Inputs: conformance.IDs(1, 200000, 0)}, Want: []string{"input_ids", "200000", "n_positions = 32"}},
		{Name: "batch over the budget", Request: &sdk.InferRequest{Model: "lm", Inputs: conformance.IDs(64, 32, 0)}, Want: []string{"input_ids", "batch 64", "max_infer_bytes", "1.0 MiB"}},
		{Name: "id outside the vocabulary", Request: &sdk.InferRequest{Model: "lm", Inputs: conformance.IDs(1, 2, 384)}, Want: []string{"input_ids[0,0] = 384", "[0, 384)"}},
		{Name: "latent beyond the size limit", Request: &sdk.InferRequest{Model: "vae", Inputs: conformance.Zeros("latent", 1, 4, 256, 256)}, Want: []string{"latent", "256×256", "64 pixels per side"}},
	})
	if got := p.Pid(); got != pid || p.Restarts() != 0 {
		t.Fatalf("the plugin restarted (pid %d → %d)", pid, got)
	}
	if _, err := p.Infer(ctx, &sdk.InferRequest{Model: "lm", Inputs: conformance.IDs(1, 32, 1)}); err != nil {
		t.Errorf("a full-context prompt: %v", err)
	}
	if _, err := p.Infer(ctx, &sdk.InferRequest{Model: "vae", Inputs: conformance.Zeros("latent", 1, 4, 8, 8)}); err != nil {
		t.Errorf("a small latent: %v", err)
	}
}
