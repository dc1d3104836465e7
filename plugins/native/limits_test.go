package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelrt/modelrt/conformance"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/sdk"
)

// These tests run the real modelrt-native binary, started by runtime/plugin as modelrt starts
// it, and send it requests that used to kill it or keep it busy after the caller left.

var pluginPath string

const models = "../../testdata/models/"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modelrt-native-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginPath = filepath.Join(dir, "modelrt-native")
	cmd := exec.Command("go", "build", "-o", pluginPath, ".")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build modelrt-native: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs the plugin, sends config (a JSON object, or "") and loads name → dir.
func start(t *testing.T, config string, load map[string]string) *plugin.Plugin {
	t.Helper()
	ctx := context.Background()
	p, err := plugin.Start(ctx, plugin.Config{Name: "native", Path: pluginPath, CallTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if config != "" {
		if _, err := p.Configure(ctx, &sdk.ConfigureRequest{Config: json.RawMessage(config)}); err != nil {
			t.Fatal(err)
		}
	}
	for name, dir := range load {
		if _, err := p.LoadModel(ctx, &sdk.LoadModelRequest{Name: name, Path: models + dir}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// peakRSS is the plugin's peak resident set in kB.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := conformance.PeakRSS(pid)
	if err != nil {
		t.Skipf("cannot read the plugin's peak RSS (needs Linux /proc): %v", err)
	}
	return b >> 10
}

// maxPeakGrowthKB bounds how much a rejected request may raise the plugin's peak RSS: it must
// be refused before anything proportional to it is allocated (its own 1.6 MB of ids aside).
const maxPeakGrowthKB = 32 << 10

// TestOversizedRequestsAreRefused sends requests whose outputs or working memory the plugin
// must refuse before allocating: a [1,200000] prompt to a 64-position GPT-2 with a 50257-token
// vocabulary (40 GB of logits: the plugin used to allocate them first and die of "out of
// memory"), a batch over the memory budget, an id outside the vocabulary, and VAE latents and
// images beyond sample_size × max_image_scale. Each must be InvalidArgument naming the input
// and the limit, and the plugin must be the same process, its peak RSS barely moved.
func TestOversizedRequestsAreRefused(t *testing.T) {
	p := start(t, `{"max_infer_bytes": 67108864}`, map[string]string{"gpt2": "gpt2-tiny", "vae": "vae-tiny"})
	pid := p.Pid()
	peak := peakRSS(t, pid)
	ctx := context.Background()
	conformance.CheckRefusals(t, p, []conformance.Refusal{
		{Name: "200000 positions", Request: &sdk.InferRequest{Model: "gpt2", Inputs: conformance.IDs(1, 200000, 0)}, Want: []string{"input_ids", "200000", "n_positions = 64"}},
		{Name: "batch over the budget", Request: &sdk.InferRequest{Model: "gpt2", Inputs: conformance.IDs(64, 64, 0)}, Want: []string{"input_ids", "batch 64", "max_infer_bytes", "64.0 MiB"}},
		{Name: "id outside the vocabulary", Request: &sdk.InferRequest{Model: "gpt2", Inputs: conformance.IDs(1, 3, 50257)}, Want: []string{"input_ids[0,0] = 50257", "[0, 50257)"}},
		{Name: "latent beyond the size limit", Request: &sdk.InferRequest{Model: "vae", Inputs: conformance.Zeros("latent", 1, 4, 256, 256)}, Want: []string{"latent", "256×256", "512×512", "64 pixels per side"}},
		{Name: "latent of the wrong channels", Request: &sdk.InferRequest{Model: "vae", Inputs: conformance.Zeros("latent", 1, 3, 8, 8)}, Want: []string{"latent", "3 channels", "latent_channels"}},
		{Name: "image beyond the size limit", Request: &sdk.InferRequest{Model: "vae", Inputs: conformance.Zeros("image", 1, 3, 512, 64)}, Want: []string{"image", "512×64", "64 pixels per side"}},
	})
	if got := p.Pid(); got != pid || p.Restarts() != 0 {
		t.Fatalf("the plugin restarted (pid %d → %d, %d restarts)", pid, got, p.Restarts())
	}
	if grown := peakRSS(t, pid) - peak; grown > maxPeakGrowthKB {
		t.Errorf("refused requests raised the plugin's peak RSS by %d kB (limit %d kB)", grown, maxPeakGrowthKB)
	}
	// Requests within the limits still work.
	if _, err := p.Infer(ctx, &sdk.InferRequest{Model: "gpt2", Inputs: conformance.IDs(1, 64, 1)}); err != nil {
		t.Errorf("a full-context prompt: %v", err)
	}
	if _, err := p.Infer(ctx, &sdk.InferRequest{Model: "vae", Inputs: conformance.Zeros("latent", 1, 4, 32, 32)}); err != nil {
		t.Errorf("a latent at the size limit: %v", err)
	}
	info, err := p.LoadModel(ctx, &sdk.LoadModelRequest{Name: "vae2", Path: models + "vae-tiny"})
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Model.Metadata[sdk.MetaMaxImageSize]; got != "64" {
		t.Errorf("metadata %s = %q, want 64 (sample_size 16 × 4)", sdk.MetaMaxImageSize, got)
	}
}
