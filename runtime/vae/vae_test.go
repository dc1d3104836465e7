package vae

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/internal/plugintest"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/sdk"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// nativePlugin is the native plugin, built once by TestMain: the model runs in a real plugin
// process, as it does under the CLI and the engine.
var nativePlugin string

const vaeTiny = "../../testdata/models/vae-tiny"

// torchTol bounds |native − PyTorch| on vae-tiny's reference tensors (float32 summation order).
const torchTol = 1e-4

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modelrt-vae-test")
	if err == nil {
		nativePlugin, err = plugintest.Native.Build(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func start(t *testing.T) *plugin.Plugin {
	t.Helper()
	p, err := plugin.Start(t.Context(), plugin.Config{Name: "native", Path: nativePlugin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func reference(t *testing.T, name string) *sdk.Tensor {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(vaeTiny, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, shape, err := f.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	s := make([]int64, len(shape))
	for i, d := range shape {
		s[i] = int64(d)
	}
	return sdk.FromFloat32(s, append([]float32(nil), v...))
}

func maxDiff(t *testing.T, got, want *sdk.Tensor) float64 {
	t.Helper()
	g, err := got.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	w, _ := want.Float32s()
	if len(g) != len(w) {
		t.Fatalf("%d values, want %d", len(g), len(w))
	}
	worst := 0.0
	for i := range w {
		d := math.Abs(float64(g[i] - w[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		worst = max(worst, d)
	}
	return worst
}

func TestEncodeDecodeMatchPyTorch(t *testing.T) {
	ctx := context.Background()
	m, err := Load(ctx, start(t), "tiny", vaeTiny, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The limits are the native backend's defaults: max_image_size = sample_size × max_image_scale.
	want := sdk.VAEFacts{InChannels: 3, OutChannels: 3, LatentChannels: 4, DownsampleFactor: 2, ScalingFactor: 0.18215, SampleSize: 16,
		MaxInferBytes: sdk.DefaultMaxInferBytes, MaxImageSize: 16 * sdk.DefaultMaxImageScale}
	if m.VAEFacts != want {
		t.Errorf("facts %+v, want %+v (config.json and the backend's limits)", m.VAEFacts, want)
	}
	mean, logvar, err := m.Encode(ctx, reference(t, "image"))
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]*sdk.Tensor{"mean": mean, "logvar": logvar} {
		if d := maxDiff(t, got, reference(t, name)); d > torchTol {
			t.Errorf("%s: max abs error %.3g > %g", name, d, torchTol)
		}
	}
	img, err := m.Decode(ctx, reference(t, "latent"))
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(t, img, reference(t, "decoded")); d > torchTol {
		t.Errorf("decoded: max abs error %.3g > %g", d, torchTol)
	}
}

func TestBadInputsAndOutputs(t *testing.T) {
	ctx := context.Background()
	m, err := Load(ctx, start(t), "tiny", vaeTiny, nil)
	if err != nil {
		t.Fatal(err)
	}
	zeros := func(shape ...int64) *sdk.Tensor {
		n, _ := sdk.NumElements(shape, 4)
		return sdk.FromFloat32(shape, make([]float32, n))
	}
	// A model whose facts disagree with what the backend computes: the output check catches it.
	lying := &Model{Backend: m.Backend, Name: m.Name, VAEFacts: m.VAEFacts}
	lying.LatentChannels, lying.OutChannels = 8, 1
	for _, c := range []struct {
		what string
		run  func() error
		want string
	}{
		{"image of rank 3", func() error { _, _, err := m.Encode(ctx, zeros(3, 4, 4)); return err }, "must be (batch, channels, height, width)"},
		{"gray image", func() error { _, _, err := m.Encode(ctx, zeros(1, 1, 4, 4)); return err }, "image has 1 channels, model takes 3 (in_channels)"},
		{"odd image", func() error { _, _, err := m.Encode(ctx, zeros(1, 3, 5, 4)); return err }, "divisible by 2, its downsampling factor"},
		{"latent of 5 channels", func() error { _, err := m.Decode(ctx, zeros(1, 5, 2, 2)); return err }, "latent has 5 channels, model takes 4 (latent_channels)"},
		// Beyond max_image_size (64 px): refused by the host, with the backend's InvalidArgument.
		{"image beyond the limit", func() error { _, _, err := m.Encode(ctx, zeros(1, 3, 66, 66)); return err },
			"(not sent to its backend): InvalidArgument: vae-encode: image of 66×66 (H×W) is larger than this model's limit of 64 pixels per side"},
		{"latent beyond the limit", func() error { _, err := m.Decode(ctx, zeros(1, 4, 33, 32)); return err },
			"(not sent to its backend): InvalidArgument: vae-decode: latent of 33×32 (H×W) decodes to a 66×64 image"},
		{"backend error", func() error {
			_, _, err := m.Encode(ctx, sdk.FromInt64([]int64{1, 3, 2, 2}, make([]int64, 12)))
			return err
		}, "vae-encode"},
		{"mean of other channels than the facts", func() error {
			lying.LatentChannels = 8
			_, _, err := lying.Encode(ctx, zeros(1, 3, 4, 4))
			return err
		}, `output "mean" has shape [1 4 2 2] for image [1 3 4 4], want [1 8 2 2]`},
		{"image of other channels than the facts", func() error {
			lying.LatentChannels = 4
			_, err := lying.Decode(ctx, zeros(1, 4, 2, 2))
			return err
		}, `output "image" has shape [1 3 4 4] for latent [1 4 2 2], want [1 1 4 4]`},
	} {
		err := c.run()
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `model "tiny"`) {
			t.Errorf("%s: err = %v, want one naming the model and containing %q", c.what, err, c.want)
		}
	}
}

func TestFromInfoRejectsBadFacts(t *testing.T) {
	_, err := FromInfo(nil, sdk.ModelInfo{Name: "v", Metadata: map[string]string{sdk.MetaLatentChannels: "four"}})
	if err == nil || !strings.Contains(err.Error(), `latent_channels = "four"`) {
		t.Errorf("err = %v", err)
	}
}
